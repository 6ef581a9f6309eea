internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// A registered memory region (ibv_mr): the device pinned its pages.
public final class VerbsMemoryRegion: FabricMemoryRegion, @unchecked Sendable {  // `mr` is taken once, under the lock
    let domain: VerbsProtectionDomain
    /// The ibv_mr's address; 0 once deregistered.
    private let mr: Mutex<UInt>
    public let address: UnsafeMutableRawPointer
    public let length: Int
    public let access: MemoryAccess
    public let localKey: LocalKey
    public let remoteKey: RemoteKey

    init(domain: VerbsProtectionDomain, mr: UnsafeMutablePointer<ibv_mr>, access: MemoryAccess) {
        self.domain = domain
        address = mr.pointee.addr
        length = mr.pointee.length
        self.access = access
        localKey = LocalKey(rawValue: mr.pointee.lkey)
        remoteKey = RemoteKey(rawValue: mr.pointee.rkey)
        self.mr = Mutex(UInt(bitPattern: mr))
    }

    deinit { try? deregister() }

    public func deregister() throws(FabricError) {
        guard !domain.device.forkDetection.isForkedChild else {
            throw FabricError(.invalidState, "this object belongs to the parent of a fork(); a child process must open its own device")
        }
        let code: Int32 = mr.withLock { handle in
            guard let region = UnsafeMutablePointer<ibv_mr>(bitPattern: handle) else { return 0 }
            let code = ibv_dereg_mr(region)
            if code == 0 { handle = 0 }
            return code
        }
        if code != 0 { throw VerbsError.system("deregistering \(length) bytes", code) }
    }
}
