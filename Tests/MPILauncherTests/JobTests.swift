import FabricTestSupport
import Foundation
import Testing

/// mpirun as users run it, on this host: the built binary, real ranks,
/// its exit status, its messages, and the process table afterwards.
@Suite("mpirun on one host", .serialized)
struct JobTests {
    @Test("1 to 8 ranks exchange their values through mpirun's PMI server", arguments: [1, 2, 3, 8])
    func exchange(ranks: Int) throws {
        let run = try Launch.run(["-n", String(ranks), Launch.rank, "missing"])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<ranks {
            #expect(run.output.contains("rank \(rank) of \(ranks) via PMI-2 over PMI_FD: \(ranks) values checked"), "\(run.output)")
        }
    }

    @Test("mpiexec is the same program under MPICH's name")
    func mpiexec() throws {
        let process = Process()
        process.executableURL = Launch.directory.appendingPathComponent("mpiexec")
        process.arguments = ["-np", "2", Launch.rank]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(output.contains("rank 1 of 2 via PMI-2 over PMI_FD: 2 values checked"))
    }

    @Test("output tagged as Open MPI and MPICH tag it; standard input reaches rank 0 only")
    func output() throws {
        let tagged = try Launch.run(["--tag-output", "-n", "2", "sh", "-c", "echo out; echo err >&2"])
        for rank in 0..<2 {
            #expect(tagged.output.contains("[1,\(rank)]<stdout>:out"))
            #expect(tagged.output.contains("[1,\(rank)]<stderr>:err"))
        }
        let prefixed = try Launch.run(["-l", "-n", "2", "sh", "-c", "printf 'a\\nb\\n'"])
        #expect(prefixed.output.components(separatedBy: "\n").filter { $0 == "[1] a" || $0 == "[1] b" }.count == 2)
        let input = try Launch.run(["-n", "3", "cat"], input: "typed\n")
        #expect(input.status == 0)
        #expect(input.output.components(separatedBy: "\n").filter { $0 == "typed" }.count == 1, "\(input.output)")
    }

    @Test("variables, working directory and several programs (MPMD) reach the right ranks")
    func environmentAndPrograms() throws {
        setenv("FABRIC_TEST_EXPORTED", "from-mpirun", 1)
        let run = try Launch.run([
            "-x", "FABRIC_TEST_EXPORTED", "-x", "A=1", "-genv", "B", "two words", "-wdir", "/tmp",
            "-n", "1", "sh", "-c", "echo first $PMI_RANK $FABRIC_TEST_EXPORTED $A $B $(pwd) $C",
            ":", "-n", "2", "-env", "C", "c", "sh", "-c", "echo second $PMI_RANK $C",
        ])
        #expect(run.status == 0)
        #expect(run.output.contains("first 0 from-mpirun 1 two words /tmp"))
        #expect(run.output.contains("second 1 c") && run.output.contains("second 2 c"))
        // Each rank has a job secret, the same in every rank, and long.
        let secrets = try Launch.run(["-n", "2", "sh", "-c", "echo secret=$FABRIC_JOB_SECRET"])
        let values = Set(secrets.output.components(separatedBy: "\n").filter { $0.hasPrefix("secret=") })
        #expect(values.count == 1 && (values.first?.count ?? 0) >= 7 + 64)
        let again = try Launch.run(["-n", "1", "sh", "-c", "echo secret=$FABRIC_JOB_SECRET"])
        #expect(!again.output.contains(values.first ?? "-"), "a new job gets a new secret")
    }

    @Test("a failing rank ends the job within 2 s, with its status and a message naming rank, host and cause", arguments: [
        ("exit 3", Int32(3), "rank 2 on", "exited with status 3"),
        ("kill -9 $$", Int32(137), "rank 2 on", "killed by signal 9 (SIGKILL)"),
        ("kill -SEGV $$", Int32(139), "rank 2 on", "SIGSEGV"),
        ("echo garbage >&3", Int32(1), "rank 2 sent what is not PMI", "garbage"),
    ])
    func failingRank(action: String, status: Int32, naming: String, cause: String) throws {
        let marker = Launch.marker()
        let started = ContinuousClock.now
        let run = try Launch.run(["-n", "4", "sh", "-c", "if [ $PMI_RANK = 2 ]; then sleep 0.3; \(action); fi; sleep 30 # \(marker)"])
        #expect(run.status == status, "\(run.output)")
        #expect(run.output.contains(naming) && run.output.contains(cause), "\(run.output)")
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(ProcessTable.live(commandLineContaining: marker).isEmpty)
    }

    @Test("an abort ends the job with the rank's exit code")
    func abort() throws {
        let run = try Launch.run(["-n", "3", Launch.rank, "abort", "1"], environment: ["FABRIC_PMI_VERSION": "1"])
        #expect(run.status == 7, "\(run.output)")
        #expect(run.output.contains("rank 1 on") && run.output.contains("called abort with exit code 7"))
        #expect(ProcessTable.live(named: "pmi-test-rank").isEmpty)
    }

