@_exported import FabricCore
@_exported import FabricSupport
@_exported import FabricTCP
@_exported import FabricVerbs
import Logging

/// The backends this build knows.
public enum FabricBackend: String, CaseIterable, Sendable, Codable {
    case verbs
    case tcp
}

/// A device as `Fabric.listDevices()` reports it.
public struct DeviceDescription: Sendable, Codable, Equatable {
    public var backend: FabricBackend
    public var name: String
    public var usable: Bool
    public var detail: String
}

/// Which backend a process would use, and why.
public struct BackendChoice: Sendable, Codable, Equatable {
    public var backend: FabricBackend
    public var reason: String
    public var forced: Bool
}

public enum Fabric {
    /// The variable that forces a backend: "tcp" or "verbs".
    public static let backendVariable = "FABRIC_BACKEND"

    /// Chooses a backend: the environment variable wins; else verbs when an
    /// RDMA device with an active port and rdma_cm exist; else tcp.
    public static func choose(environment: [String: String] = environmentVariables()) throws(FabricError) -> BackendChoice {
        if let forced = environment[backendVariable], !forced.isEmpty {
            guard let backend = FabricBackend(rawValue: forced.lowercased()) else {
                throw FabricError(.invalidArgument, "\(backendVariable)=\(forced) is not a backend; use tcp or verbs")
            }
            return BackendChoice(backend: backend, reason: "forced by \(backendVariable)=\(forced)", forced: true)
        }
        let (devices, reason) = VerbsProbe.devices()
        let active = devices.filter(\.hasActivePort)
        let (connectionManager, cmReason) = VerbsProbe.connectionManagerAvailable()
        if !active.isEmpty && connectionManager {
            return BackendChoice(backend: .verbs, reason: "RDMA device \(active[0].name) has an active port", forced: false)
        }
        let why: String
        if active.isEmpty {
            why = devices.isEmpty ? (reason ?? "no RDMA device") : "no RDMA device has an active port"
        } else {
            why = cmReason ?? "rdma_cm is not available"
        }
        return BackendChoice(backend: .tcp, reason: "\(why); using the tcp software NIC", forced: false)
    }

    /// Every device of every backend this build knows, usable or not.
    public static func listDevices() -> [DeviceDescription] {
        var result: [DeviceDescription] = []
        let (devices, _) = VerbsProbe.devices()
        let (connectionManager, cmReason) = VerbsProbe.connectionManagerAvailable()
        for device in devices {
            let detail: String
            if !device.hasActivePort {
                detail = "no active port"
            } else if !connectionManager {
                detail = cmReason ?? "rdma_cm is not available"
            } else {
                detail = "active port (\(device.ports.first(where: \.isActive)?.linkLayer ?? "?"))"
            }
            result.append(DeviceDescription(
                backend: .verbs, name: device.name, usable: device.hasActivePort && connectionManager, detail: detail))
        }
        result.append(DeviceDescription(backend: .tcp, name: TCPDevice.deviceName, usable: true, detail: "software NIC over TCP sockets"))
        return result
    }

    /// Opens a device by name (as `listDevices` gives it).
    public static func openDevice(named name: String, logger: Logger = Logger(label: "fabric")) throws(FabricError) -> any FabricDevice {
        guard let description = listDevices().first(where: { $0.name == name }) else {
            throw FabricError(.unavailable, "no device named '\(name)'; devices: \(listDevices().map(\.name).joined(separator: ", "))")
        }
        guard description.usable else {
            throw FabricError(.unavailable, "device '\(name)' cannot be used: \(description.detail)")
        }
        switch description.backend {
        case .tcp: return try TCPDevice(logger: logger)
        case .verbs: return try VerbsDevice(name: name, logger: logger)
        }
    }

    /// Opens the software NIC.
    public static func openTCP(logger: Logger = Logger(label: "fabric.tcp")) throws(FabricError) -> TCPDevice {
        try TCPDevice(logger: logger)
    }

    /// Opens an RDMA device (nil: the first with an active port).
    public static func openVerbs(named name: String? = nil, logger: Logger = Logger(label: "fabric.verbs")) throws(FabricError) -> VerbsDevice {
        try VerbsDevice(name: name, logger: logger)
    }

    /// Opens the chosen backend's default device, logging the choice once.
    /// Pass the result to code written for `some FabricDevice`: the backend
    /// is then fixed for everything that code does. `environment` is where
    /// FABRIC_BACKEND is looked up (the process's by default).
    public static func openDefaultDevice(
        environment: [String: String] = environmentVariables(), logger: Logger = Logger(label: "fabric")
    ) throws(FabricError) -> any FabricDevice {
        let choice = try choose(environment: environment)
        switch choice.backend {
        case .tcp:
            logger.info("fabric backend: tcp (\(choice.reason))")
            return try TCPDevice(logger: logger)
        case .verbs:
            let (devices, reason) = VerbsProbe.devices()
            if devices.isEmpty {
                throw FabricError(.unavailable, "the verbs backend was requested (\(choice.reason)) but there is no RDMA device (\(reason ?? "none listed")); \(VerbsProbe.howToCreateDevice)")
            }
            logger.info("fabric backend: verbs (\(choice.reason))")
            return try VerbsDevice(logger: logger)
        }
    }

    public static func environmentVariables() -> [String: String] {
        ProcessEnvironment.variables()
    }
}

