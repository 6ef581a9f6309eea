import ArgumentParser
import Fabric
import FabricSupport
import Foundation
import Glibc

/// A bounded stress run: random operations (SENDs, WRITEs read back,
/// fetch-and-adds), random sizes, several connections that are closed and
/// opened again now and then, every byte checked. It fails on any data
/// error, any failed completion, any operation that does not complete in
/// 10 s, and memory that keeps growing.
struct Soak: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stress the chosen backend (FABRIC_BACKEND) with random checked operations for a bounded time.")

    @Option(help: "How long to run, in seconds.")
    var seconds = 60

    @Option(help: "Connections open at once.")
    var connections = 4

    @Option(help: "Largest message, in bytes (at most 256 KiB).")
    var maxSize = 256 * 1024

    @Option(help: "Seed of the random choices (default: random).")
    var seed: UInt64?

    @Option(help: "Memory growth (MiB of resident set after the first tenth of the run) that counts as a leak.")
    var leakLimit = 32

    func run() throws {
        guard seconds >= 1, (1...64).contains(connections), (1...(256 * 1024)).contains(maxSize) else {
            throw ValidationError("--seconds must be at least 1, --connections 1...64, --max-size 1...262144")
        }
        let device = try Fabric.openDefaultDevice()
        let report: SoakReport
        if device is TCPDevice {
            report = try SoakRun(client: TCPDevice(), server: TCPDevice(), options: self).run()
        } else if let verbs = device as? VerbsDevice {
            report = try SoakRun(client: verbs, server: VerbsDevice(name: verbs.name), options: self).run()
        } else {
            throw ValidationError("no backend to soak")
        }
        print(report.text)
        if !report.passed { throw ExitCode(1) }
    }
}

struct SoakReport {
    var backend = ""
    var seed: UInt64 = 0
    var seconds = 0.0
    var sends = 0, writes = 0, reads = 0, atomics = 0, connectionsOpened = 0
    var bytes = 0
    var dataErrors = 0
    var failures: [String] = []
    var residentAtTenth = 0, residentAtEnd = 0, residentMax = 0
    /// How long each connection took to set up (listen, connect, handshake, accept).
    var setupTimes = LatencyHistogram()
    var leakLimit = 0

    var growthMiB: Double { Double(residentAtEnd - residentAtTenth) / Double(1 << 20) }
    var passed: Bool { dataErrors == 0 && failures.isEmpty && growthMiB <= Double(leakLimit) }

    var text: String {
        var lines = [
            "soak on \(backend), seed \(seed): \(String(format: "%.0f", seconds)) s, load average \(loadAverage())",
            "  operations: \(sends) sends, \(writes) writes, \(reads) reads, \(atomics) fetch-and-adds; \(bytes >> 20) MiB moved",
            String(format: "  connections opened: %d; set-up median %.0f us, p99 %.0f us (listen, connect, handshake, accept)",
                   connectionsOpened, setupTimes.median, setupTimes.percentile(99)),
            "  data errors: \(dataErrors); failed or stuck operations: \(failures.count)",
            String(format: "  resident memory: %.1f MiB after the first tenth, %.1f MiB at the end (growth %.1f MiB, limit %d), %.1f MiB at most",
                   Double(residentAtTenth) / 1048576, Double(residentAtEnd) / 1048576, growthMiB, leakLimit, Double(residentMax) / 1048576),
        ]
        lines += failures.prefix(5).map { "  failure: \($0)" }
        lines.append(passed ? "  PASSED" : "  FAILED")
        return lines.joined(separator: "\n")
    }
}


/// The run itself, generic over the backend.
final class SoakRun<D: FabricDevice> {
    /// One connection: a queue pair at each end and their memory.
    final class Link {
        var client: D.QueuePair!
        var server: D.QueuePair!
    }

    let client: D, server: D
    let options: Soak
    let clientDomain: D.ProtectionDomain, serverDomain: D.ProtectionDomain
    let clientCQ: D.CompletionQueue, serverCQ: D.CompletionQueue
    let slices = 8
    let sliceSize = 512 * 1024
    let clientMemory: UnsafeMutableRawPointer, serverMemory: UnsafeMutableRawPointer
    var clientRegion: D.MemoryRegion!, serverRegion: D.MemoryRegion!
    var links: [Link] = []
    var counters: [UInt64] = []
    var random: SplitMix64
    var report = SoakReport()

