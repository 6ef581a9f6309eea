import ArgumentParser
import Fabric
import Foundation
import Glibc
import Subprocess
import SystemPackage

@main
struct FabricPerf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fabric-perf",
        abstract: "Latency, bandwidth and message rate of the fabric, beside a raw-TCP reference measured in the same run.",
        discussion: """
            Always two processes. `fabric-perf` alone starts a server process on loopback and measures against it; \
            `fabric-perf server` and `fabric-perf client --host H --port P` run the two ends by hand.
            Repetitions are interleaved (fabric, raw, raw, fabric, ...) and every figure is a median, with percentiles and the spread of the repetition medians.
            """,
        subcommands: [Loopback.self, Server.self, Client.self, Registration.self, RegistrationCacheCost.self, ConnectionSetup.self, InstructionCount.self, Soak.self],
        defaultSubcommand: Loopback.self)
}

struct PlanOptions: ParsableArguments {
    @Option(help: "Tests, comma-separated: \(PerfTest.allCases.map(\.rawValue).joined(separator: ", ")), or 'all'.")
    var tests = "lat-send,lat-write,lat-read,lat-fadd,lat-cas,bw-write,bw-read,bw-send,rate-send"

    @Option(help: "Message sizes, comma-separated (1 B to 8 MiB; suffixes K, M).")
    var sizes = "8,1K,64K,1M,4M"

    @Option(name: .customLong("reps"), help: "Interleaved repetitions (at least 1).")
    var repetitions = 10

    @Option(help: "Waiting style: poll (busy-poll both ends), block (sleep on the completion queue's descriptor), or both.")
    var mode = "poll"

    @Option(help: "Scale the iterations per repetition (0.01 to 100).")
    var scale = 1.0

    @Option(
        name: .customLong("queue-pairs"),
        help: ArgumentHelp(
            "Queue pairs at once for the bandwidth and message-rate tests, comma-separated (each 1 to 64).",
            discussion: "N > 1: N queue pairs between the two processes on one completion queue per side, one thread per process, every pair with its own window, beside N raw TCP connections; the figure is the total over the pairs. Latency tests always use one queue pair."))
    var queuePairs = "1"

    @Option(
        name: .customLong("post-list"),
        help: ArgumentHelp(
            "Requests per post call in the bandwidth and message-rate tests, comma-separated (each 1 to 128).",
            discussion: "1 posts one request per call (one doorbell each, as perftest's default); N > 1 refills each window in lists of up to N (the list form of postSend: one doorbell, the frames share sendmsg calls; perftest's --post_list). The raw reference always sends each message with its own send(2). Latency tests always post one at a time."))
    var postLists = "1"

    @Flag(name: .customLong("no-raw"), help: "Skip the raw-TCP reference.")
    var noRaw = false

    @Flag(help: "Print one JSON object per measurement instead of a table.")
    var json = false

    /// ArgumentParser calls this while parsing, so that a bad option is
    /// reported with the usage of the command it was given to.
    func validate() throws { _ = try plan() }

    func plan() throws -> PerfPlan {
        let names = tests == "all" ? PerfTest.allCases.map(\.rawValue) : tests.split(separator: ",").map(String.init)
        var chosen: [PerfTest] = []
        for name in names {
            guard let test = PerfTest(rawValue: name) else {
                throw ValidationError("unknown test '\(name)'; known: \(PerfTest.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            chosen.append(test)
        }
        let sizeList = try parseSizeList(sizes, maximum: 8 << 20, maximumText: "8 MiB")
        guard repetitions >= 1 else { throw ValidationError("--reps must be at least 1") }
        guard (0.01...100).contains(scale) else { throw ValidationError("--scale must be from 0.01 to 100") }
        var pairCounts: [Int] = []
        for item in queuePairs.split(separator: ",", omittingEmptySubsequences: false) {
            guard let count = Int(item.trimmingCharacters(in: .whitespaces)), PerfPlan.queuePairRange.contains(count) else {
                throw ValidationError("--queue-pairs: '\(item)' is not a number of queue pairs from \(PerfPlan.queuePairRange.lowerBound) to \(PerfPlan.queuePairRange.upperBound)")
            }
            if !pairCounts.contains(count) { pairCounts.append(count) }
        }
        var listLengths: [Int] = []
        for item in postLists.split(separator: ",", omittingEmptySubsequences: false) {
            guard let length = Int(item.trimmingCharacters(in: .whitespaces)), PerfPlan.postListRange.contains(length) else {
                throw ValidationError("--post-list: '\(item)' is not a list length from \(PerfPlan.postListRange.lowerBound) to \(PerfPlan.postListRange.upperBound)")
            }
            if !listLengths.contains(length) { listLengths.append(length) }
        }
        let modes: [String]
        switch mode {
        case "poll": modes = ["poll"]
        case "block": modes = ["block"]
        case "both": modes = ["poll", "block"]
        default: throw ValidationError("--mode must be poll, block or both")
        }
        return PerfPlan(tests: chosen, sizes: sizeList, repetitions: repetitions, modes: modes, scale: scale, raw: !noRaw, queuePairs: pairCounts, postLists: listLengths)
    }

    var capacity: Int { (sizes.split(separator: ",").compactMap { ByteCount.parse($0) }.max() ?? 8) + 64 }
}

struct Loopback: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a server process on loopback and measure against it (the default).")
    @OptionGroup var options: PlanOptions
    @Option(help: "Loopback address to use (127.0.0.1 or ::1).")
    var host = "127.0.0.1"

    func run() throws {
        nonisolated(unsafe) let command = self
        try waitFor { try await command.measureAgainstServer() }
    }

    private func measureAgainstServer() async throws {
        let plan = try options.plan()
        // A fresh job secret for this run, shared with the server process.
        setenv(JobSecret.environmentVariable, JobSecret.generate(), 1)
        var executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        if !FileManager.default.isExecutableFile(atPath: executable) {
            executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        }
        // The server lives as long as this closure; if the client fails,
        // Subprocess ends it (SIGTERM, then SIGKILL).
        let outcome = try await Subprocess.run(
            .path(FilePath(executable)),
            arguments: ["server", "--host", host, "--port", "0", "--capacity", String(options.capacity)],
            input: .none, output: .sequence, error: .currentStandardError
        ) { execution in
            var lines = execution.standardOutput.strings().makeAsyncIterator()
            guard let first = try await lines.next() else { throw PerfError("the server process exited before it listened") }
            guard first.hasPrefix("control port "), let port = UInt16(first.dropFirst("control port ".count)) else {
                throw PerfError("the server process said '\(first)'")
            }
            try runClient(host: host, port: port, options: options, plan: plan)
            // Whatever else it prints, so that it never waits on a full pipe.
            while try await lines.next() != nil {}
        }
        guard outcome.terminationStatus.isSuccess else {
            throw PerfError("the server process ended with \(outcome.terminationStatus)")
        }
    }
}

/// Runs `operation` on the concurrency runtime and waits here for its end.
/// The tool's entry point stays synchronous: with an async one the main
/// thread parks in sigsuspend(2) for the whole run, and valgrind (callgrind
/// counts `fabric-perf count`, scripts/bench-overhead.sh) fails on that.
func waitFor(_ operation: @escaping @Sendable () async throws -> Void) throws {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var failure: Error?
    Task {
        do { try await operation() } catch { failure = error }
        done.signal()
    }
    done.wait()
    if let failure { throw failure }
}

struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve one client, then exit.")
    @Option(help: "Address to listen on.") var host = "0.0.0.0"
    @Option(help: "Control port (0 picks one and prints it).") var port: UInt16 = 18515
    @Option(help: "Bytes of each registered buffer.") var capacity = (8 << 20) + 64

