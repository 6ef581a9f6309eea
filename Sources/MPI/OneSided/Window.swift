/// A window (MPI_Win): memory each rank of a communicator exposes to the
/// others' puts, gets and atomics. A handle; the runtime holds the state
/// (`WindowTable`). Made collectively by `allocateWindow` or
/// `createWindow`, ended collectively by `free(_:)`.
public struct Window: Hashable, Sendable, CustomStringConvertible {
    /// Told apart by this number, never reused within a runtime.
    let id: Int

    public var description: String { "window \(id)" }
}

/// How a window's memory came to be (MPI_WIN_CREATE_FLAVOR).
public enum WindowFlavor: Sendable {
    /// The program's memory (MPI_Win_create).
    case created
    /// Memory the runtime allocated from its registered pool (MPI_Win_allocate).
    case allocated
    /// Memory each rank attaches and detaches as it goes, addressed by
    /// absolute address (MPI_Win_create_dynamic).
    case dynamic
    /// One shared-memory object that every rank maps, for ranks on one
    /// host (MPI_Win_allocate_shared).
    case shared
}

/// What a window is on this rank (MPI_Win_get_attr's predefined keys).
public struct WindowAttributes: @unchecked Sendable {  // `base` is an address the program owns; the value only names it
    /// MPI_WIN_BASE; nil for an empty window.
    public let base: UnsafeMutableRawPointer?
    /// MPI_WIN_SIZE, in bytes.
    public let size: Int
    /// MPI_WIN_DISP_UNIT: a displacement counts this many bytes.
    public let displacementUnit: Int
    public let flavor: WindowFlavor
    /// MPI_WIN_MODEL: always unified here (a rank's loads see remote
    /// writes once synchronised, with no separate public copy).
    public let isUnifiedModel: Bool
    /// The ranks of the window (MPI_Win_get_group): its communicator's.
    public let communicator: Communicator
}

/// MPI_Win_lock's lock types.
public enum WindowLock: Sendable {
    /// MPI_LOCK_SHARED: with other shared locks.
    case shared
    /// MPI_LOCK_EXCLUSIVE: alone.
    case exclusive
}

/// Assertions a program may give a fence (MPI_MODE_*): promises that
/// let the runtime skip work. Only `noSucceed` changes what follows (it
/// closes the access epoch); the others are accepted.
public struct FenceAssertions: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// MPI_MODE_NOSTORE: no local stores since the last synchronisation.
    public static let noStore = FenceAssertions(rawValue: 1)
    /// MPI_MODE_NOPUT: no puts to this rank until the next one.
    public static let noPut = FenceAssertions(rawValue: 2)
    /// MPI_MODE_NOPRECEDE: no one-sided operations end at this fence.
    public static let noPrecede = FenceAssertions(rawValue: 4)
    /// MPI_MODE_NOSUCCEED: no one-sided operations follow this fence.
    public static let noSucceed = FenceAssertions(rawValue: 8)
}

/// What an accumulate does with each target element (MPI_Accumulate's
/// operation): a built-in reduction `target = origin op target`, or the
/// two operations only one-sided calls take.
public enum AccumulateOperation: Sendable, CustomStringConvertible {
    case reduce(ReductionOperation)
    /// MPI_REPLACE: `target = origin`.
    case replace
    /// MPI_NO_OP: the target is left as it is (a fetch reads it atomically).
    case noOperation

    public static let sum = AccumulateOperation.reduce(.sum)

    public var description: String {
        switch self {
        case .reduce(let operation): return operation.description
        case .replace: return "MPI_REPLACE"
        case .noOperation: return "MPI_NO_OP"
        }
    }
}
