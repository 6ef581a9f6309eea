import FabricCore

/// A registration held for one transfer: the keys and extent of the region
/// covering the buffer, and the cache's entry to give back with
/// `RegistrationCache.release`. Plain values, so that using one costs no
/// reference counting and no generic code. The region may be larger than
/// the buffer (whole pages, or an earlier, larger buffer): address the
/// buffer by its own address, not offset 0.
public struct RegistrationLease: Sendable, Equatable {
    /// The cache's table slot, or `poolSlot` for memory from the pool.
    let slot: Int32
    static let poolSlot: Int32 = -2
    /// The region's first byte and length.
    public let regionAddress: UInt64
    public let regionLength: Int
    public let localKey: LocalKey
    public let remoteKey: RemoteKey

    /// A scatter element for `length` bytes at `address`, which must lie
    /// inside the region.
    @inlinable
    public func element(at address: UnsafeRawPointer, length: Int) throws(FabricError) -> ScatterGatherElement {
        let start = UInt64(UInt(bitPattern: address))
        guard start >= regionAddress, length >= 0, start - regionAddress + UInt64(length) <= UInt64(regionLength) else {
            throw FabricError(.invalidArgument, "\(length) bytes at \(address) are not inside the registration of \(regionLength) bytes at 0x\(String(regionAddress, radix: 16))")
        }
        return try ScatterGatherElement(pointer: address, length: length, localKey: localKey)
    }

    /// Where a peer reaches `address`, inside the region.
    @inlinable
    public func remote(at address: UnsafeRawPointer) -> RemoteMemory {
        RemoteMemory(address: UInt64(UInt(bitPattern: address)), key: remoteKey)
    }
}