    func run() throws {
        let (listener, bound) = try PlainSocket.listen(host: host, port: port)
        FileHandle.standardOutput.write(Data("control port \(bound)\n".utf8))
        let control = ControlChannel(fd: try PlainSocket.accept(listener))
        close(listener)
        let device = try Fabric.openDefaultDevice()
        // Fix the backend's concrete type here, so that the generic code is
        // specialized for it (no witness-table calls in the timed loops).
        if let tcp = device as? TCPDevice {
            try serve(device: tcp, control: control, host: host, capacity: capacity)
        } else if let verbs = device as? VerbsDevice {
            try serve(device: verbs, control: control, host: host, capacity: capacity)
        } else {
            try serve(device: device, control: control, host: host, capacity: capacity)
        }
    }
}

struct Client: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure against a running server.")
    @OptionGroup var options: PlanOptions
    @Option(help: "The server's host.") var host = "127.0.0.1"
    @Option(help: "The server's control port.") var port: UInt16 = 18515

    func run() throws {
        try runClient(host: host, port: port, options: options, plan: try options.plan())
    }
}

func runClient(host: String, port: UInt16, options: PlanOptions, plan: PerfPlan) throws {
    let control = ControlChannel(fd: try PlainSocket.connect(host: host, port: port))
    let device = try Fabric.openDefaultDevice()
    let progress: (String) -> Void = { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
    let measurements: [Measurement]
    if let tcp = device as? TCPDevice {
        measurements = try drive(device: tcp, control: control, host: host, plan: plan, capacity: options.capacity, progress: progress)
    } else if let verbs = device as? VerbsDevice {
        measurements = try drive(device: verbs, control: control, host: host, plan: plan, capacity: options.capacity, progress: progress)
    } else {
        measurements = try drive(device: device, control: control, host: host, plan: plan, capacity: options.capacity, progress: progress)
    }
    if options.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for measurement in measurements {
            print(String(decoding: try encoder.encode(measurement), as: UTF8.self))
        }
    } else {
        printTable(measurements, load: loadAverage())
    }
}

func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "unknown"
}

func printTable(_ measurements: [Measurement], load: String) {
    print("fabric-perf: medians over interleaved repetitions; load average \(load)")
    let shaped = measurements.contains { $0.link != nil }
    if let link = measurements.lazy.compactMap(\.link).first {
        print("emulated link (\(LinkShape.environmentVariable)): \(link.configured); raw TCP is not shaped")
    }
    var header = [
        "test", "size", "mode", "backend", "pairs", "list", "median", "p10", "p90", "p99", "unit", "metric", "reps", "spread%", "x raw", "alloc/op",
        "calls/msg client", "calls/msg server",
    ]
    if shaped { header.append("on the link") }
    var rows: [[String]] = [header]
    func number(_ value: Double) -> String {
        if value.isNaN { return "-" }
        return value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
    }
    // "-": not counted (only the tcp backend and the raw reference count
    // their socket calls).
    func calls(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "-" }
    for m in measurements {
        rows.append([
            m.test, formatSize(m.size), m.mode, m.backend, String(m.queuePairs), m.backend == "raw-tcp" ? "-" : String(m.postList), number(m.median), number(m.p10), number(m.p90), number(m.p99),
            m.unit, m.metric, String(m.repetitions), String(format: "%.0f", m.spreadPercent),
            m.ratioToRaw.map { String(format: "%.3f", $0) } ?? "",
            m.allocationsPerOperation.map { String(format: "%.3f", $0) } ?? "",
            calls(m.callsPerMessageClient), calls(m.callsPerMessageServer),
        ] + (shaped ? [m.link?.summary ?? ""] : []))
    }
    let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        print(zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}
