/// Whose messages a receive or probe takes: one rank of the communicator,
/// or any (MPI_ANY_SOURCE). Written as a rank number or `.any`.
public struct MessageSource: Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// The rank, or -1 for any.
    public let value: Int

    public static let any = MessageSource(uncheckedValue: -1)

    public init(_ rank: Int) { value = rank }
    public init(integerLiteral rank: Int) { value = rank }
    private init(uncheckedValue: Int) { value = uncheckedValue }

    public var isAny: Bool { value == -1 }
    public var description: String { isAny ? "any source" : "rank \(value)" }
}

/// Which tag a receive or probe takes: one, or any (MPI_ANY_TAG).
public struct MessageTag: Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// The tag, or -1 for any.
    public let value: Int

    public static let any = MessageTag(uncheckedValue: -1)
    /// The largest tag a message may carry (MPI_TAG_UB).
    public static let upperBound = Int(Int32.max)

    public init(_ tag: Int) { value = tag }
    public init(integerLiteral tag: Int) { value = tag }
    private init(uncheckedValue: Int) { value = uncheckedValue }

    public var isAny: Bool { value == -1 }
    public var description: String { isAny ? "any tag" : "tag \(value)" }
}

/// What a completed receive got, or what a probe found (MPI_Status): the
/// sender's rank in the communicator, the tag, the message's length, and
/// the error that ended the operation, if one did (truncation: `count` is
/// the length of the message as sent, and `error` says it did not fit).
public struct MessageStatus: Hashable, Sendable, CustomStringConvertible {
    public var source: Int
    public var tag: Int
    /// Bytes of the message.
    public var count: Int
    public var error: MPIError?
    /// The operation was cancelled before it matched (MPI_Test_cancelled).
    public var isCancelled = false

    public init(source: Int, tag: Int, count: Int, error: MPIError? = nil) {
        self.source = source
        self.tag = tag
        self.count = count
        self.error = error
    }

    /// The number of whole `T` elements in the message (MPI_Get_count);
    /// nil when the length is not a multiple of `T`'s stride.
    public func count<T: BitwiseCopyable>(of type: T.Type) -> Int? {
        let stride = MemoryLayout<T>.stride
        guard stride > 0, count % stride == 0 else { return nil }
        return count / stride
    }

    public var description: String {
        isCancelled ? "cancelled" : "from rank \(source), tag \(tag), \(count) bytes" + (error.map { ", error: \($0.message)" } ?? "")
    }
}

/// A nonblocking operation in progress (MPI_Request): complete it with
/// `wait` or `test` on the runtime that started it. A plain value; once
/// completed it names nothing (a later `wait` on it is refused).
public struct Request: Hashable, Sendable, CustomStringConvertible {
    let index: UInt32
    let generation: UInt32

    /// Set in the generation of a collective's request (its entry is in
    /// `CollectiveProgress`); a point-to-point request's generation never
    /// has it (`RequestTable` keeps generations below it).
    static let collectiveMark: UInt32 = 0x8000_0000

    var isCollective: Bool { generation & Self.collectiveMark != 0 }

    /// The request's number as answers on the wire carry it.
    var cookie: UInt64 { UInt64(generation) << 32 | UInt64(index) }

    init(index: UInt32, generation: UInt32) {
        self.index = index
        self.generation = generation
    }

    init(cookie: UInt64) {
        index = UInt32(truncatingIfNeeded: cookie)
        generation = UInt32(truncatingIfNeeded: cookie >> 32)
    }

    public var description: String {
        isCollective ? "collective request \(index).\(generation & ~Self.collectiveMark)" : "request \(index).\(generation)"
    }
}

/// A message taken off the matching queue by a matched probe (MPI_Message):
/// no other receive can take it; `receive(_:into:)` or
/// `startReceive(_:into:)` receives it, once.
public struct Message: Hashable, Sendable, CustomStringConvertible {
    let id: UInt64

    public var description: String { "matched message \(id)" }
}
