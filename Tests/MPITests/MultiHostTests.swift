import FabricTestSupport
import Foundation
import Testing

/// Jobs across three hosts made of network namespaces, each with its own
/// sshd (scripts/netns-hosts.sh, run by scripts/test-multihost.sh as
/// root): mpirun runs in the first and reaches the others through ssh
/// from a host file, as the Kubernetes MPI operator's launcher does.
@Suite("MPI jobs across hosts", .serialized, .enabled(if: MultiHost.state != nil, "set up by scripts/test-multihost.sh (root: network namespaces with sshd); FABRIC_TEST_HOSTS_STATE names its folder"))
struct MultiHostTests {
    @Test("six ranks on three hosts from a host file: each rank reachable at its own host's address, two connections each")
    func ring() throws {
        let run = try MultiHost.mpirun(["-f", MultiHost.hostFile, "-n", "6", Job.check, "ring"])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<6 {
            let host = "10.78.0.\(rank / 2 + 1)"
            #expect(run.output.contains("rank \(rank) of 6: ring ok, 2 connections, backend tcp, via PMI-2 over PMI_FD"), "\(run.output)")
            #expect(run.output.contains("reachable at \(host)\n") && run.output.contains("rank \(rank) of 6"), "rank \(rank) should be on \(host): \(run.output)")
        }
        let lines = run.output.split(separator: "\n").filter { $0.contains("ring ok") }
        for line in lines {
            let rank = Int(line.split(separator: " ")[1])!
            #expect(line.hasSuffix("reachable at 10.78.0.\(rank / 2 + 1)"), "\(line)")
        }
        #expect(ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }

    @Test("the host file and remote shell from the variables the Kubernetes MPI operator sets")
    func operatorVariables() throws {
        let run = try MultiHost.mpirun(["-n", "3", "-ppn", "1", Job.check, "all"], flags: false, environment: [
            "OMPI_MCA_orte_default_hostfile": MultiHost.hostFile, "OMPI_MCA_plm_rsh_agent": MultiHost.sshCommand,
        ])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<3 { #expect(run.output.contains("rank \(rank) of 3: all ok, 2 connections"), "\(run.output)") }
        for host in 1...3 { #expect(run.output.contains("reachable at 10.78.0.\(host)\n"), "\(run.output)") }
    }

    @Test("a rank killed on another host ends the whole job within 2 s, naming rank, host and signal; nothing is left on any host")
    func remoteRankKilled() throws {
        let marker = "fabric-test-\(UInt64.random(in: 0...UInt64.max))"
        let started = ContinuousClock.now
        let run = try MultiHost.mpirun(["-f", MultiHost.hostFile, "-n", "6", "sh", "-c", "if [ $PMI_RANK = 3 ]; then sleep 0.5; kill -9 $$; fi; sleep 30 # \(marker)"])
        #expect(run.status == 137, "\(run.output)")
        #expect(run.output.contains("rank 3 on 10.78.0.2 was killed by signal 9 (SIGKILL)"), "\(run.output)")
        #expect(ContinuousClock.now - started < .seconds(6))
        #expect(ProcessTable.live(commandLineContaining: marker).isEmpty)
    }

    @Test("Ctrl-C reaches the ranks on every host")
    func interrupted() throws {
        let marker = "fabric-test-\(UInt64.random(in: 0...UInt64.max))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", "fabric-h1", Job.mpirun, "--launcher-exec", MultiHost.sshCommand, "-f", MultiHost.hostFile, "-n", "6",
                             "sh", "-c", "trap 'echo rank $PMI_RANK got it; exit 5' INT; echo ready; sleep 28.\(getpid()) & wait # \(marker)"]
        var environment = ProcessInfo.processInfo.environment
        environment["FABRIC_JOB_SECRET"] = nil
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // Every rank (three hosts, two through ssh) is up with its trap set.
        var seen = ""
        let deadline = ContinuousClock.now + .seconds(30)
        while seen.components(separatedBy: "ready").count < 7 && ContinuousClock.now < deadline {
            seen += String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self)
        }
        kill(process.processIdentifier, SIGINT)
        seen += String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 128 + SIGINT, "\(seen)")
        for rank in 0..<6 { #expect(seen.contains("rank \(rank) got it"), "\(seen)") }
        #expect(ProcessTable.live(commandLineContaining: marker).isEmpty)
    }

    @Test("an abort on another host ends the job with its exit code")
    func remoteAbort() throws {
        let run = try MultiHost.mpirun(["-f", MultiHost.hostFile, "-n", "6", Job.check, "abort", "5"])
        #expect(run.status == 9, "\(run.output)")
        #expect(run.output.contains("rank 5 on 10.78.0.3 called abort with exit code 9"), "\(run.output)")
        #expect(ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }

    @Test("an unreachable host, or a remote shell that cannot start, ends the job with a message naming it", arguments: [
        (["-H", "10.78.0.1:1,10.78.0.9:1", "-n", "2"], MultiHost.sshCommand, "host 10.78.0.9"),
        (["-H", "10.78.0.1:1,10.78.0.2:1", "-n", "2"], "/nonexistent/ssh", "cannot start the remote shell '/nonexistent/ssh'"),
        (["-H", "10.78.0.1:1,10.78.0.2:1", "-n", "2"], "false", "host 10.78.0.2: the remote shell (false) exited with status 1"),
    ])
    func unreachable(hosts: [String], shell: String, naming: String) throws {
        let started = ContinuousClock.now
        let run = try MultiHost.mpirun(["--launcher-exec", shell] + hosts + [Job.check, "ring"], flags: false)
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains(naming), "\(run.output)")
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(ProcessTable.live(named: "mpi-runtime-check").isEmpty)
    }
}

enum MultiHost {
    static let state = ProcessInfo.processInfo.environment["FABRIC_TEST_HOSTS_STATE"]
    static var hostFile: String { state! + "/hostfile" }
    static var sshCommand: String {
        (try? String(contentsOfFile: state! + "/ssh-command", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "ssh"
    }

    /// mpirun in the first host's namespace.
    static func mpirun(_ arguments: [String], flags: Bool = true, environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let shell = flags ? ["--launcher-exec", sshCommand] : []
        return try Job.run("/usr/sbin/ip", ["netns", "exec", "fabric-h1", Job.mpirun] + shell + arguments, environment: environment)
    }
}
