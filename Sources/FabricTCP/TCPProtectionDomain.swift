import FabricCore

/// A protection domain of the software NIC.
public final class TCPProtectionDomain: FabricProtectionDomain, Sendable {
    let device: TCPDeviceCore
    init(device: TCPDeviceCore) { self.device = device }
}
