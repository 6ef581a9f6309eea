/// Where the bytes of one element of a datatype lie, relative to the
/// element's address, in the order MPI packs them (the type map's order).
/// A tree rather than a list of byte ranges: a vector of a million blocks
/// is one node, and a cursor into the packed bytes finds its place by
/// division, not by a search of every range.
///
/// Built only through `run`, `repeated`, `sequence` and `shifted`, which
/// keep it simple: no empty parts, no node with one copy, neighbouring
/// runs of one basic type merged. So contiguous elements of one basic type
/// are one `.run` (and `contiguousOffset` finds the others).
indirect enum TypeLayout: Sendable {
    /// `count` elements of `basic`, back to back, from `offset`.
    case run(offset: Int, basic: BasicType, count: Int)
    /// `count` copies of `element`, the k-th at `offset + k * stride`.
    /// (`elementSize` bytes and `elementBasics` basic elements each, kept
    /// so that a cursor needs no walk of the element.)
    case repeated(offset: Int, count: Int, stride: Int, element: TypeLayout, elementSize: Int, elementBasics: Int)
    /// Parts in packing order; part i starts at packed byte `starts[i]`
    /// and basic element `basicStarts[i]` (each one longer than `parts`).
    case sequence(parts: [TypeLayout], starts: [Int], basicStarts: [Int])

    static let empty = TypeLayout.sequence(parts: [], starts: [0], basicStarts: [0])

    /// Bytes of data (not counting gaps).
    var size: Int {
        switch self {
        case .run(_, let basic, let count): return count * basic.size
        case .repeated(_, let count, _, _, let elementSize, _): return count * elementSize
        case .sequence(_, let starts, _): return starts[starts.count - 1]
        }
    }

    /// Basic elements (MPI_Get_elements counts these).
    var basicCount: Int {
        switch self {
        case .run(_, _, let count): return count
        case .repeated(_, let count, _, _, _, let elementBasics): return count * elementBasics
        case .sequence(_, _, let basicStarts): return basicStarts[basicStarts.count - 1]
        }
    }

    // MARK: - Building

    static func run(_ basic: BasicType, count: Int = 1, at offset: Int = 0) -> TypeLayout {
        count == 0 ? .empty : .run(offset: offset, basic: basic, count: count)
    }

    /// `count` copies of this layout, `stride` bytes apart.
    func repeated(_ count: Int, stride: Int) throws(MPIError) -> TypeLayout {
        let size = self.size
        if count == 0 || size == 0 { return .empty }
        guard !count.multipliedReportingOverflow(by: size).overflow else { throw Self.overflow }
        if count == 1 { return self }
        if case .run(let offset, let basic, let runCount) = self, stride == size {
            return .run(offset: offset, basic: basic, count: runCount * count)
        }
        return .repeated(offset: 0, count: count, stride: stride, element: self, elementSize: size, elementBasics: basicCount)
    }

    /// The same bytes `displacement` further on.
    func shifted(by displacement: Int) -> TypeLayout {
        if displacement == 0 { return self }
        switch self {
        case .run(let offset, let basic, let count):
            return .run(offset: offset + displacement, basic: basic, count: count)
        case .repeated(let offset, let count, let stride, let element, let elementSize, let elementBasics):
            return .repeated(offset: offset + displacement, count: count, stride: stride, element: element, elementSize: elementSize, elementBasics: elementBasics)
        case .sequence(let parts, let starts, let basicStarts):
            return .sequence(parts: parts.map { $0.shifted(by: displacement) }, starts: starts, basicStarts: basicStarts)
        }
    }

    /// `parts` one after the other in packing order (each at its own place
    /// in memory).
    static func sequence(_ parts: [TypeLayout]) throws(MPIError) -> TypeLayout {
        var flat: [TypeLayout] = []
        flat.reserveCapacity(parts.count)
        func append(_ part: TypeLayout) {
            switch part {
            case .sequence(let inner, _, _):
                for piece in inner { append(piece) }
            case .run(let offset, let basic, let count):
                if case .run(let lastOffset, let lastBasic, let lastCount)? = flat.last, lastBasic == basic,
                    lastOffset + lastCount * basic.size == offset
                {
                    flat[flat.count - 1] = .run(offset: lastOffset, basic: basic, count: lastCount + count)
                } else {
                    flat.append(part)
                }
            case .repeated:
                flat.append(part)
            }
        }
        for part in parts where part.size > 0 { append(part) }
        if flat.count == 1 { return flat[0] }
        var starts = [0]
        var basicStarts = [0]
        starts.reserveCapacity(flat.count + 1)
        basicStarts.reserveCapacity(flat.count + 1)
        for part in flat {
            let (end, overflow) = starts[starts.count - 1].addingReportingOverflow(part.size)
            guard !overflow else { throw Self.overflow }
            starts.append(end)
            basicStarts.append(basicStarts[basicStarts.count - 1] + part.basicCount)
        }
        return .sequence(parts: flat, starts: starts, basicStarts: basicStarts)
    }

    /// (Basic elements are at least a byte each, so their count cannot
    /// overflow where the size does not.)
    private static var overflow: MPIError {
        MPIError(.invalidDatatype, "a datatype of more than \(Int.max) bytes")
    }

    // MARK: - Reading

    /// The offset of the element's bytes if they are one contiguous range.
    var contiguousOffset: Int? {
        switch self {
        case .run(let offset, _, _):
            return offset
        case .repeated(let offset, _, let stride, let element, let elementSize, _):
            guard stride == elementSize, let inner = element.contiguousOffset else { return nil }
            return offset + inner
        case .sequence(let parts, let starts, _):
            guard let first = parts.first?.contiguousOffset else { return parts.isEmpty ? 0 : nil }
            for (index, part) in parts.enumerated().dropFirst() {
                guard part.contiguousOffset == first + starts[index] else { return nil }
            }
            return first
        }
    }

    /// Calls `body(offset, length)` for each contiguous byte range holding
    /// packed bytes `start ..< start + length`, in packing order, until it
    /// returns false; offsets are from the element's address plus `base`.
    /// Ranges that touch are not merged. False if `body` stopped it.
    @discardableResult
    func forEachRange(base: Int, from start: Int, length: Int, _ body: (Int, Int) -> Bool) -> Bool {
        switch self {
        case .run(let offset, _, _):
            return body(base + offset + start, length)
        case .repeated(let offset, _, let stride, let element, let elementSize, _):
            var index = start / elementSize
            var within = start - index * elementSize
            var remaining = length
            var at = base + offset + index * stride
            // A whole element that is one run needs no descent.
            let wholeRun: Int? = if case .run(let runOffset, _, _) = element { runOffset } else { nil }
            while remaining > 0 {
                let take = min(elementSize - within, remaining)
                if let wholeRun {
                    guard body(at + wholeRun + within, take) else { return false }
                } else {
                    guard element.forEachRange(base: at, from: within, length: take, body) else { return false }
                }
                remaining -= take
                within = 0
                index += 1
                at += stride
            }
            return true
        case .sequence(let parts, let starts, _):
            var part = Self.partIndex(containing: start, in: starts)
            var position = start
            let end = start + length
            while position < end {
                let partEnd = min(starts[part + 1], end)
                guard parts[part].forEachRange(base: base, from: position - starts[part], length: partEnd - position, body) else { return false }
                position = partEnd
                part += 1
            }
            return true
        }
    }

    /// The basic elements wholly inside the first `bytes` packed bytes,
    /// and whether the boundary falls between two of them.
    func basicElements(inFirst bytes: Int) -> (count: Int, exact: Bool) {
        switch self {
        case .run(_, let basic, _):
            return (bytes / basic.size, bytes % basic.size == 0)
        case .repeated(_, _, _, let element, let elementSize, let elementBasics):
            let whole = bytes / elementSize
            let rest = element.basicElements(inFirst: bytes - whole * elementSize)
            return (whole * elementBasics + rest.count, rest.exact)
        case .sequence(let parts, let starts, let basicStarts):
            guard bytes > 0 else { return (0, true) }
            let part = Self.partIndex(containing: bytes - 1, in: starts)
            let rest = parts[part].basicElements(inFirst: bytes - starts[part])
            return (basicStarts[part] + rest.count, rest.exact)
        }
    }

    /// The i with starts[i] ≤ position < starts[i + 1].
    private static func partIndex(containing position: Int, in starts: [Int]) -> Int {
        var low = 0
        var high = starts.count - 2
        while low < high {
            let middle = (low + high + 1) / 2
            if starts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        return low
    }
}
