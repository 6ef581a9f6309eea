import ArgumentParser
import Fabric
import FabricSupport
import FabricVerbs
import Foundation

/// Shows the backends, devices and the choice a program would make.
@main
struct FabricInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fabric-info",
        abstract: "Backends, devices, the backend that would be chosen and why, and the effective configuration.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "List the software NIC's built-in device profiles and exit.")
    var profiles = false

    @Flag(help: "Show the counters that running processes of this user publish for their tcp devices, and exit.")
    var counters = false

    struct Report: Codable {
        struct Backend: Codable {
            var name: String
            var available: Bool
            var detail: String
            var devices: [String]
        }
        var chosen: BackendChoice?
        var choiceError: String?
        var backends: [Backend]
        var verbsDevices: [VerbsDeviceInfo]
        var tcpCapabilities: DeviceCapabilities?
        var verbsCapabilities: [String: DeviceCapabilities] = [:]
        var verbsErrors: [String: String] = [:]
        var tcpProfile: String?
        var tcpLink: String?
        var tcpFaults: String?
        var tcpError: String?
        var configuration: [String: String]
        /// The open-descriptor limit before and after a device was opened
        /// (opening raises the soft limit to the hard one).
        var descriptorLimit: DescriptorLimits?
    }

    struct DescriptorLimits: Codable {
        var softBefore: UInt64
        var softAfter: UInt64
        var hard: UInt64
    }

    func run() throws {
        if counters {
            showCounters()
            return
        }
        if profiles {
            for profile in DeviceProfile.builtIn {
                print("\(profile.name): \(profile.summary)")
            }
            print("(or a JSON file: \(DeviceProfile.environmentVariable)=/path/to/profile.json; docs/emulation.md)")
            return
        }
        let limitBefore = DescriptorLimit.read()
        let environment = Fabric.environmentVariables()
        var report = Report(chosen: nil, choiceError: nil, backends: [], verbsDevices: [], tcpCapabilities: nil, tcpProfile: nil, tcpLink: nil, tcpFaults: nil, tcpError: nil, configuration: [:])
        do { report.chosen = try Fabric.choose(environment: environment) } catch { report.choiceError = error.message }

        let (devices, reason) = VerbsProbe.devices()
        let (connectionManager, cmReason) = VerbsProbe.connectionManagerAvailable()
        report.verbsDevices = devices
        let verbsDetail: String
        if devices.isEmpty {
            verbsDetail = (reason ?? "no device") + "; " + VerbsProbe.howToCreateDevice
        } else if !connectionManager {
            verbsDetail = cmReason ?? "rdma_cm unavailable"
        } else {
            verbsDetail = "\(devices.count) device(s), \(devices.filter(\.hasActivePort).count) with an active port"
        }
        report.backends.append(.init(name: "verbs", available: !devices.isEmpty && connectionManager, detail: verbsDetail, devices: devices.map(\.name)))
        if connectionManager {
            for device in devices where device.hasActivePort {
                do {
                    report.verbsCapabilities[device.name] = try VerbsDevice(name: device.name).capabilities
                } catch {
                    report.verbsErrors[device.name] = error.message
                }
            }
        }

        do {
            let device = try TCPDevice()
            report.tcpCapabilities = device.capabilities
            report.tcpProfile = "\(device.profile.name) (\(device.profile.summary))"
            report.tcpLink = device.link.description
            report.tcpFaults = device.faults.description
            report.backends.append(.init(name: "tcp", available: true, detail: "software NIC over TCP sockets; job secret from \(device.secretSource)", devices: [device.name]))
        } catch {
            report.tcpError = error.message
            report.backends.append(.init(name: "tcp", available: false, detail: error.message, devices: []))
        }
        for name in [
            Fabric.backendVariable, JobSecret.environmentVariable, DeviceProfile.environmentVariable,
            LinkShape.environmentVariable, FaultScript.environmentVariable,
        ] {
            if let value = environment[name] {
                report.configuration[name] = name == JobSecret.environmentVariable ? "(set, \(value.utf8.count) characters)" : value
            } else {
                report.configuration[name] = "(not set)"
            }
        }
        report.configuration["job secret key file"] = JobSecret.defaultKeyFilePath
        if let limitBefore, let limitAfter = DescriptorLimit.read() {
            report.descriptorLimit = DescriptorLimits(softBefore: limitBefore.current, softAfter: limitAfter.current, hard: limitAfter.maximum)
        }

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        if let chosen = report.chosen {
            print("chosen backend: \(chosen.backend.rawValue) (\(chosen.reason))")
        } else {
            print("chosen backend: none: \(report.choiceError ?? "")")
        }
        print("\nbackends:")
        for backend in report.backends {
            print("  \(backend.name): \(backend.available ? "available" : "not available") - \(backend.detail)")
        }
        if !devices.isEmpty {
            print("\nRDMA devices:")
            for device in devices {
                print("  \(device.name) (node GUID \(device.nodeGUID))")
                for port in device.ports {
                    print("    port \(port.number): \(port.state), \(port.linkLayer), MTU \(port.activeMTU)")
                }
            }
        }
        for (name, caps) in report.verbsCapabilities.sorted(by: { $0.key < $1.key }) {
            print("\nverbs device \(name):")
            printCapabilities(caps)
        }
        for (name, message) in report.verbsErrors.sorted(by: { $0.key < $1.key }) {
            print("\nverbs device \(name) cannot be opened: \(message)")
        }
        if let caps = report.tcpCapabilities {
            print("\ntcp device \(TCPDevice.deviceName), profile \(report.tcpProfile ?? "?"):")
            printCapabilities(caps)
            print("  link: \(report.tcpLink ?? "?"); faults: \(report.tcpFaults ?? "?")")
        }
        if let limit = report.descriptorLimit {
            let raised = limit.softBefore == limit.softAfter ? "" : " (raised from \(limit.softBefore) when a device opened)"
            print("\nopen descriptors: limit \(limit.softAfter)\(raised), hard limit \(limit.hard); each connection takes about one per end (docs/architecture.md)")
        }
        print("\nconfiguration:")
        for (key, value) in report.configuration.sorted(by: { $0.key < $1.key }) {
            print("  \(key) = \(value)")
        }
    }

    private func printCapabilities(_ caps: DeviceCapabilities) {
        print("  max message \(caps.maxMessageSize) B, max inline \(caps.maxInlineData) B, max scatter entries \(caps.maxScatterEntries)")
        print("  max queue pairs \(caps.maxQueuePairs), max queue depth \(caps.maxQueueDepth), max completion queue depth \(caps.maxCompletionQueueDepth)")
        print("  max memory regions \(caps.maxMemoryRegions), max region size \(caps.maxMemoryRegionSize) B, private data \(caps.maxPrivateData) B")
        print("  MTU \(caps.mtu) B, max outstanding reads and atomics \(caps.maxOutstandingReads)")
        print("  atomics: \(caps.atomics.rawValue); memory: \(caps.memoryModel.rawValue); one-sided progress: \(caps.oneSidedProgress.rawValue)")
        print("  on-demand paging: \(caps.onDemandPaging.summary)")
    }

    private func showCounters() {
        let all = CounterFiles.readAll()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: (try? encoder.encode(all)) ?? Data(), as: UTF8.self))
            return
        }
        guard !all.isEmpty else {
            print("no running process of this user publishes counters (in \(CounterFiles.directory))")
            return
        }
        for device in all {
            print("process \(device.processID), device \(device.device), profile \(device.profile), \(device.queuePairs.count) queue pair(s)")
            print("  totals:" + device.totals.named.map { " \($0.name) \($0.value)" }.joined())
            for entry in device.queuePairs {
                print("  qp \(entry.number):" + entry.counters.named.map { " \($0.name) \($0.value)" }.joined())
            }
        }
    }
}
