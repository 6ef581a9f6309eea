/// Named types for the raw numbers of the verbs model, so that a local key can
/// never be passed where a remote key is expected.

/// The key that lets a local work request use a registered memory region
/// (verbs: `lkey`).
public struct LocalKey: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "lkey 0x" + String(rawValue, radix: 16) }
}

/// The key a peer presents to read, write or apply atomics to a registered
/// memory region (verbs: `rkey`). Treat it as a capability: whoever holds it
/// and a connection of the region's protection domain may use the region.
public struct RemoteKey: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "rkey 0x" + String(rawValue, radix: 16) }
}

/// The number that names a queue pair on its device (verbs: `qp_num`).
public struct QueuePairNumber: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "qp \(rawValue)" }
}

/// A place in a peer's registered memory: the address the peer registered
/// and the remote key of that registration.
public struct RemoteMemory: Hashable, Sendable {
    public var address: UInt64
    public var key: RemoteKey
    public init(address: UInt64, key: RemoteKey) {
        self.address = address
        self.key = key
    }
    /// The same region `bytes` further on.
    public func advanced(by bytes: Int) -> RemoteMemory {
        RemoteMemory(address: address &+ UInt64(bytes), key: key)
    }
}

/// What a memory region allows (verbs: `ibv_access_flags`).
public struct MemoryAccess: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    // Computed and inlinable (see SendFlags): the software NIC tests them
    // on every incoming one-sided request.

    /// The local device may write into the region (receives, READ and
    /// atomic results land here). Required by the remote-write and
    /// remote-atomic rights, as on verbs.
    @inlinable public static var localWrite: MemoryAccess { MemoryAccess(rawValue: 1 << 0) }
    @inlinable public static var remoteWrite: MemoryAccess { MemoryAccess(rawValue: 1 << 1) }
    @inlinable public static var remoteRead: MemoryAccess { MemoryAccess(rawValue: 1 << 2) }
    @inlinable public static var remoteAtomic: MemoryAccess { MemoryAccess(rawValue: 1 << 3) }

    @inlinable public static var all: MemoryAccess { MemoryAccess(rawValue: 0b1111) }

    public var description: String {
        var parts: [String] = []
        if contains(.localWrite) { parts.append("local-write") }
        if contains(.remoteWrite) { parts.append("remote-write") }
        if contains(.remoteRead) { parts.append("remote-read") }
        if contains(.remoteAtomic) { parts.append("remote-atomic") }
        return parts.isEmpty ? "local-read-only" : parts.joined(separator: ",")
    }
}
