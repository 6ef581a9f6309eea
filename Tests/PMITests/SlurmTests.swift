import FabricTestSupport
import Foundation
import Testing

/// The clients under a real Slurm: scripts/slurm-cluster.sh's controller
/// and three slurmd nodes on this machine, and pmi-test-rank as every task.
/// Off unless FABRIC_TEST_SLURM=1 (scripts/test.sh sets it once the cluster
/// is up, and SLURM_CONF with it).
@Suite(
    "PMI under Slurm", .serialized,
    .enabled(if: Slurm.enabled, "Slurm tests are off: set FABRIC_TEST_SLURM=1 and SLURM_CONF (scripts/slurm-cluster.sh up; scripts/test.sh does both)"))
struct SlurmTests {
    @Test("six ranks on three nodes exchange values through srun --mpi=pmi2 and --mpi=pmix", arguments: [
        ("pmi2", "PMI-2 over PMI_FD"),
        ("pmix", "PMIx through libpmix.so.2"),
    ])
    func exchange(mpi: String, protocolName: String) throws {
        let run = try Slurm.srun(["-N3", "-n6", "--mpi=\(mpi)", Slurm.rank, "missing"])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<6 {
            #expect(run.output.contains("rank \(rank) of 6 via \(protocolName): 6 values checked"), "\(run.output)")
            #expect(run.output.contains("rank \(rank): missing key refused: no rank put the key 'nobody-put-this'"), "\(run.output)")
        }
        // Three nodes really took part: Slurm names each task's node.
        #expect(Set(run.nodes.values) == ["n1", "n2", "n3"], "\(run.output)")
    }

    @Test("the MPI runtime under srun: the job secret drawn by rank 0 and passed through PMI, addresses exchanged, connections on first use", arguments: [
        ("pmi2", "PMI-2 over PMI_FD"),
        ("pmix", "PMIx through libpmix.so.2"),
    ])
    func runtime(mpi: String, protocolName: String) throws {
        let run = try Slurm.srun(["-N3", "-n6", "--mpi=\(mpi)", Slurm.runtimeCheck, "ring"])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<6 {
            #expect(run.output.contains("rank \(rank) of 6: ring ok, 2 connections, backend tcp, via \(protocolName)"), "\(run.output)")
        }
        let aborted = try Slurm.srun(["-N3", "-n6", "--mpi=\(mpi)", Slurm.runtimeCheck, "abort", "4"])
        #expect(aborted.status != 0)
        #expect(aborted.output.contains("[rank 4] error: aborting the job: rank 4 aborts on purpose"), "\(aborted.output)")
        #expect(!aborted.output.contains("still running"))
    }

