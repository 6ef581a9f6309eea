import Fabric
import FabricTestSupport
import Foundation
import Testing

/// The README's API example is Sources/fabric-example: the README quotes
/// the file, and this suite checks the quote and runs both sides.
@Suite("the README's example")
struct ExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The fenced block that follows `<!-- example: PATH -->` in the README.
    static func quotedBlock(_ path: String, in readme: String) -> String? {
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false)
        guard let marker = lines.firstIndex(where: { $0 == "<!-- example: \(path) -->" }),
              marker + 1 < lines.count, lines[marker + 1] == "```swift",
              let end = lines[(marker + 2)...].firstIndex(of: "```")
        else { return nil }
        return lines[(marker + 2)..<end].map { $0 + "\n" }.joined()
    }

    @Test("every example the README quotes is its file, verbatim; both files of fabric-example are quoted")
    func readmeQuotesTheExample() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let marked = readme.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("<!-- example: "), line.hasSuffix(" -->") else { return nil }
            return String(line.dropFirst("<!-- example: ".count).dropLast(" -->".count))
        }
        #expect(Set(marked) == ["Sources/fabric-example/main.swift", "Sources/fabric-example/ConnectingMany.swift"], "\(marked)")
        for path in marked {
            let source = try String(contentsOf: Self.root.appendingPathComponent(path), encoding: .utf8)
            guard let quoted = Self.quotedBlock(path, in: readme) else {
                Issue.record("README.md's mark for \(path) is not followed by a ```swift block")
                continue
            }
            guard quoted != source else { continue }
            let quotedLines = quoted.split(separator: "\n", omittingEmptySubsequences: false)
            let sourceLines = source.split(separator: "\n", omittingEmptySubsequences: false)
            let first = (0..<min(quotedLines.count, sourceLines.count)).first { quotedLines[$0] != sourceLines[$0] } ?? min(quotedLines.count, sourceLines.count)
            func line(_ lines: [Substring]) -> String { first < lines.count ? String(lines[first]) : "(the end)" }
            Issue.record("README.md's quote of \(path) differs at line \(first + 1): '\(line(quotedLines))', the file has '\(line(sourceLines))'")
        }
    }

    /// A run of the example, with what it printed.
    struct Run {
        let process = Process()
        let output = Pipe()
        let errors = Pipe()

        init(_ arguments: [String], secret: [UInt8] = testSecret) throws {
            process.executableURL = URL(fileURLWithPath: PeerProcesses.executable(named: "fabric-example"))
            process.arguments = arguments
            var environment = ProcessInfo.processInfo.environment
            environment["FABRIC_BACKEND"] = "tcp"
            environment["FABRIC_JOB_SECRET"] = String(decoding: secret, as: UTF8.self)
            process.environment = environment
            process.standardOutput = output
            process.standardError = errors
            try process.run()
        }

        /// The first line printed (nil if the process ended first).
        func firstLine() -> String? {
            var bytes: [UInt8] = []
            while true {
                let data = output.fileHandleForReading.readData(ofLength: 1)
                guard let byte = data.first else { return nil }
                if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
                bytes.append(byte)
            }
        }

        /// Waits for the end; returns the exit status, the rest of its output and its errors.
        func finish() -> (status: Int32, output: String, errors: String) {
            let out = output.fileHandleForReading.readDataToEndOfFile()
            let err = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        }
    }

    @Test("both sides on loopback: SEND, WRITE, READ, the server sees the client go; a client without the secret is refused first", .timeLimit(.minutes(2)))
    func endToEnd() throws {
        let server = try Run(["server", "127.0.0.1"])
        defer { if server.process.isRunning { server.process.terminate() } }
        let line = try #require(server.firstLine(), "the server printed no address: \(server.finish())")
        #expect(line.hasPrefix("address fabric1/tcp/"), "\(line)")
        let address = String(line.dropFirst("address ".count))

        // The listener refuses a client without the job secret during the
        // handshake; the application never sees it, and keeps waiting.
        let stranger = try Run(["client", address], secret: Array("not-the-job-secret-0123456789".utf8)).finish()
        #expect(stranger.status == 1 && stranger.errors.contains("job secret"), "\(stranger)")

        let client = try Run(["client", address]).finish()
        #expect(client.status == 0, "client: \(client)")
        for expected in [
            "connected; the server's region has 4096 bytes",
            "completion: request 1, send, 21 bytes, success",
            "completion: request 2, write, 21 bytes, success",
            "completion: request 3, read, 21 bytes, success",
            "read back: written by the client",
            "completion: request 4, send, 0 bytes, success",
            "disconnected",
        ] {
            #expect(client.output.contains(expected + "\n"), "the client did not print '\(expected)': \(client.output)")
        }

        let served = server.finish()
        #expect(served.status == 0, "server: \(served)")
        for expected in [
            "accepted a connection from 127.0.0.1:",
            "received 21 bytes in receive 0: hello from the client\n",
            "the client wrote 21 bytes into the region: written by the client\n",
            "the client went away: receive 2 flushed; the queue pair is in error\n",
        ] {
            #expect(served.output.contains(expected), "the server did not print '\(expected)': \(served.output)")
        }
    }
}