    init(client: D, server: D, options: Soak) throws {
        self.client = client
        self.server = server
        self.options = options
        clientDomain = try client.allocateProtectionDomain()
        serverDomain = try server.allocateProtectionDomain()
        clientCQ = try client.createCompletionQueue(capacity: 4096)
        serverCQ = try server.createCompletionQueue(capacity: 4096)
        // Per connection: 8 slices on each side (the client's are sources and
        // READ destinations, the server's are WRITE targets and receive
        // buffers), and one word for the atomics.
        let bytes = options.connections * slices * sliceSize + 4096
        clientMemory = .allocate(byteCount: bytes, alignment: 4096)
        serverMemory = .allocate(byteCount: bytes, alignment: 4096)
        clientMemory.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        serverMemory.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        clientRegion = try client.registerMemory(clientMemory, length: bytes, access: .all, in: clientDomain)
        serverRegion = try server.registerMemory(serverMemory, length: bytes, access: .all, in: serverDomain)
        random = SplitMix64(seed: options.seed ?? UInt64.random(in: .min ... .max))
        report.seed = random.seed
        report.backend = client.backendName
        report.leakLimit = options.leakLimit
        counters = Array(repeating: 0, count: options.connections)
    }

    deinit {
        clientMemory.deallocate()
        serverMemory.deallocate()
    }

    private func sliceOffset(_ link: Int, _ slice: Int) -> Int { (link * slices + slice) * sliceSize }
    private var atomicsOffset: Int { options.connections * slices * sliceSize }

    func run() throws -> SoakReport {
        for index in 0..<options.connections { links.append(try connect(index)) }
        let start = ContinuousClock().now
        let end = start + .seconds(options.seconds)
        var nextSample = start
        var tenthTaken = false
        while ContinuousClock().now < end && report.failures.isEmpty {
            let index = Int(random.next() % UInt64(links.count))
            if random.next() % 100 == 0 {
                links[index].client.disconnect()
                links[index] = try connect(index)
                // The closed connection's events: taken, so they do not pile up.
                while client.pollAsyncEvent() != nil {}
                while server.pollAsyncEvent() != nil {}
            }
            try batch(index)
            let now = ContinuousClock().now
            if now >= nextSample {
                let resident = try ResidentMemory.bytes()
                report.residentMax = max(report.residentMax, resident)
                if !tenthTaken && now - start >= .seconds(options.seconds) / 10 {
                    report.residentAtTenth = resident
                    tenthTaken = true
                }
                nextSample = now + .milliseconds(500)
            }
        }
        report.seconds = Double((ContinuousClock().now - start).components.seconds)
        report.residentAtEnd = try ResidentMemory.bytes()
        if !tenthTaken { report.residentAtTenth = report.residentAtEnd }
        for link in links { link.client.disconnect() }
        return report
    }

    private func connect(_ index: Int) throws -> Link {
        let started = ContinuousClock().now
        let link = Link()
        (link.client, link.server) = try connectLoopbackPair(
            client: client, QueuePairSetup<D>(protectionDomain: clientDomain, sendCompletionQueue: clientCQ, receiveCompletionQueue: clientCQ),
            server: server, QueuePairSetup<D>(protectionDomain: serverDomain, sendCompletionQueue: serverCQ, receiveCompletionQueue: serverCQ))
        report.connectionsOpened += 1
        report.setupTimes.record(ContinuousClock().now - started)
        return link
    }

