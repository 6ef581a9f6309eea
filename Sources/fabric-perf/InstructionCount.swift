import ArgumentParser
import Fabric
import Foundation
import Glibc

/// A fixed amount of work for an instruction counter: two tcp devices in
/// one process, both ends driven by the main thread, a set number of 8 B
/// send/recv round trips and of 1 MiB RDMA WRITEs. It prints no timings:
/// run it under `valgrind --tool=callgrind --separate-threads=yes` and
/// compare the main thread's instructions between builds
/// (scripts/bench-overhead.sh). Before each poll it sleeps a little, so
/// that the kernel has delivered what was sent: a poll that finds nothing
/// costs instructions, and how many such polls happen depends on timing,
/// not on the code being measured.
struct InstructionCount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "count",
        abstract: "Run a fixed number of tcp operations in one thread, for counting instructions under callgrind.")

    @Option(help: "send/recv round trips (of --size bytes).")
    var roundTrips = 2000

    @Option(help: "Bytes per send/recv message: up to 64 inline from a small region, each signalled (the default, 8); larger ones from the 1 MiB region, not inline, every 64th signalled, as fabric-perf's lat-send sends them.")
    var size = 8

    @Option(help: "1 MiB RDMA WRITEs.")
    var writes = 50

    @Option(help: "Microseconds to sleep before each poll.")
    var settle: UInt32 = 200

    @Option(help: "Queue pairs attached to each side's completion queues; the first carries the traffic, the others are connected and idle.")
    var queuePairs = 1

    @Option(help: "Polls of an empty receive queue (nothing in flight), after the rest: what a busy-polling receiver pays per look.")
    var emptyPolls = 0

    func run() throws {
        guard roundTrips >= 0, writes >= 0 else { throw ValidationError("counts must not be negative") }
        guard size >= 1, size <= CountSide.largeSize / 2 else { throw ValidationError("--size must be 1 B to 512 KiB") }
        guard queuePairs >= 1 else { throw ValidationError("--queue-pairs must be at least 1") }
        let secret = Array("instruction-count-secret-0123456789".utf8)
        let client = try CountSide(TCPDevice(secret: secret), settle: settle, size: size)
        let server = try CountSide(TCPDevice(secret: secret), settle: settle, size: size)
        try connect(client, server)
        // Idle company on the same completion queues.
        let idle = try (1..<queuePairs).map { _ in
            try connectLoopbackPair(client: client.device, client.setup, server: server.device, server.setup, timeout: .seconds(10))
        }
        try pingPong(client, server)
        try writeStream(client, server)
        try pollEmpty(client)
        print("count: \(roundTrips) round trips of \(size) B, \(writes) WRITEs of 1 MiB, \(emptyPolls) empty polls, \(queuePairs) queue pairs")
        withExtendedLifetime(idle) {}
    }

    private func connect(_ client: CountSide, _ server: CountSide) throws {
        nonisolated(unsafe) let serverSide = server
        (client.queuePair, server.queuePair) = try connectLoopbackPair(
            client: client.device, client.setup, prepareClient: { (qp) throws(FabricError) in try client.postReceives(qp) },
            server: server.device, server.setup, prepareServer: { (qp) throws(FabricError) in try serverSide.postReceives(qp) },
            timeout: .seconds(10))
    }

    /// Each side sends 8 B inline and waits for the other's message.
    private func pingPong(_ client: CountSide, _ server: CountSide) throws {
        for _ in 0..<roundTrips {
            try client.send()
            try server.awaitReceive(driving: client)
            try server.send()
            try client.awaitReceive(driving: server)
        }
    }

    private func pollEmpty(_ side: CountSide) throws {
        guard emptyPolls > 0 else { return }
        usleep(settle)
        for _ in 0..<emptyPolls {
            if let completion = side.receiveCQ.poll() { throw PerfError("nothing was in flight, yet: \(completion)") }
        }
    }

    /// The client WRITEs 1 MiB into the server's region; the server's side
    /// is driven by polling its completion queue, as a busy target would.
    private func writeStream(_ client: CountSide, _ server: CountSide) throws {
        for _ in 0..<writes {
            _ = try client.queuePair.postSend(SendWorkRequest(
                id: 2, operation: .write(server.large.remote()), local: .single(client.large.element()), flags: [.signaled]))
            let deadline = ContinuousClock().now + .seconds(60)
            while true {
                usleep(settle)
                if let completion = client.sendCQ.poll() {
                    guard completion.status == .success else { throw PerfError("WRITE failed: \(completion)") }
                    break
                }
                if let completion = server.receiveCQ.poll() { throw PerfError("unexpected at the target: \(completion)") }
                guard ContinuousClock().now < deadline else { throw PerfError("a WRITE did not complete within 60 s") }
            }
        }
    }
}

