import Fabric
import Testing

/// Sources/Fabric/BackendSelection.swift: which backend a process uses, and
/// the devices it lists and opens by name.
@Suite("backend selection")
struct BackendSelectionTests {
    @Test("FABRIC_BACKEND forces a backend, in any case; empty counts as unset")
    func forced() throws {
        let tcp = try Fabric.choose(environment: ["FABRIC_BACKEND": "tcp"])
        #expect(tcp.backend == .tcp && tcp.forced && tcp.reason.contains("FABRIC_BACKEND=tcp"), "\(tcp)")
        let verbs = try Fabric.choose(environment: ["FABRIC_BACKEND": "VERBS"])
        #expect(verbs.backend == .verbs && verbs.forced, "\(verbs)")
        #expect(try !Fabric.choose(environment: ["FABRIC_BACKEND": ""]).forced)
    }

    @Test("a FABRIC_BACKEND that names no backend is refused, naming the value and the choices")
    func unknownBackend() {
        #expect {
            try Fabric.choose(environment: ["FABRIC_BACKEND": "infiniband"])
        } throws: { error in
            guard let error = error as? FabricError else { return false }
            return error.kind == .invalidArgument && error.message.contains("FABRIC_BACKEND=infiniband")
                && error.message.contains("not a backend") && error.message.contains("tcp or verbs")
        }
    }

    @Test("unforced: verbs when an RDMA device has an active port and rdma_cm works, else tcp with the reason")
    func unforced() throws {
        let choice = try Fabric.choose(environment: [:])
        #expect(!choice.forced)
        let (devices, probeReason) = VerbsProbe.devices()
        let active = devices.filter(\.hasActivePort)
        let (connectionManager, _) = VerbsProbe.connectionManagerAvailable()
        if let device = active.first, connectionManager {
            #expect(choice.backend == .verbs && choice.reason.contains(device.name), "\(choice)")
            return
        }
        #expect(choice.backend == .tcp, "\(choice)")
        #expect(choice.reason.hasSuffix("; using the tcp software NIC"), "\(choice.reason)")
        // The reason says why verbs was passed over, not only that it was.
        let why: String
        if devices.isEmpty {
            why = probeReason ?? "no RDMA device"
        } else if active.isEmpty {
            why = "no RDMA device has an active port"
        } else {
            why = "rdma_cm"
        }
        #expect(choice.reason.contains(why), "\(choice.reason) does not say '\(why)'")
    }

    @Test(
        "FABRIC_BACKEND=verbs on a host without an RDMA device is an error that says how to create one",
        .enabled(if: VerbsProbe.devices().devices.isEmpty, "this host has an RDMA device"))
    func verbsWithoutDevice() {
        #expect {
            _ = try Fabric.openDefaultDevice(environment: ["FABRIC_BACKEND": "verbs"])
        } throws: { error in
            guard let error = error as? FabricError else { return false }
            return error.kind == .unavailable && error.message.contains("the verbs backend was requested")
                && error.message.contains(VerbsProbe.howToCreateDevice)
        }
    }

    @Test("FABRIC_BACKEND=tcp opens the software NIC")
    func tcpForced() throws {
        let device = try Fabric.openDefaultDevice(environment: ["FABRIC_BACKEND": "tcp"])
        #expect(device.backendName == "tcp")
    }

    @Test("devices are listed and opened by name; a wrong name says which exist")
    func devicesByName() throws {
        #expect(Fabric.listDevices().contains { $0.backend == .tcp && $0.name == TCPDevice.deviceName && $0.usable })
        let opened = try Fabric.openDevice(named: TCPDevice.deviceName)
        let expected = try DeviceProfile.fromEnvironment().capabilities
        #expect(opened.backendName == "tcp" && opened.capabilities == expected)
        #expect {
            _ = try Fabric.openDevice(named: "mlx5_9")
        } throws: { error in
            guard let error = error as? FabricError else { return false }
            return error.kind == .unavailable && error.message.contains("'mlx5_9'") && error.message.contains(TCPDevice.deviceName)
        }
    }
}
