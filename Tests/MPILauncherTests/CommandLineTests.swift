import MPILauncher
import Testing

@Suite("mpirun's command line")
struct CommandLineTests {
    static func parse(_ words: [String], environment: [String: String] = [:], files: [String: String] = [:]) throws(LaunchError) -> LaunchRequest {
        let outcome = try LaunchCommandLine.parse(words, environment: environment) { (path: String) throws(LaunchError) -> String in
            guard let contents = files[path] else { throw LaunchError("cannot read \(path)") }
            return contents
        }
        guard case .run(let request) = outcome else { throw LaunchError("not a run: \(outcome)") }
        return request
    }

    @Test("Open MPI's and MPICH's spellings mean the same")
    func spellings() throws {
        for words in [
            ["-n", "4", "./a.out", "-n", "x"], ["-np", "4", "./a.out", "-n", "x"], ["--np=4", "./a.out", "-n", "x"],
        ] {
            let request = try Self.parse(words)
            #expect(request.applications == [.init(count: 4, program: "./a.out", arguments: ["-n", "x"])])
        }
        let request = try Self.parse([
            "-H", "a:2,b:2", "-x", "HOME", "-x", "A=1", "-genv", "B", "two words", "-wdir", "/tmp", "--tag-output",
            "--timeout", "2.5", "-ppn", "1", "--oversubscribe", "--launcher-exec", "ssh -p 2222", "-n", "2", "prog",
        ])
        #expect(request.hosts == .commandLine([HostSlots(host: "a", slots: 2), HostSlots(host: "b", slots: 2)]))
        #expect(request.environment == [.copy(name: "HOME"), .set(name: "A", value: "1"), .set(name: "B", value: "two words")])
        #expect(request.workingDirectory == "/tmp")
        #expect(request.tagOutput && request.oversubscribe)
        #expect(request.timeout == .milliseconds(2500))
        #expect(request.ranksPerHost == 1)
        #expect(request.remoteShell == ["ssh", "-p", "2222"])
    }

    @Test("MPMD: programs separated by ':' each with its own -n, -env and arguments")
    func mpmd() throws {
        let request = try Self.parse(["-n", "1", "server", "--port", "1", ":", "-n", "3", "-env", "ROLE", "worker", "client", "-v"])
        #expect(request.applications == [
            .init(count: 1, program: "server", arguments: ["--port", "1"]),
            .init(count: 3, program: "client", arguments: ["-v"], environment: [.set(name: "ROLE", value: "worker")]),
        ])
    }

    @Test("host files in both launchers' forms, and the variables the Kubernetes MPI operator sets")
    func hostFiles() throws {
        let file = """
            # workers
            node-a:2
            node-b slots=3 max_slots=4   # Open MPI's form
            node-c
            node-a:1
            """
        let request = try Self.parse(["-f", "hosts", "-n", "2", "p"], files: ["hosts": file])
        #expect(request.hosts == .file(path: "hosts", [HostSlots(host: "node-a", slots: 3), HostSlots(host: "node-b", slots: 3), HostSlots(host: "node-c", slots: 1)]))
        for variable in LaunchCommandLine.hostFileVariables {
            let fromEnvironment = try Self.parse(["p"], environment: [variable: "/etc/mpi/hostfile"], files: ["/etc/mpi/hostfile": "w-0 slots=1\nw-1 slots=1\n"])
            #expect(fromEnvironment.hosts == .file(path: "/etc/mpi/hostfile", [HostSlots(host: "w-0", slots: 1), HostSlots(host: "w-1", slots: 1)]))
        }
        let environmentShell = try Self.parse(["-n", "1", "p"], environment: ["OMPI_MCA_plm_rsh_agent": "kubexec.sh"])
        #expect(environmentShell.remoteShell == ["kubexec.sh"])
    }

    @Test("bad command lines are refused, naming what is wrong", arguments: [
        (["-n", "0", "p"], "at least 1"),
        (["-n", "x", "p"], "'x'"),
        (["-n"], "needs a value"),
        (["-n", "2"], "no program"),
        ([], "no program"),
        (["-n", "1", "p", ":"], "no program after ':'"),
        (["--map-by", "core", "-n", "2", "p"], "--map-by is not implemented"),
        (["--bind-to", "none", "-n", "2", "p"], "--bind-to is not implemented"),
        (["--mca", "btl", "tcp", "p"], "--mca is not implemented"),
        (["--frobnicate", "p"], "unknown option '--frobnicate'"),
        (["-x", "1BAD", "p"], "not an environment variable name"),
        (["-genv", "A"], "needs 2 values"),
        (["--timeout", "-1", "p"], "above 0"),
        (["-H", "a:0", "p"], "slots of at least 1"),
        (["-H", "a,,b", "p"], "empty host name"),
        (["-H", "a", "-f", "x", "p"], "already given"),
        (["-f", "missing", "p"], "cannot read missing"),
        (["-f", "bad", "p"], "host file bad, line 2"),
        (["-f", "bad2", "p"], "not slots=N"),
        (["-f", "bad3", "p"], "more than max_slots"),
        (["-f", "empty", "p"], "names no host"),
        (["-n", "1", "-n", "2", "p"], "given twice"),
    ])
    func refused(words: [String], naming: String) {
        let files = ["bad": "ok:1\nnode:zero\n", "bad2": "node slots=\n", "bad3": "node slots=4 max_slots=2\n", "empty": "# nothing\n\n"]
        #expect {
            try Self.parse(words, files: files)
        } throws: { error in
            (error as? LaunchError)?.message.contains(naming) == true
        }
    }

    @Test("--help and --version are answered, not run")
    func help() throws {
        #expect(try LaunchCommandLine.parse(["--help"], environment: [:]) { (_: String) throws(LaunchError) in "" } == .help)
        #expect(try LaunchCommandLine.parse(["-V"], environment: [:]) { (_: String) throws(LaunchError) in "" } == .version)
    }
}