/// One end of the instruction count.
private final class CountSide {
    let device: TCPDevice
    let domain: TCPProtectionDomain
    let sendCQ: TCPCompletionQueue
    let receiveCQ: TCPCompletionQueue
    let small: TCPMemoryRegion
    let large: TCPMemoryRegion
    let memory: UnsafeMutableRawPointer
    var queuePair: TCPQueuePair!
    let settle: UInt32
    /// Bytes per message, and how many sends were posted (large messages
    /// signal every 64th, as lat-send does).
    let size: Int
    var sent = 0
    static let largeSize = 1 << 20

    init(_ device: TCPDevice, settle: UInt32, size: Int) throws {
        self.device = device
        self.settle = settle
        self.size = size
        domain = try device.allocateProtectionDomain()
        sendCQ = try device.createCompletionQueue(capacity: 1024)
        receiveCQ = try device.createCompletionQueue(capacity: 1024)
        memory = UnsafeMutableRawPointer.allocate(byteCount: 64 + Self.largeSize, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 1, count: 64 + Self.largeSize)
        small = try device.registerMemory(memory, length: 64, access: [.localWrite], in: domain)
        large = try device.registerMemory(memory + 64, length: Self.largeSize, access: .all, in: domain)
    }

    deinit { memory.deallocate() }

    var setup: QueuePairSetup<TCPDevice> {
        QueuePairSetup(protectionDomain: domain, sendCompletionQueue: sendCQ, receiveCompletionQueue: receiveCQ)
    }

    var isSmall: Bool { size <= 64 }

    /// Small messages land in the small region, large ones at the start of
    /// the large region (they are sent from its second half).
    var receive: ReceiveWorkRequest {
        get throws(FabricError) {
            ReceiveWorkRequest(id: 1, local: .single(isSmall ? try small.element(length: size) : try large.element(length: size)))
        }
    }

    func postReceives(_ qp: TCPQueuePair) throws(FabricError) {
        for _ in 0..<16 { _ = try qp.postReceive(receive) }
    }

    func send() throws {
        if isSmall {
            _ = try queuePair.postSend(SendWorkRequest(id: 3, operation: .send, local: .single(small.element(length: size)), flags: [.inline, .signaled]))
        } else {
            sent += 1
            let flags: SendFlags = sent % 64 == 0 ? [.signaled] : []
            _ = try queuePair.postSend(SendWorkRequest(id: 3, operation: .send, local: .single(large.element(offset: Self.largeSize / 2, length: size)), flags: flags))
        }
    }

    /// Polls until a message arrives, keeping the sender's queue pair going
    /// too (its send completion, its acknowledgements).
    func awaitReceive(driving other: CountSide) throws {
        let deadline = ContinuousClock().now + .seconds(60)
        while true {
            usleep(settle)
            if let completion = receiveCQ.poll() {
                guard completion.status == .success else { throw PerfError("receive failed: \(completion)") }
                _ = try queuePair.postReceive(receive)
                break
            }
            if let completion = other.sendCQ.poll(), completion.status != .success { throw PerfError("send failed: \(completion)") }
            guard ContinuousClock().now < deadline else { throw PerfError("a message did not arrive within 60 s") }
        }
        while let completion = sendCQ.poll() {
            guard completion.status == .success else { throw PerfError("send failed: \(completion)") }
        }
    }
}
