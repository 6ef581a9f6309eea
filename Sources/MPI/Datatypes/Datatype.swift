import Synchronization

/// How elements of a message lie in memory (MPI_Datatype): a basic type,
/// a predefined pair, or a type built from others (contiguous, vector,
/// indexed, structure, subarray, resized; `DatatypeConstructors.swift`).
///
/// A built type must be committed before it describes a message, and may
/// be freed; operations that already hold it finish with it. A predefined
/// type is committed from the start and cannot be freed.
public final class Datatype: Sendable, CustomStringConvertible {
    /// Where one element's bytes are, in packing order.
    let layout: TypeLayout
    let bounds: TypeBounds
    /// How it was made (MPI_Type_get_envelope and get_contents read this).
    public let construction: Construction
    /// The offset of an element's bytes when they are one contiguous range
    /// (then `count` elements are one range if the extent equals the size).
    let contiguousOffset: Int?
    private let state: Atomic<UInt8>

    private static let uncommitted: UInt8 = 0
    private static let committed: UInt8 = 1
    private static let freed: UInt8 = 2
    private static let predefined: UInt8 = 3

    /// The ways a datatype is made.
    public enum Construction: Sendable {
        case basic(BasicType)
        /// A predefined pair of a value and an int (MPI_DOUBLE_INT and its kin).
        case pair(String, BasicType)
        case duplicate(Datatype)
        case contiguous(count: Int, of: Datatype)
        case vector(count: Int, blockLength: Int, stride: Int, of: Datatype)
        case hvector(count: Int, blockLength: Int, strideBytes: Int, of: Datatype)
        case indexed(blockLengths: [Int], displacements: [Int], of: Datatype)
        case hindexed(blockLengths: [Int], byteDisplacements: [Int], of: Datatype)
        case indexedBlock(blockLength: Int, displacements: [Int], of: Datatype)
        case hindexedBlock(blockLength: Int, byteDisplacements: [Int], of: Datatype)
        case structure(blockLengths: [Int], byteDisplacements: [Int], types: [Datatype])
        case subarray(sizes: [Int], subsizes: [Int], starts: [Int], order: ArrayOrder, of: Datatype)
        case resized(lowerBound: Int, extent: Int, of: Datatype)
    }

    init(layout: TypeLayout, bounds: TypeBounds, construction: Construction, isPredefined: Bool = false) {
        self.layout = layout
        self.bounds = bounds
        self.construction = construction
        self.contiguousOffset = layout.contiguousOffset
        self.state = Atomic(isPredefined ? Self.predefined : Self.uncommitted)
    }

    // MARK: - Sizes

    /// Bytes of data in one element (gaps not counted).
    public var size: Int { layout.size }
    /// Where an element begins, from its address (MPI's lower bound).
    public var lowerBound: Int { bounds.lower }
    public var upperBound: Int { bounds.upper }
    /// How far apart consecutive elements are.
    public var extent: Int { bounds.extent }
    /// Where an element's bytes really begin and end (MPI_Type_get_true_extent).
    public var trueLowerBound: Int { bounds.trueLower }
    public var trueExtent: Int { bounds.trueUpper - bounds.trueLower }
    /// Basic elements in one element.
    public var basicElementCount: Int { layout.basicCount }

    /// Whether `count` elements are one contiguous range of bytes, and where it starts.
    func contiguousRange(count: Int) -> Int? {
        guard let offset = contiguousOffset, count <= 1 || extent == size else { return nil }
        return offset
    }

    // MARK: - Commit and free

    public var isCommitted: Bool {
        let current = state.load(ordering: .acquiring)
        return current == Self.committed || current == Self.predefined
    }

    public var isPredefined: Bool { state.load(ordering: .relaxed) == Self.predefined }

    /// Makes the type usable in communication (MPI_Type_commit).
    public func commit() throws(MPIError) {
        let (exchanged, found) = state.compareExchange(expected: Self.uncommitted, desired: Self.committed, ordering: .acquiringAndReleasing)
        guard exchanged || found == Self.committed || found == Self.predefined else {
            throw MPIError(.invalidDatatype, "commit of \(self), which is freed")
        }
    }

    /// Ends the type's use (MPI_Type_free); operations already started keep it.
    public func free() throws(MPIError) {
        while true {
            let found = state.load(ordering: .acquiring)
            switch found {
            case Self.predefined: throw MPIError(.invalidDatatype, "free of \(self), which is predefined")
            case Self.freed: throw MPIError(.invalidDatatype, "free of \(self), which is freed already")
            default:
                if state.compareExchange(expected: found, desired: Self.freed, ordering: .acquiringAndReleasing).exchanged { return }
            }
        }
    }

    /// Throws unless the type may describe a message or a pack: committed, not freed.
    func checkUsable(in operation: @autoclosure () -> String) throws(MPIError) {
        switch state.load(ordering: .acquiring) {
        case Self.committed, Self.predefined: return
        case Self.freed: throw MPIError(.invalidDatatype, "\(operation()) with \(self), which is freed")
        default: throw MPIError(.invalidDatatype, "\(operation()) with \(self), which is not committed")
        }
    }

    /// Throws if the type is freed (building from an uncommitted type is allowed).
    func checkNotFreed(in operation: @autoclosure () -> String) throws(MPIError) {
        if state.load(ordering: .acquiring) == Self.freed {
            throw MPIError(.invalidDatatype, "\(operation()) from \(self), which is freed")
        }
    }

    public var description: String {
        switch construction {
        case .basic(let basic): return basic.description
        case .pair(let name, _): return name
        case .duplicate(let original): return "a duplicate of \(original)"
        case .contiguous(let count, let of): return "contiguous(\(count) × \(of))"
        case .vector(let count, let blockLength, let stride, let of): return "vector(\(count) × \(blockLength) of \(of), stride \(stride))"
        case .hvector(let count, let blockLength, let stride, let of): return "hvector(\(count) × \(blockLength) of \(of), stride \(stride) B)"
        case .indexed(let lengths, _, let of): return "indexed(\(lengths.count) blocks of \(of))"
        case .hindexed(let lengths, _, let of): return "hindexed(\(lengths.count) blocks of \(of))"
        case .indexedBlock(let length, let displacements, let of): return "indexed-block(\(displacements.count) × \(length) of \(of))"
        case .hindexedBlock(let length, let displacements, let of): return "hindexed-block(\(displacements.count) × \(length) of \(of))"
        case .structure(let lengths, _, _): return "struct(\(lengths.count) blocks)"
        case .subarray(let sizes, let subsizes, _, _, let of): return "subarray(\(subsizes) of \(sizes) of \(of))"
        case .resized(let lower, let extent, let of): return "resized(\(of), lower bound \(lower), extent \(extent))"
        }
    }
}

/// How a multidimensional array is laid out (MPI_ORDER_C, MPI_ORDER_FORTRAN).
public enum ArrayOrder: Sendable {
    /// The last index varies fastest (C).
    case rowMajor
    /// The first index varies fastest (Fortran).
    case columnMajor
}