@Suite("placing ranks on hosts")
struct JobPlanTests {
    static func plan(_ words: [String], files: [String: String] = [:]) throws(LaunchError) -> JobPlan {
        try JobPlan.make(CommandLineTests.parse(words, files: files), localHostName: "here")
    }

    @Test("no host list: every rank here, as many as asked")
    func local() throws {
        let plan = try Self.plan(["-n", "8", "p"])
        #expect(plan.hosts == ["here"])
        #expect(plan.ranks.map(\.host) == Array(repeating: 0, count: 8))
        #expect(plan.processMapping == "(vector,(0,1,8))")
    }

    @Test("slots fill hosts in order; -ppn places that many per host; the mapping says who shares a host")
    func slots() throws {
        let bySlots = try Self.plan(["-H", "a:2,b:2,c:2", "-n", "5", "p"])
        #expect(bySlots.ranks.map(\.host) == [0, 0, 1, 1, 2])
        #expect(bySlots.processMapping == "(vector,(0,2,2),(2,1,1))")
        let perHost = try Self.plan(["-H", "a:4,b:4,c:4", "-ppn", "2", "-n", "6", "p"])
        #expect(perHost.ranks.map(\.host) == [0, 0, 1, 1, 2, 2])
        #expect(perHost.processMapping == "(vector,(0,3,2))")
        let fromSlots = try Self.plan(["-H", "a:2,b:1", "p"])
        #expect(fromSlots.size == 3)
        let mpmd = try Self.plan(["-H", "a:2,b:2", "-n", "1", "x", ":", "-n", "3", "y"])
        #expect(mpmd.ranks.map(\.application) == [0, 1, 1, 1])
    }

    @Test("more ranks than slots is refused unless --oversubscribe, naming the slots")
    func oversubscribe() throws {
        #expect {
            try Self.plan(["-H", "a:1,b:2", "-n", "4", "p"])
        } throws: { ($0 as? LaunchError)?.message.contains("4 ranks asked, but the host list has 3 slots (a:1, b:2)") == true }
        let over = try Self.plan(["-H", "a:1,b:2", "--oversubscribe", "-n", "5", "p"])
        #expect(over.ranks.map(\.host) == [0, 0, 1, 1, 1])
        #expect {
            try Self.plan(["p"])
        } throws: { ($0 as? LaunchError)?.message.contains("give -n") == true }
    }
}
