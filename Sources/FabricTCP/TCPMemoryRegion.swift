import FabricCore
import Synchronization

/// A registered memory region of the software NIC. Deregisters itself when
/// freed if its owner did not.
public final class TCPMemoryRegion: FabricMemoryRegion, @unchecked Sendable {  // immutable but for `record`, guarded by `deregistered`
    public let address: UnsafeMutableRawPointer
    public let length: Int
    public let access: MemoryAccess
    public let localKey: LocalKey
    public let remoteKey: RemoteKey
    let record: RegionRecord
    private let table: RegionTable
    private let deregistered = Atomic<Bool>(false)

    init(address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess, domain: TCPProtectionDomain, table: RegionTable) {
        self.address = address
        self.length = length
        self.access = access
        let keys = KeyGenerator.shared
        let local = keys.next()
        let remote = keys.next()
        localKey = LocalKey(rawValue: local)
        remoteKey = RemoteKey(rawValue: remote)
        record = RegionRecord(
            base: UInt64(UInt(bitPattern: address)), length: UInt64(length), access: access,
            localKey: local, remoteKey: remote, domain: ObjectIdentifier(domain))
        self.table = table
        table.insert(record)
    }

    public func deregister() throws(FabricError) {
        guard !deregistered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        table.remove(record)
        record.invalidate()
    }

    public func revokeWhenPagesChange() {
        guard !deregistered.load(ordering: .acquiring) else { return }
        table.follow(record)
    }

    deinit {
        try? deregister()
    }
}