    /// Up to eight operations at once on one connection, each in its own
    /// slice, checked when they completed; WRITEs are then read back.
    private func batch(_ index: Int) throws {
        let link = links[index]
        let count = 1 + Int(random.next() % 8)
        var kinds: [SoakOperation] = []
        var sizes: [Int] = []
        var seeds: [UInt8] = []
        var adds = [UInt64](repeating: 0, count: 8)
        for slice in 0..<count {
            let choice = random.next() % 10
            let kind: SoakOperation = choice < 4 ? .send : (choice < 9 ? .write : .atomic)
            let size = Int(random.next() % UInt64(options.maxSize + 1))
            let seed = UInt8(truncatingIfNeeded: random.next())
            kinds.append(kind)
            sizes.append(size)
            seeds.append(seed)
            let source = clientMemory + sliceOffset(index, slice)
            fill(source, size, seed)
            let local = try ScatterGatherElement(pointer: source, length: size, localKey: clientRegion.localKey)
            let remote = RemoteMemory(address: UInt64(UInt(bitPattern: serverMemory + sliceOffset(index, slice))), key: serverRegion.remoteKey)
            switch kind {
            case .send:
                let target = try ScatterGatherElement(pointer: serverMemory + sliceOffset(index, slice), length: sliceSize, localKey: serverRegion.localKey)
                _ = try link.server.postReceive(ReceiveWorkRequest(id: UInt64(slice), local: .single(target)))
                _ = try link.client.postSend(SendWorkRequest(id: UInt64(slice), operation: .send, local: .single(local)))
                report.sends += 1
            case .write:
                _ = try link.client.postSend(SendWorkRequest(id: UInt64(slice), operation: .write(remote), local: .single(local)))
                report.writes += 1
            case .atomic:
                let add = random.next() % 1000
                adds[slice] = add
                let word = RemoteMemory(address: UInt64(UInt(bitPattern: serverMemory + atomicsOffset + index * 8)), key: serverRegion.remoteKey)
                source.storeBytes(of: UInt64.max, as: UInt64.self)  // overwritten by the old value
                let old = try ScatterGatherElement(pointer: source, length: 8, localKey: clientRegion.localKey)
                _ = try link.client.postSend(SendWorkRequest(id: UInt64(slice), operation: .fetchAndAdd(word, add: add), local: .single(old)))
                report.atomics += 1
            }
            report.bytes += size
        }
        // The requests' completions, and the receives at the server.
        guard let (sent, arrived) = awaitCompletions(client: count, server: kinds.filter { $0 == .send }.count) else { return }
        for completion in arrived {
            let slice = Int(completion.workRequestID)
            if Int(completion.byteLength) != sizes[slice] || !check(serverMemory + sliceOffset(index, slice), sizes[slice], seeds[slice]) {
                report.dataErrors += 1
            }
        }
        // The fetch-and-adds were applied in posting order, and so completed.
        var expected = counters[index]
        for completion in sent where kinds[Int(completion.workRequestID)] == .atomic {
            let slice = Int(completion.workRequestID)
            if (clientMemory + sliceOffset(index, slice)).load(as: UInt64.self) != expected { report.dataErrors += 1 }
            expected &+= adds[slice]
        }
        counters[index] = expected
        if (serverMemory + atomicsOffset + index * 8).load(as: UInt64.self) != expected { report.dataErrors += 1 }
        // Read every WRITE back into the client's slice (cleared first).
        var reads = 0
        for slice in 0..<count where kinds[slice] == .write && sizes[slice] > 0 {
            let destination = clientMemory + sliceOffset(index, slice)
            destination.initializeMemory(as: UInt8.self, repeating: 0, count: sizes[slice])
            let remote = RemoteMemory(address: UInt64(UInt(bitPattern: serverMemory + sliceOffset(index, slice))), key: serverRegion.remoteKey)
            _ = try link.client.postSend(SendWorkRequest(
                id: UInt64(slice), operation: .read(remote),
                local: .single(ScatterGatherElement(pointer: destination, length: sizes[slice], localKey: clientRegion.localKey))))
            reads += 1
            report.reads += 1
            report.bytes += sizes[slice]
        }
        guard let readBack = awaitCompletions(client: reads, server: 0) else { return }
        for completion in readBack.client {
            let slice = Int(completion.workRequestID)
            if !check(clientMemory + sliceOffset(index, slice), sizes[slice], seeds[slice]) { report.dataErrors += 1 }
        }
    }

    /// Polls both ends until `client` requests and `server` receives have
    /// completed, all of them successfully, within 10 s; nil (and a
    /// failure in the report) otherwise.
    private func awaitCompletions(client: Int, server: Int) -> (client: [Completion], server: [Completion])? {
        var requests: [Completion] = []
        var receives: [Completion] = []
        let deadline = ContinuousClock().now + .seconds(10)
        while requests.count < client || receives.count < server {
            var idle = true
            for (queue, isClient) in [(clientCQ, true), (serverCQ, false)] {
                guard let completion = queue.poll() else { continue }
                idle = false
                if completion.status != .success {
                    report.failures.append("\(completion)")
                    return nil
                }
                if isClient { requests.append(completion) } else { receives.append(completion) }
            }
            if idle && ContinuousClock().now > deadline {
                report.failures.append("\(client - requests.count) requests and \(server - receives.count) receives did not complete within 10 s")
                return nil
            }
        }
        return (requests, receives)
    }

    /// The byte at offset `i` of a message with `seed`: it depends on the
    /// offset's 256-byte block too, so a block placed at the wrong multiple
    /// of 256 (a chunk, a page, an MTU) does not pass for the right one.
    @inline(__always)
    private func pattern(_ i: Int, _ seed: UInt8) -> UInt8 {
        let block = i >> 8
        return UInt8(truncatingIfNeeded: i &* 131 &+ block &* 0x37 &+ block >> 8 &+ Int(seed))
    }

    private func fill(_ pointer: UnsafeMutableRawPointer, _ count: Int, _ seed: UInt8) {
        for i in 0..<count { pointer.storeBytes(of: pattern(i, seed), toByteOffset: i, as: UInt8.self) }
    }

    private func check(_ pointer: UnsafeMutableRawPointer, _ count: Int, _ seed: UInt8) -> Bool {
        for i in 0..<count where pointer.load(fromByteOffset: i, as: UInt8.self) != pattern(i, seed) {
            return false
        }
        return true
    }
}

enum SoakOperation { case send, write, atomic }