    @Test("Ctrl-C and SIGTERM reach every rank and end the job", arguments: [SIGINT, SIGTERM])
    func interrupted(signal: Int32) throws {
        let marker = Launch.marker()
        let ready = FileManager.default.temporaryDirectory.appendingPathComponent(marker)
        try FileManager.default.createDirectory(at: ready, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: ready) }
        let process = try Launch.start(["-n", "3", "sh", "-c", "trap 'echo rank $PMI_RANK got it; exit 5' INT TERM; touch \(ready.path)/$PMI_RANK; sleep 29.\(getpid()) & wait # \(marker)"])
        // Every rank has its trap in place before the signal comes.
        let deadline = ContinuousClock.now + .seconds(20)
        while (try? FileManager.default.contentsOfDirectory(atPath: ready.path).count) ?? 0 < 3 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        let started = ContinuousClock.now
        kill(process.process.processIdentifier, signal)
        let run = process.finish()
        #expect(run.status == 128 + signal, "\(run.output)")
        #expect(ContinuousClock.now - started < .seconds(2))
        for rank in 0..<3 { #expect(run.output.contains("rank \(rank) got it"), "\(run.output)") }
        #expect(ProcessTable.live(commandLineContaining: marker).isEmpty)
    }

    @Test("--timeout names the ranks that have not finished and what they wait for, then ends the job")
    func timeout() throws {
        let marker = Launch.marker()
        let started = ContinuousClock.now
        let run = try Launch.run(["--timeout", "1", "-n", "2", "sh", "-c", "if [ $PMI_RANK = 0 ]; then exit 0; fi; sleep 30 # \(marker)"])
        #expect(run.status == 124)
        #expect(run.output.contains("timeout of 1.0 seconds passed; 1 of 2 ranks not finished"), "\(run.output)")
        #expect(run.output.contains("rank 1 on"))
        #expect(run.output.contains("has not initialised PMI"))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(ProcessTable.live(commandLineContaining: marker).isEmpty)
    }

    @Test("bad command lines and programs end at once with a message and status 1, starting nothing", arguments: [
        (["-n", "0", "true"], "at least 1"),
        (["-n", "2"], "no program"),
        (["-n", "2", "/nonexistent/program"], "cannot start '/nonexistent/program'"),
        (["-n", "2", "no-such-program-anywhere"], "no such program on PATH"),
        (["--map-by", "slot", "-n", "2", "true"], "--map-by is not implemented"),
        (["-f", "/nonexistent/hosts", "-n", "1", "true"], "cannot read host file /nonexistent/hosts"),
        (["-H", "localhost:1", "-n", "2", "true"], "2 ranks asked, but the host list has 1 slot"),
        (["-x", "FABRIC_TEST_UNSET_VARIABLE", "-n", "1", "true"], "has no FABRIC_TEST_UNSET_VARIABLE"),
    ])
    func badInput(arguments: [String], naming: String) throws {
        let run = try Launch.run(arguments)
        #expect(run.status == 1)
        #expect(run.output.contains(naming), "\(run.output)")
    }

    @Test("an MPICH program runs under this mpirun (its PMI client against our server)", .enabled(if: Launch.mpichCompiler != nil, "mpicc.mpich is not installed (apt-get install mpich)"))
    func mpichProgram() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mpich-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("allreduce.c")
        try """
            #include <mpi.h>
            #include <stdio.h>
            int main(int argc, char **argv) {
                int rank, size, sum = 0, one = 1;
                MPI_Init(&argc, &argv);
                MPI_Comm_rank(MPI_COMM_WORLD, &rank);
                MPI_Comm_size(MPI_COMM_WORLD, &size);
                MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
                printf("rank %d of %d: sum %d\\n", rank, size, sum);
                MPI_Finalize();
                return 0;
            }
            """.write(to: source, atomically: true, encoding: .utf8)
        let binary = directory.appendingPathComponent("allreduce").path
        let compile = Process()
        compile.executableURL = URL(fileURLWithPath: Launch.mpichCompiler!)
        compile.arguments = [source.path, "-o", binary]
        try compile.run()
        compile.waitUntilExit()
        #expect(compile.terminationStatus == 0)
        let run = try Launch.run(["-n", "3", binary])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<3 { #expect(run.output.contains("rank \(rank) of 3: sum 3"), "\(run.output)") }
    }
}

enum Launch {
    static var directory: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    static var mpirun: String { directory.appendingPathComponent("mpirun").path }
    static var rank: String { directory.appendingPathComponent("pmi-test-rank").path }
    static let mpichCompiler: String? = ["/usr/bin/mpicc.mpich"].first { FileManager.default.isExecutableFile(atPath: $0) }

    struct Started {
        let process: Process
        let pipe: Pipe

        func finish() -> (status: Int32, output: String) {
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, output)
        }
    }

    static func start(_ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws -> Started {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let inputPipe = Pipe()
        process.standardInput = inputPipe
        try process.run()
        if let input { inputPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inputPipe.fileHandleForWriting.close()
        return Started(process: process, pipe: pipe)
    }

    static func run(_ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        try start(arguments, input: input, environment: environment).finish()
    }

    static func marker() -> String { "fabric-test-\(UInt64.random(in: 0...UInt64.max))" }
}
