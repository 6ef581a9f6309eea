/// Work requests: what an application asks a queue pair to do.

/// One piece of local registered memory (verbs: `ibv_sge`).
public struct ScatterGatherElement: Hashable, Sendable {
    public var address: UInt64
    public var length: UInt32
    public var localKey: LocalKey

    public init(address: UInt64, length: UInt32, localKey: LocalKey) {
        self.address = address
        self.length = length
        self.localKey = localKey
    }

    /// An element of `length` bytes at `pointer`. An element carries at
    /// most 4 GiB - 1 (verbs' 32-bit length); a longer or negative length is
    /// refused, never cut to its low 32 bits.
    @inlinable
    public init(pointer: UnsafeRawPointer, length: Int, localKey: LocalKey) throws(FabricError) {
        guard length >= 0, length <= Int(UInt32.max) else {
            throw FabricError(.invalidArgument, "a scatter element of \(length) bytes: one element carries 0 to \(UInt32.max) bytes; split the buffer over several elements")
        }
        self.init(address: UInt64(UInt(bitPattern: pointer)), length: UInt32(length), localKey: localKey)
    }
}

/// The local memory of a work request. `single` and `empty` cover nearly all
/// requests without building an array; `multiple` takes an array the caller
/// can keep and reuse, so posting still allocates nothing.
public enum ScatterList: Hashable, Sendable {
    case empty
    case single(ScatterGatherElement)
    case multiple([ScatterGatherElement])

    @inlinable public var count: Int {
        switch self {
        case .empty: return 0
        case .single: return 1
        case .multiple(let list): return list.count
        }
    }

    @inlinable public subscript(index: Int) -> ScatterGatherElement {
        switch self {
        case .empty: preconditionFailure("empty scatter list has no element \(index)")
        case .single(let element): precondition(index == 0); return element
        case .multiple(let list): return list[index]
        }
    }

    /// Total bytes, or nil if the sum does not fit in 64 bits (it always does
    /// for 32-bit lengths and a sane count, but the check is free).
    @inlinable public var totalLength: UInt64 {
        switch self {
        case .empty: return 0
        case .single(let element): return UInt64(element.length)
        case .multiple(let list):
            var total: UInt64 = 0
            for element in list { total &+= UInt64(element.length) }
            return total
        }
    }
}

/// The operation of a send-queue work request (verbs: `ibv_wr_opcode`).
public enum SendOperation: Hashable, Sendable {
    /// Two-sided: consumes a receive the peer posted.
    case send
    case sendWithImmediate(UInt32)
    /// One-sided: placed in the peer's memory without its involvement.
    case write(RemoteMemory)
    /// A WRITE that also consumes a peer's receive and delivers `immediate`.
    case writeWithImmediate(RemoteMemory, immediate: UInt32)
    /// Reads the peer's memory into the local scatter list.
    case read(RemoteMemory)
    /// Adds `add` to the 8-byte word at the remote address; the old value
    /// lands in the local 8-byte buffer.
    case fetchAndAdd(RemoteMemory, add: UInt64)
    /// Replaces the remote word with `swap` if it equals `compare`; the old
    /// value lands in the local 8-byte buffer.
    case compareAndSwap(RemoteMemory, compare: UInt64, swap: UInt64)

    public var name: String {
        switch self {
        case .send: return "send"
        case .sendWithImmediate: return "send-with-immediate"
        case .write: return "write"
        case .writeWithImmediate: return "write-with-immediate"
        case .read: return "read"
        case .fetchAndAdd: return "fetch-and-add"
        case .compareAndSwap: return "compare-and-swap"
        }
    }
}

/// Flags of a send-queue work request (verbs: `ibv_send_flags`).
public struct SendFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    // Computed and inlinable rather than stored: a stored static of another
    // module is reached through a function call, and the backends test these
    // flags on every post.

    /// Produce a completion on success too (errors always complete).
    @inlinable public static var signaled: SendFlags { SendFlags(rawValue: 1 << 0) }
    /// Wait until every earlier READ and atomic of this queue pair completed.
    @inlinable public static var fence: SendFlags { SendFlags(rawValue: 1 << 1) }
    /// Copy the payload at post time: the buffer may be reused at once and
    /// need not be registered. At most `maxInlineData` bytes.
    @inlinable public static var inline: SendFlags { SendFlags(rawValue: 1 << 2) }
}

/// A request for the send queue (verbs: `ibv_send_wr`).
public struct SendWorkRequest: Hashable, Sendable {
    public var id: UInt64
    public var operation: SendOperation
    public var local: ScatterList
    public var flags: SendFlags

    public init(id: UInt64, operation: SendOperation, local: ScatterList, flags: SendFlags = [.signaled]) {
        self.id = id
        self.operation = operation
        self.local = local
        self.flags = flags
    }
}

/// A buffer offered for an incoming SEND or WRITE with immediate
/// (verbs: `ibv_recv_wr`).
public struct ReceiveWorkRequest: Hashable, Sendable {
    public var id: UInt64
    public var local: ScatterList

    public init(id: UInt64, local: ScatterList) {
        self.id = id
        self.local = local
    }
}

/// What posting did. A full queue is not an error: the caller polls its
/// completion queue and posts again.
public enum PostResult: Hashable, Sendable {
    case posted
    case wouldBlock
}
