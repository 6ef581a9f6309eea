import FabricTestSupport
import Foundation
import MPI
import Testing

/// The MPI runtime in jobs started as users start them: mpi-runtime-check
/// ranks under our mpirun, MPICH's Hydra, and alone.
@Suite("the MPI runtime in real jobs", .serialized)
struct RuntimeTests {
    @Test("a ring of runtime messages: each rank opens exactly the connections it uses, both sides connecting at once", arguments: [2, 3, 4, 8])
    func ring(ranks: Int) throws {
        let run = try Job.run(Job.mpirun, ["-n", String(ranks), Job.check, "ring"])
        #expect(run.status == 0, "\(run.output)")
        // Two neighbours each (one when the job has two ranks): lazy, not all-to-all.
        let neighbours = ranks == 2 ? 1 : 2
        for rank in 0..<ranks {
            #expect(run.output.contains("rank \(rank) of \(ranks): ring ok, \(neighbours) connections, backend tcp, via PMI-2 over PMI_FD"), "\(run.output)")
        }
        #expect(!run.output.contains("warning"), "\(run.output)")
    }

    @Test("every rank to every rank: size - 1 connections each")
    func all() throws {
        let run = try Job.run(Job.mpirun, ["-n", "5", Job.check, "all"])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<5 { #expect(run.output.contains("rank \(rank) of 5: all ok, 4 connections"), "\(run.output)") }
    }

    @Test("a rank computing outside MPI still has its incoming connections accepted (by the runtime's listening thread)")
    func busyRank() throws {
        let run = try Job.run(Job.mpirun, ["-n", "4", Job.check, "busy", "2"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("rank 0: 3 connections accepted while computing"), "\(run.output)")
    }

    @Test("alone, a program is a singleton of one rank; with a job size but no bootstrap it refuses")
    func singleton() throws {
        let alone = try Job.run(Job.check, ["ring"])
        #expect(alone.status == 0)
        #expect(alone.output.contains("rank 0 of 1: ring ok, 0 connections, backend tcp, via singleton (no launcher)"), "\(alone.output)")
        let orphan = try Job.run(Job.check, ["ring"], environment: ["SLURM_NTASKS": "4"])
        #expect(orphan.status == 1)
        #expect(orphan.output.contains("SLURM_NTASKS=4 says this job has 4 tasks") && orphan.output.contains("separate singletons"), "\(orphan.output)")
    }

    @Test("a rank without the job secret cannot connect to the others: it says so and the job ends")
    func rankWithoutSecret() throws {
        let run = try Job.run(Job.mpirun, [
            "-n", "1", "-env", "FABRIC_JOB_SECRET", "not-this-job-s-secret-at-all", Job.check, "ring", ":", "-n", "2", Job.check, "ring",
        ])
        #expect(run.status != 0)
        #expect(run.output.contains("could not prove it knows the job secret"), "\(run.output)")
        #expect(!run.output.contains("ring ok"), "\(run.output)")
        #expect(ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }

    @Test("the world and self communicators of a singleton, and a rank outside them named")
    func communicators() throws {
        let runtime = try MPIRuntime.initialize(environment: [:])
        #expect(runtime.world.size == 1 && runtime.world.rank == 0 && runtime.selfCommunicator.size == 1)
        #expect(runtime.world != runtime.selfCommunicator)
        #expect { try runtime.world.worldRank(of: 1) } throws: { ($0 as? MPIError)?.kind == .invalidRank }
        try runtime.finalize()
        #expect { try runtime.sendRuntimeMessage([1], to: 0) } throws: { ($0 as? MPIError)?.kind == .invalidState }
    }

    @Test("an abort ends every rank with its exit code, over PMI-1 and PMI-2", arguments: ["1", "2"])
    func abort(version: String) throws {
        let started = ContinuousClock.now
        let run = try Job.run(Job.mpirun, ["-n", "3", Job.check, "abort", "1"], environment: ["FABRIC_PMI_VERSION": version])
        #expect(run.status == 9, "\(run.output)")
        #expect(run.output.contains("rank 1 on") && run.output.contains("called abort with exit code 9"), "\(run.output)")
        #expect(run.output.contains("[rank 1] error: aborting the job: rank 1 aborts on purpose"), "\(run.output)")
        #expect(!run.output.contains("still running"))
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }

    @Test("on a timeout each rank says what it waits for, and mpirun names the ranks still running")
    func waiting() throws {
        let run = try Job.run(Job.mpirun, ["--timeout", "2", "-n", "3", Job.check, "wait", "1"])
        #expect(run.status == 124)
        #expect(run.output.contains("[rank 1] waiting for: a runtime message from rank 2"), "\(run.output)")
        #expect(run.output.contains("[rank 2] waiting for: a runtime message from rank 1, in the finalize barrier (round 1 of 2)"), "\(run.output)")
        #expect(run.output.contains("mpirun:   rank 1 on"))
        #expect(ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }

    @Test("ranks that chose different backends fail initialisation, naming both hosts and why each chose")
    func mismatchedBackends() throws {
        let run = try Job.run(Job.mpirun, ["-n", "1", Job.pmiRank, "fake-verbs-root", ":", "-n", "2", Job.check, "ring"])
        #expect(run.status == 1)
        #expect(run.output.contains("chose the tcp backend"), "\(run.output)")
        #expect(run.output.contains("but rank 0 on far-host chose verbs (RDMA device rxe0 has an active port)"), "\(run.output)")
        #expect(ProcessTable.live(named: "pmi-test-rank").isEmpty && ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }

    @Test("mpiinfo shows the bootstrap its launcher offers, the backend, and each setting, never the secret's value")
    func info() throws {
        let run = try Job.run(Job.mpirun, ["-n", "1", "-x", "FABRIC_LOG_LEVEL=debug", Job.directory.appendingPathComponent("mpiinfo").path])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("bootstrap in this environment: PMI-2 over PMI_FD=3 (rank 0)"), "\(run.output)")
        #expect(run.output.contains("fabric backend a rank would use: tcp"))
        #expect(run.output.contains("FABRIC_LOG_LEVEL=debug"))
        #expect(run.output.contains("FABRIC_JOB_SECRET=(set)"))
        let secret = run.output.split(separator: "\n").first { $0.contains("FABRIC_JOB_SECRET=") }
        #expect(secret?.contains("(set)") == true && secret!.count < 40, "the secret's value must not be shown: \(secret ?? "")")
    }

    @Test("under MPICH's Hydra over PMI-1 and PMI-2, with a home of its own per program and the secret passed by rank 0", .enabled(if: Job.hydra != nil, "mpiexec.hydra is not installed (apt-get install mpich)"), arguments: ["1", "2"])
    func hydra(version: String) throws {
        // Hydra sets no job secret: rank 0 draws one and passes it through
        // PMI. Each program gets a home of its own, as hosts without a
        // shared home have: a secret from the per-user key file would
        // differ between them and the ranks could not connect.
        let homes = (0..<2).map { FileManager.default.temporaryDirectory.appendingPathComponent("home-\(getpid())-\($0)").path }
        defer { for home in homes { try? FileManager.default.removeItem(atPath: home) } }
        let run = try Job.run(Job.hydra!, [
            "-n", "1", "-env", "HOME", homes[0], Job.check, "ring", ":", "-n", "2", "-env", "HOME", homes[1], Job.check, "ring",
        ], environment: ["FABRIC_PMI_VERSION": version])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<3 {
            #expect(run.output.contains("rank \(rank) of 3: ring ok, 2 connections, backend tcp, via PMI-\(version) over PMI_FD"), "\(run.output)")
        }
    }
}

enum Job {
    static var directory: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    static var mpirun: String { directory.appendingPathComponent("mpirun").path }
    static var check: String { directory.appendingPathComponent("mpi-runtime-check").path }
    static var pointToPoint: String { directory.appendingPathComponent("mpi-p2p-check").path }
    static var datatypeCheck: String { directory.appendingPathComponent("mpi-datatype-check").path }
    static var requestsCheck: String { directory.appendingPathComponent("mpi-requests-check").path }
    static var communicatorCheck: String { directory.appendingPathComponent("mpi-communicator-check").path }
    static var collectiveCheck: String { directory.appendingPathComponent("mpi-collective-check").path }
    static var windowCheck: String { directory.appendingPathComponent("mpi-window-check").path }
    static var registrationCacheCheck: String { directory.appendingPathComponent("mpi-regcache-check").path }
    static var pmiRank: String { directory.appendingPathComponent("pmi-test-rank").path }
    static let hydra: String? = ["/usr/bin/mpiexec.hydra"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static func run(_ program: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        var variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // The job gets its secret from its launcher, not from the test run.
        if program != mpirun { variables["FABRIC_JOB_SECRET"] = nil }
        process.environment = variables
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
