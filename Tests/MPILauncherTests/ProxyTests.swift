import Foundation
@testable import MPILauncher
import Testing

@Suite("mpirun's proxies on other hosts")
struct ProxyTests {
    @Test("every proxy message reads back as written, output bytes included")
    func roundTrip() throws {
        let messages: [ProxyMessage] = [
            .secret("0123456789abcdef0123456789abcdef"), .hello(version: 1, nonce: "n"), .job(size: 6, keyValueSpace: "kvs", processMapping: "(vector,(0,3,2))"),
            .application(index: 0, program: "/bin/prog with space", workingDirectory: "/tmp"), .application(index: 1, program: "p", workingDirectory: nil),
            .argument(application: 0, value: "-x=1; rm"), .environment(application: nil, name: "A", value: "two words"),
            .environment(application: 1, name: "B", value: ""), .rank(rank: 3, application: 1), .start, .value(key: "k", value: "v=1;2"),
            .fenceDone, .signal(15), .report, .proof("abc"), .started, .output(rank: 2, isError: true, data: [0xff, 0x00, 0x0a, 0x41]),
            .fence, .abort(rank: 1, exitCode: 9, message: "why not"), .abort(rank: 1, exitCode: nil, message: ""),
            .ended(rank: 4, end: .exited(3)), .ended(rank: 4, end: .killed(9)), .failed(rank: 0, reason: "it left"),
            .state(rank: 5, processID: 123, text: "waiting in a fence"), .problem("no such program"), .done,
            .input(data: Array("typed\n".utf8) + [0xff]), .inputEnd,
        ]
        for message in messages {
            let line = message.line
            #expect(line.hasSuffix("\n") && line.dropLast().allSatisfy { $0 != "\n" }, "\(line)")
            #expect(try ProxyMessage(parsing: Array(line.utf8.dropLast())) == message)
        }
    }

    @Test("malformed proxy messages are refused, naming what is wrong", arguments: [
        ("", "empty"), ("frobnicate", "unknown proxy message"), ("rank rank=x application=0", "not a number"),
        ("rank application=0", "has no rank"), ("value key", "not key=value"), ("value key=%zz value=1", "not escaped text"),
        ("output rank=0 stream=sideways data=", "stream"), ("ended rank=1", "has no killed"),
    ])
    func garbage(line: String, naming: String) {
        #expect { try ProxyMessage(parsing: Array(line.utf8)) } throws: { ($0 as? LaunchError)?.message.contains(naming) == true }
    }

    @Test("a proxy started by hand, without the job secret on its channel, refuses to run")
    func proxyWithoutSecret() throws {
        for input in ["hello version=1 nonce=abc\n", "secret value=short\n", ""] {
            let process = Process()
            process.executableURL = Launch.directory.appendingPathComponent("mpirun")
            process.arguments = ["--proxy"]
            let output = Pipe()
            let inputPipe = Pipe()
            process.standardOutput = output
            process.standardInput = inputPipe
            try process.run()
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
            let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 1)
            #expect(said.hasPrefix("problem text="), "\(said)")
            #expect(!said.contains("proof"), "a proxy without the secret proves nothing: \(said)")
        }
    }

    @Test("ranks on other hosts run through proxies (a remote shell that runs here), and a proxy that cannot prove the secret is refused")
    func throughRemoteShell() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Runs the command on this machine, as ssh would on the host.
        let here = directory.appendingPathComponent("here-shell").path
        try "#!/bin/sh\nshift\nexec sh -c \"$*\"\n".write(toFile: here, atomically: true, encoding: .utf8)
        // Answers with a proof it cannot have made.
        let liar = directory.appendingPathComponent("liar-shell").path
        try "#!/bin/sh\necho 'proof value=00'\nsleep 5\n".write(toFile: liar, atomically: true, encoding: .utf8)
        chmod(here, 0o755)
        chmod(liar, 0o755)
        let run = try Launch.run(["--launcher-exec", here, "-H", "localhost:1,node-a:2,node-b:1", "-n", "4", Launch.rank])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<4 { #expect(run.output.contains("rank \(rank) of 4 via PMI-2 over PMI_FD: 4 values checked"), "\(run.output)") }
        // mpirun's standard input reaches rank 0 on another host, and only it.
        let input = try Launch.run(
            ["--launcher-exec", here, "-H", "node-a:2", "-n", "2", "sh", "-c", "echo \"rank $PMI_RANK read: $(cat | tr '\\n' '|')\""],
            input: "line one\nline two\n")
        #expect(input.status == 0, "\(input.output)")
        #expect(input.output.contains("rank 0 read: line one|line two|"), "\(input.output)")
        #expect(input.output.contains("rank 1 read: \n"), "\(input.output)")
        let refused = try Launch.run(["--launcher-exec", liar, "-H", "node-a:1", "-n", "1", Launch.rank])
        #expect(refused.status == 1)
        #expect(refused.output.contains("host node-a: the proxy could not prove it knows the job secret"), "\(refused.output)")
    }
}
