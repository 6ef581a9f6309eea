/// A datatype's bounds (MPI's lower and upper bound, whose difference is
/// the extent: the stride between consecutive elements) and its true
/// bounds (where its bytes really are), worked out alongside the layout.
/// Every step is checked for overflow, so a type whose extent does not fit
/// in an Int is refused at construction.
struct TypeBounds: Sendable, Equatable {
    var lower = 0
    var upper = 0
    var trueLower = 0
    var trueUpper = 0
    /// Whether any element is placed at all (count 0 places none, and
    /// contributes nothing to the bounds of what contains it).
    var placesAny = false
    /// Whether it holds data (true bounds are defined only then).
    var holdsData = false
    /// Bounds set by `resized` somewhere inside: they are kept as set, and
    /// a structure around them gets no alignment padding.
    var explicit = false
    /// The largest alignment of the basic types inside.
    var alignment = 1

    static func of(_ basic: BasicType) -> TypeBounds {
        TypeBounds(lower: 0, upper: basic.size, trueLower: 0, trueUpper: basic.size, placesAny: true, holdsData: true, alignment: basic.alignment)
    }

    var extent: Int { upper - lower }

    /// `count` copies, `stride` bytes apart (the stride may be negative).
    func repeated(_ count: Int, stride: Int, _ what: @autoclosure () -> String) throws(MPIError) -> TypeBounds {
        guard count > 0, placesAny else { return TypeBounds(alignment: alignment) }
        let (last, overflow) = (count - 1).multipliedReportingOverflow(by: stride)
        guard !overflow else { throw Self.overflow(what()) }
        var result = self
        try result.widen(low: min(0, last), high: max(0, last), what())
        return result
    }

    /// The same, `displacement` bytes further on.
    func shifted(by displacement: Int, _ what: @autoclosure () -> String) throws(MPIError) -> TypeBounds {
        guard placesAny else { return self }
        var result = self
        try result.widen(low: displacement, high: displacement, what())
        return result
    }

    /// Adds `low` to the lower bounds and `high` to the upper ones.
    private mutating func widen(low: Int, high: Int, _ what: @autoclosure () -> String) throws(MPIError) {
        let lower = self.lower.addingReportingOverflow(low)
        let upper = self.upper.addingReportingOverflow(high)
        let trueLower = self.trueLower.addingReportingOverflow(low)
        let trueUpper = self.trueUpper.addingReportingOverflow(high)
        guard !lower.overflow, !upper.overflow, !trueLower.overflow, !trueUpper.overflow, !upper.partialValue.subtractingReportingOverflow(lower.partialValue).overflow
        else { throw Self.overflow(what()) }
        self.lower = lower.partialValue
        self.upper = upper.partialValue
        if holdsData {
            self.trueLower = trueLower.partialValue
            self.trueUpper = trueUpper.partialValue
        }
    }

    /// The bounds of all `parts` together.
    static func union(_ parts: [TypeBounds]) -> TypeBounds {
        var result = TypeBounds()
        for part in parts {
            result.alignment = max(result.alignment, part.alignment)
            result.explicit = result.explicit || part.explicit
            guard part.placesAny else { continue }
            result.lower = result.placesAny ? min(result.lower, part.lower) : part.lower
            result.upper = result.placesAny ? max(result.upper, part.upper) : part.upper
            result.placesAny = true
            guard part.holdsData else { continue }
            result.trueLower = result.holdsData ? min(result.trueLower, part.trueLower) : part.trueLower
            result.trueUpper = result.holdsData ? max(result.trueUpper, part.trueUpper) : part.trueUpper
            result.holdsData = true
        }
        return result
    }

    /// The upper bound moved up to a multiple of the alignment from the
    /// lower one, as C pads a structure (unless bounds were set explicitly).
    func paddedToAlignment(_ what: @autoclosure () -> String) throws(MPIError) -> TypeBounds {
        guard !explicit, placesAny else { return self }
        var result = self
        let remainder = extent % alignment
        if remainder != 0 {
            let padded = upper.addingReportingOverflow(alignment - remainder)
            guard !padded.overflow else { throw Self.overflow(what()) }
            result.upper = padded.partialValue
        }
        return result
    }

    static func overflow(_ what: String) -> MPIError {
        MPIError(.invalidDatatype, "the extent of \(what) does not fit in \(Int.bitWidth) bits")
    }
}
