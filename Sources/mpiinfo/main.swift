import ArgumentParser
import Fabric
import FabricRegistrationCache
import FabricSupport
import Foundation
import MPI
import PMI

/// What this MPI would do here, in the spirit of ompi_info: its version,
/// the launchers and bootstrap protocols it understands, which one this
/// environment selects, the fabric backend a rank would use, and every
/// tuning variable with its current value.
@main
struct MPIInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpiinfo",
        abstract: "The MPI layer's version, launchers, bootstrap, backend and settings.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    static let version = "0.1"
    static let launchers: [(launcher: String, how: String)] = [
        ("mpirun / mpiexec (this package)", "PMI-1 or PMI-2 on an inherited descriptor; other hosts through ssh and a proxy"),
        ("MPICH Hydra (mpiexec.hydra)", "PMI-1 or PMI-2 on PMI_FD; PMI-1 on PMI_PORT (-pmi-port)"),
        ("Slurm srun --mpi=pmi2", "PMI-2 on PMI_FD"),
        ("Slurm srun --mpi=pmix", "PMIx through libpmix.so.2, loaded at run time"),
        ("Flux flux run", "PMI-1 on PMI_FD (not tested here)"),
        ("Kubernetes MPI operator", "its launcher runs this mpirun over ssh with the host file it writes"),
    ]

    struct Report: Codable {
        struct Launcher: Codable { var launcher: String; var how: String }
        struct Setting: Codable { var name: String; var value: String?; var unsetMeans: String; var meaning: String }
        var version: String
        var launchers: [Launcher]
        var bootstrap: String
        var backend: String
        /// How ranks on one host talk to each other.
        var sameHost: String
        /// The registration cache here: whether its memory monitor runs,
        /// and the cap each kind of backend would get.
        var registrationCache: RegistrationCacheReport
        var settings: [Setting]
        /// The collectives' algorithms at a few sizes and rank counts.
        var collectiveAlgorithms: [CollectiveChoice]
    }

    struct CollectiveChoice: Codable { var ranks: Int; var bytes: Int; var collective: String; var algorithm: String }

    /// What each collective would use with 2, 4, 8 and 16 ranks at 8 B, 64 KiB and 1 MiB.
    static func collectiveAlgorithms(_ environment: [String: String]) -> [CollectiveChoice] {
        var choices: [CollectiveChoice] = []
        for ranks in [2, 4, 8, 16] {
            for bytes in [8, 65536, 1 << 20] {
                guard let chosen = try? CollectiveAlgorithms.choices(ranks: ranks, bytes: bytes, environment: environment) else { continue }
                choices += chosen.map { CollectiveChoice(ranks: ranks, bytes: bytes, collective: $0.collective, algorithm: $0.algorithm) }
            }
        }
        return choices
    }

    struct RegistrationCacheReport: Codable {
        var monitor: String
        var capOnVerbs: Int
        var capOnVerbsFrom: String
        var capOnTCP: Int
        var capOnTCPFrom: String
        /// Per verbs device with an active port: what it offers of
        /// on-demand paging (the cache does not use it).
        var onDemandPaging: [String: String]
    }

    /// What a rank's registration cache would do here. The monitor is
    /// started to find out (it is this process's, and ends with it).
    static func registrationCache(_ environment: [String: String]) -> RegistrationCacheReport {
        let monitor: String
        switch MemoryMonitor.shared.currentState {
        case .watching: monitor = "running (userfaultfd): buffers are cached and invalidated when their pages go"
        case .unavailable(let reason): monitor = "not running, so every transfer registers its buffer: \(reason)"
        }
        func cap(_ model: DeviceCapabilities.MemoryModel) -> (Int, String) {
            do {
                let configuration = try RegistrationCacheConfiguration.fromEnvironment(for: model)
                return (configuration.capacityBytes, configuration.capacitySource)
            } catch {
                return (0, "refused: \(error.message)")
            }
        }
        let (verbs, verbsFrom) = cap(.pinned)
        let (tcp, tcpFrom) = cap(.followsCurrentMapping)
        var paging: [String: String] = [:]
        for device in Fabric.listDevices() where device.backend == .verbs && device.usable {
            do {
                paging[device.name] = try Fabric.openVerbs(named: device.name).capabilities.onDemandPaging.summary
            } catch {
                paging[device.name] = "not probed: \(error.message)"
            }
        }
        return RegistrationCacheReport(
            monitor: monitor, capOnVerbs: verbs, capOnVerbsFrom: verbsFrom, capOnTCP: tcp, capOnTCPFrom: tcpFrom, onDemandPaging: paging)
    }

    static let sameHost = "through the fabric backend (loopback TCP for tcp, the device for verbs): this MPI has no shared-memory path yet (docs/mpi.md)"

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let bootstrap: String
        do { bootstrap = try BootstrapSelection.choose(from: environment).description } catch { bootstrap = "refused: \(error.message)" }
        let backend: String
        do {
            let choice = try Fabric.choose(environment: environment)
            backend = "\(choice.backend.rawValue) (\(choice.reason))"
        } catch {
            backend = "refused: \(error.message)"
        }
        let report = Report(
            version: Self.version, launchers: Self.launchers.map { .init(launcher: $0.launcher, how: $0.how) },
            bootstrap: bootstrap, backend: backend, sameHost: Self.sameHost, registrationCache: Self.registrationCache(environment),
            settings: MPISettings.current(environment).map { .init(name: $0.setting.name, value: $0.value, unsetMeans: $0.setting.unsetMeans, meaning: $0.setting.meaning) },
            collectiveAlgorithms: Self.collectiveAlgorithms(environment))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("MPI (SwiftFabric) \(report.version)")
        print("\nlaunchers understood:")
        for launcher in report.launchers { print("  \(launcher.launcher): \(launcher.how)") }
        print("\nbootstrap in this environment: \(report.bootstrap)")
        print("fabric backend a rank would use: \(report.backend)")
        print("ranks on one host talk \(report.sameHost)")
        print("\nregistration cache (docs/registration-cache.md):")
        print("  memory monitor: \(report.registrationCache.monitor)")
        print("  cap over verbs: \(report.registrationCache.capOnVerbs) bytes, from \(report.registrationCache.capOnVerbsFrom)")
        print("  cap over tcp: \(report.registrationCache.capOnTCP) bytes, from \(report.registrationCache.capOnTCPFrom)")
        if report.registrationCache.onDemandPaging.isEmpty {
            print("  on-demand paging: no verbs device here (the tcp backend pins nothing)")
        }
        for (device, paging) in report.registrationCache.onDemandPaging.sorted(by: { $0.key < $1.key }) {
            print("  on-demand paging on \(device): \(paging)")
        }
        print("\ncollective algorithms with these settings (FABRIC_MPI_BCAST and the others below choose):")
        if case .failure(let error) = Result(catching: { () throws(MPIError) in try CollectiveAlgorithms.choices(ranks: 2, bytes: 8, environment: environment) }) {
            print("  refused: \(error.message)")
        }
        for ranks in [2, 4, 8, 16] {
            for bytes in [8, 65536, 1 << 20] {
                let row = report.collectiveAlgorithms.filter { $0.ranks == ranks && $0.bytes == bytes && !["barrier", "reduce", "gather, scatter", "scan, exclusive scan"].contains($0.collective) }
                guard !row.isEmpty else { continue }
                print("  \(ranks) ranks, \(bytes) B: " + row.map { "\($0.collective) \($0.algorithm)" }.joined(separator: ", "))
            }
        }
        print("  always: barrier dissemination, reduce binomial, gather and scatter linear, scans recursive-doubling")
        print("\nsettings (environment variables):")
        for setting in report.settings {
            print("  \(setting.name)=\(setting.value ?? "") \(setting.value == nil ? "(not set: \(setting.unsetMeans))" : "")")
            print("      \(setting.meaning)")
        }
    }
}
