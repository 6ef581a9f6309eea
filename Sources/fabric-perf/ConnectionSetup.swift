import ArgumentParser
import Dispatch
import Fabric
import FabricSupport
import Foundation
import Glibc

/// What connection set-up costs: connects started together from one
/// thread (`--in-flight`, driven by `advance` and one poll on their
/// descriptors) to a listener served by another thread, each timed from its
/// start to its queue pair. Rounds of in-flight connects alternate with
/// rounds of single connects, so both are measured in one run.
struct ConnectionSetup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup",
        abstract: "Connection set-up time (listen, connect, handshake, accept) on the chosen backend, with many connects in flight from one thread and alone.")

    @Option(help: "Connects started together from one thread.")
    var inFlight = 64

    @Option(help: "Rounds of each kind (in flight, alone), interleaved.")
    var rounds = 10

    @Option(help: "The address to listen and connect on.")
    var host = "127.0.0.1"

    @Option(help: "Connections opened and held at the end, for what each costs in memory and descriptors (0: none).")
    var hold = 256

    func run() throws {
        guard inFlight >= 1, rounds >= 1 else { throw ValidationError("--in-flight and --rounds must be at least 1") }
        let device = try Fabric.openDefaultDevice()
        try measure(device)
    }

    private func measure<D: FabricDevice>(_ device: D) throws {
        let server = device
        let domain = try server.allocateProtectionDomain()
        let queue = try server.createCompletionQueue(capacity: 4096)
        let listener = try server.listen(on: Endpoint(host: host, port: 0), backlog: 4096)
        let setup = QueuePairSetup<D>(protectionDomain: domain, sendCompletionQueue: queue, receiveCompletionQueue: queue)
        let client = try Fabric.openDefaultDevice() as! D
        let clientDomain = try client.allocateProtectionDomain()
        let clientQueue = try client.createCompletionQueue(capacity: 4096)
        let clientSetup = QueuePairSetup<D>(protectionDomain: clientDomain, sendCompletionQueue: clientQueue, receiveCompletionQueue: clientQueue)

        // The server side accepts whatever comes, on a thread of its own.
        let accepted = Accepted<D.QueuePair>()
        nonisolated(unsafe) let serving = listener
        let stopped = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var running = true
        Thread.detachNewThread {
            while running {
                if let request = try? serving.next(timeout: .milliseconds(50)), let qp = try? request.accept(setup, privateData: [], prepare: { _ in }) {
                    accepted.withLock { $0.append(qp) }
                }
            }
            stopped.signal()
        }
        var together = LatencyHistogram()
        var alone = LatencyHistogram()
        var kept: [D.QueuePair] = []
        for _ in 0..<rounds {
            try round(client, clientSetup, listener.endpoint, count: inFlight, into: &together, keep: &kept)
            for _ in 0..<inFlight { try round(client, clientSetup, listener.endpoint, count: 1, into: &alone, keep: &kept) }
            kept.removeAll()
            accepted.withLock { $0.removeAll() }
        }
        let cost = try holdConnections(client, clientSetup, listener.endpoint, accepted: { accepted.withLock { $0.count } })
        running = false
        stopped.wait()
        print("connection set-up on \(device.backendName), \(host): \(rounds) rounds each, interleaved; load average \(loadAverage())")
        print("  \(inFlight) connects in flight from one thread: p50 \(format(together.median)) us, p99 \(format(together.percentile(99))) us, max \(format(together.maximum)) us (\(together.count) connects)")
        print("  one connect at a time:                p50 \(format(alone.median)) us, p99 \(format(alone.percentile(99))) us, max \(format(alone.maximum)) us (\(alone.count) connects)")
        if let cost {
            print("  \(hold) connections held (both ends in this process): resident memory +\(cost.resident / 1024) KiB, "
                + "\(cost.descriptors) descriptors: per connection and end \(cost.resident / 1024 / (2 * hold)) KiB and "
                + String(format: "%.2f", Double(cost.descriptors) / Double(2 * hold)) + " descriptors")
        }
    }

    /// Opens `hold` connections beside the rest and keeps them: the growth
    /// of resident memory and of open descriptors, both ends together.
    private func holdConnections<D: FabricDevice>(
        _ client: D, _ setup: QueuePairSetup<D>, _ endpoint: Endpoint, accepted: () -> Int
    ) throws -> (resident: Int, descriptors: Int)? {
        guard hold > 0 else { return nil }
        let before = try ResidentMemory.bytes()
        let descriptorsBefore = openDescriptors()
        let acceptedBefore = accepted()
        var kept: [D.QueuePair] = []
        var left = hold
        // These connects are held, not timed.
        var untimed = LatencyHistogram()
        while left > 0 {
            let batch = min(left, inFlight)
            try round(client, setup, endpoint, count: batch, into: &untimed, keep: &kept)
            left -= batch
        }
        // The server thread accepts the last ones a moment later.
        let deadline = ContinuousClock.now + .seconds(10)
        while accepted() - acceptedBefore < hold && ContinuousClock.now < deadline { usleep(1000) }
        let cost = (try ResidentMemory.bytes() - before, openDescriptors() - descriptorsBefore)
        withExtendedLifetime(kept) {}
        return cost
    }

    private func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
    }

    /// Starts `count` connects at once and drives them to the end; records
    /// each one's time.
    private func round<D: FabricDevice>(
        _ client: D, _ setup: QueuePairSetup<D>, _ endpoint: Endpoint, count: Int,
        into timings: inout LatencyHistogram, keep: inout [D.QueuePair]
    ) throws {
        let clock = ContinuousClock()
        var starts: [ContinuousClock.Instant] = []
        var attempts: [D.ConnectAttempt?] = []
        for _ in 0..<count {
            starts.append(clock.now)
            attempts.append(try client.startConnect(to: endpoint, setup, options: ConnectOptions(timeout: .seconds(30)), prepare: { _ in }))
        }
        var left = count
        var descriptors = [pollfd](repeating: pollfd(), count: count)
        while left > 0 {
            for index in 0..<count {
                guard let attempt = attempts[index] else { continue }
                if let (qp, _) = try attempt.advance() {
                    timings.record(clock.now - starts[index])
                    keep.append(qp)
                    attempts[index] = nil
                    left -= 1
                }
            }
            guard left > 0 else { break }
            // Sleep until one of them can move.
            var waiting = 0
            for attempt in attempts {
                guard let attempt else { continue }
                descriptors[waiting] = pollfd(fd: attempt.fileDescriptor, events: attempt.waitsToWrite ? Int16(POLLOUT) : Int16(POLLIN), revents: 0)
                waiting += 1
            }
            _ = Glibc.poll(&descriptors, nfds_t(waiting), 100)
        }
    }

    private func format(_ value: Double) -> String { String(format: "%.0f", value) }
}

/// The queue pairs the server thread accepted, shared with the main thread.
private final class Accepted<QueuePair>: @unchecked Sendable {  // `list` only under `lock`
    private let lock = NSLock()
    private var list: [QueuePair] = []

    func withLock<R>(_ body: (inout [QueuePair]) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&list)
    }
}
