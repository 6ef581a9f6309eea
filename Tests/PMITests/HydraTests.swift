import FabricTestSupport
import Foundation
import Testing

/// The clients against a real launcher: MPICH's `mpiexec.hydra` (Debian's
/// `mpich`), which serves PMI-1 and PMI-2 on `PMI_FD` and PMI-1 on
/// `PMI_PORT`. Each rank is pmi-test-rank (Sources/pmi-test-rank).
@Suite("PMI under MPICH's Hydra", .serialized, .enabled(if: Hydra.path != nil, "mpiexec.hydra is not installed (apt-get install mpich)"))
struct HydraTests {
    @Test("three ranks exchange values through PMI-1 and PMI-2 on PMI_FD and PMI-1 on PMI_PORT", arguments: [
        (["FABRIC_PMI_VERSION": "1"], [String](), "PMI-1 over PMI_FD"),
        (["FABRIC_PMI_VERSION": "2"], [String](), "PMI-2 over PMI_FD"),
        ([:], ["-pmi-port"], "PMI-1 over PMI_PORT"),
    ])
    func exchange(environment: [String: String], options: [String], protocolName: String) throws {
        let run = try Hydra.run(options + ["-n", "3", Hydra.rank, "missing"], environment: environment)
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<3 {
            #expect(run.output.contains("rank \(rank) of 3 via \(protocolName): 3 values checked"), "\(run.output)")
            #expect(run.output.contains("rank \(rank): missing key refused: no rank put the key 'nobody-put-this'"), "\(run.output)")
        }
    }

    @Test("a rank's abort ends the whole job with a failing status, quickly, leaving no rank behind", arguments: ["1", "2"])
    func abort(version: String) throws {
        let started = ContinuousClock.now
        let run = try Hydra.run(["-n", "3", Hydra.rank, "abort", "1"], environment: ["FABRIC_PMI_VERSION": version])
        #expect(run.status != 0)
        // pmi-test-rank sleeps 30 s after its abort: an ignored abort shows.
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(!run.output.contains("still running"))
        let left = ProcessTable.live(named: "pmi-test-rank")
        #expect(left.isEmpty, "ranks left running: \(left)")
    }
}

enum Hydra {
    static let path: String? = ["/usr/bin/mpiexec.hydra", "/usr/local/bin/mpiexec.hydra"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// pmi-test-rank sits beside the test bundle in the build directory.
    static var rank: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pmi-test-rank").path
    }

    static func run(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path!)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