    @Test("the MPI runtime with each node's ranks in its own network namespace: every rank reachable at its namespace's address")
    func runtimeInNamespaces() throws {
        try Slurm.script("slurm-netns.sh", "up")
        defer { try? Slurm.script("slurm-netns.sh", "down") }
        let run = try Slurm.srun(["-N3", "-n6", "--mpi=pmi2", Slurm.scriptPath("slurm-netns-task.sh"), Slurm.runtimeCheck, "all"])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<6 { #expect(run.output.contains("rank \(rank) of 6: all ok, 5 connections"), "\(run.output)") }
        let addresses = run.output.split(separator: "\n").filter { $0.contains("all ok") }.compactMap { $0.split(separator: " ").last.map(String.init) }
        #expect(addresses.count == 6 && addresses.allSatisfy { $0.hasPrefix("10.78.0.") }, "\(addresses)")
        #expect(Set(addresses).count == 3, "two ranks per node namespace: \(addresses)")
    }

    @Test("PMI-2 with each node's ranks in a network namespace of its own, through a task wrapper")
    func namespaces() throws {
        try Slurm.script("slurm-netns.sh", "up")
        defer { try? Slurm.script("slurm-netns.sh", "down") }
        let expected = try (1...3).map { try Slurm.namespaceIdentity("/run/netns/fabric-slurm-n\($0)") }
        let host = try Slurm.namespaceIdentity("/proc/self/ns/net")
        let run = try Slurm.srun(["-N3", "-n6", "--mpi=pmi2", Slurm.scriptPath("slurm-netns-task.sh"), Slurm.rank])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<6 {
            #expect(run.output.contains("rank \(rank) of 6 via PMI-2 over PMI_FD: 6 values checked"), "\(run.output)")
        }
        // Each rank says which namespace it ran in: two ranks in each of
        // the three node namespaces, none on the host's network, and the
        // ranks of one node together.
        let places = run.namespaces
        #expect(run.nodes.count == 6, "\(run.output)")
        #expect(places.count == 6, "\(run.output)")
        #expect(!places.values.contains(host))
        for identity in expected {
            #expect(places.values.filter { $0 == identity }.count == 2, "\(places) against \(expected)")
        }
        for (rank, node) in run.nodes {
            let index = ["n1", "n2", "n3"].firstIndex(of: node)
            #expect(index != nil, "rank \(rank) ran on an unknown node \(node)")
            if let index { #expect(places[rank] == expected[index], "rank \(rank) on \(node) ran in \(places[rank] ?? "?")") }
        }
    }

    @Test("PMIx inside a network namespace is refused with the reason, not a hang")
    func pmixInsideNamespace() throws {
        try Slurm.script("slurm-netns.sh", "up")
        defer { try? Slurm.script("slurm-netns.sh", "down") }
        let started = ContinuousClock.now
        let run = try Slurm.srun(["-N3", "-n3", "--mpi=pmix", Slurm.scriptPath("slurm-netns-task.sh"), Slurm.rank])
        #expect(run.status != 0)
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(run.output.contains("PMIx could not reach the launcher's PMIx server"), "\(run.output)")
        #expect(run.output.contains("srun --mpi=pmi2"), "\(run.output)")
        #expect(!run.output.contains("values checked"), "\(run.output)")
    }

    @Test("srun --mpi=none with two tasks: each rank refuses to run as a singleton and says why")
    func noBootstrap() throws {
        let run = try Slurm.srun(["-n2", "--mpi=none", Slurm.rank])
        #expect(run.status != 0)
        let refusals = run.output.components(separatedBy: "\n").filter {
            $0.contains("SLURM_NTASKS=2 says this job has 2 tasks") && $0.contains("refusing to run as one of 2 separate singletons")
        }
        #expect(refusals.count == 2, "\(run.output)")
        #expect(!run.output.contains("values checked"), "\(run.output)")
    }

    @Test("a rank's abort under srun --mpi=pmi2 and --mpi=pmix ends the job quickly with no rank left", arguments: ["pmi2", "pmix"])
    func abort(mpi: String) throws {
        let started = ContinuousClock.now
        let run = try Slurm.srun(["-N3", "-n6", "--mpi=\(mpi)", Slurm.rank, "abort", "4"])
        #expect(run.status != 0)
        // pmi-test-rank sleeps 30 s after its abort: an ignored abort shows.
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(!run.output.contains("still running"))
        #expect(!run.output.contains("values checked"), "\(run.output)")
        // Slurm's step daemons take a moment to reap the killed tasks.
        let left = ProcessTable.live(named: "pmi-test-rank", within: 5)
        #expect(left.isEmpty, "ranks left running: \(left)")
    }
}

enum Slurm {
    static let enabled = ProcessInfo.processInfo.environment["FABRIC_TEST_SLURM"] == "1"

    static var rank: String { Hydra.rank }
    static var runtimeCheck: String { URL(fileURLWithPath: Hydra.rank).deletingLastPathComponent().appendingPathComponent("mpi-runtime-check").path }

    /// The package's scripts folder, found from this file's place.
    static func scriptPath(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts").appendingPathComponent(name).path
    }

    static func script(_ name: String, _ arguments: String...) throws {
        let run = try execute("/bin/bash", [scriptPath(name)] + arguments)
        guard run.status == 0 else { throw SlurmTestError("\(name) \(arguments.joined(separator: " ")) failed: \(run.output)") }
    }

    struct Run {
        var status: Int32
        var output: String
        /// Where each rank says it ran: its network namespace and the node
        /// Slurm started it on ("rank R in net:[N] on NODE").
        var namespaces: [Int: String] = [:]
        var nodes: [Int: String] = [:]

        init(status: Int32, output: String) {
            self.status = status
            self.output = output
            for line in output.components(separatedBy: "\n") {
                let words = line.split(separator: " ")
                guard words.count == 6, words[0] == "rank", words[2] == "in", words[4] == "on", let rank = Int(words[1]) else { continue }
                namespaces[rank] = String(words[3])
                nodes[rank] = String(words[5])
            }
        }
    }

    /// Runs srun with a one-minute limit on the job; a failing task ends
    /// the step.
    static func srun(_ arguments: [String]) throws -> Run {
        let run = try execute("/usr/bin/srun", ["--time=1", "--kill-on-bad-exit=1"] + arguments)
        return Run(status: run.status, output: run.output)
    }

    /// A namespace's identity as the kernel prints it: net:[inode].
    static func namespaceIdentity(_ path: String) throws -> String {
        var information = stat()
        guard stat(path, &information) == 0 else { throw SlurmTestError("cannot stat \(path)") }
        return "net:[\(information.st_ino)]"
    }

    static func execute(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // srun passes its environment on to the tasks: the job secret must
        // come from the job (rank 0, through PMI), not from the test run.
        var environment = ProcessInfo.processInfo.environment
        environment["FABRIC_JOB_SECRET"] = nil
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}

struct SlurmTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
