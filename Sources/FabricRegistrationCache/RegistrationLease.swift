import FabricCore

/// A registration held for one transfer: the region covering the buffer,
/// and the cache's entry to give back with `RegistrationCache.release`.
/// The region may be larger than the buffer (whole pages, or an earlier,
/// larger buffer): address the buffer by its own address, not offset 0.
public struct RegistrationLease<Region: FabricMemoryRegion>: Sendable {
    public let region: Region
    /// The cache's table slot, or -1 for a registration made for this use
    /// alone (deregistered at release).
    let slot: Int32

    /// A scatter element for `length` bytes at `address`, inside the region.
    @inlinable
    public func element(at address: UnsafeRawPointer, length: Int) throws(FabricError) -> ScatterGatherElement {
        try region.element(offset: address - UnsafeRawPointer(region.address), length: length)
    }

    /// Where a peer reaches `address`, inside the region.
    @inlinable
    public func remote(at address: UnsafeRawPointer) -> RemoteMemory {
        RemoteMemory(address: UInt64(UInt(bitPattern: address)), key: region.remoteKey)
    }
}
