internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport

/// A protection domain (ibv_pd). Regions and queue pairs keep it alive.
public final class VerbsProtectionDomain: FabricProtectionDomain, @unchecked Sendable {  // immutable
    let device: VerbsDevice
    let pd: UnsafeMutablePointer<ibv_pd>

    init(device: VerbsDevice, pd: UnsafeMutablePointer<ibv_pd>) {
        self.device = device
        self.pd = pd
    }

    deinit {
        // In a forked child the handle is the parent's: leave it alone.
        if !device.forkDetection.isForkedChild { ibv_dealloc_pd(pd) }
    }
}
