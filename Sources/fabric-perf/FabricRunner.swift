import CAllocationCounter
import Fabric
import Foundation
import Glibc

/// One end of the measured fabric connection, for any backend.
final class FabricSide<D: FabricDevice> {
    let device: D
    let domain: D.ProtectionDomain
    let cq: D.CompletionQueue
    var queuePair: D.QueuePair!
    let capacity: Int
    let sendBuffer: UnsafeMutableRawPointer
    let receiveBuffer: UnsafeMutableRawPointer
    let sendRegion: D.MemoryRegion
    let receiveRegion: D.MemoryRegion
    var peer = RemoteMemory(address: 0, key: RemoteKey(rawValue: 0))
    let completions: UnsafeMutableBufferPointer<Completion>
    let receiveDepth = 512
    var busyPoll = true
    /// Payloads up to this size are sent inline (copied at post time).
    let inlineLimit: Int

    init(device: D, capacity: Int) throws {
        self.device = device
        self.capacity = capacity
        inlineLimit = min(64, device.capabilities.maxInlineData)
        domain = try device.allocateProtectionDomain()
        cq = try device.createCompletionQueue(capacity: 8192)
        sendBuffer = .allocate(byteCount: capacity, alignment: 4096)
        sendBuffer.initializeMemory(as: UInt8.self, repeating: 0x5A, count: capacity)
        receiveBuffer = .allocate(byteCount: capacity, alignment: 4096)
        receiveBuffer.initializeMemory(as: UInt8.self, repeating: 0, count: capacity)
        sendRegion = try device.registerMemory(sendBuffer, length: capacity, access: .all, in: domain)
        receiveRegion = try device.registerMemory(receiveBuffer, length: capacity, access: .all, in: domain)
        completions = .allocate(capacity: 64)
        completions.initialize(repeating: .empty)
    }

    var setup: QueuePairSetup<D> { setup(reportingTo: cq) }

    /// This side's queue-pair settings, with both queues reporting to `queue`.
    /// A SEND that finds no receive is retried for as long as it takes, as
    /// perftest sets it (rnr_retry 7): in the bandwidth tests the card
    /// acknowledges what the server's thread has not yet polled, and a
    /// machine busy with other work can keep that thread from reposting
    /// for longer than the default 7 retries of 200 us; a slow receiver
    /// should lower the figure, not end the run.
    func setup(reportingTo queue: D.CompletionQueue) -> QueuePairSetup<D> {
        QueuePairSetup(
            protectionDomain: domain, sendCompletionQueue: queue, receiveCompletionQueue: queue,
            limits: QueuePairLimits(sendQueueDepth: 512, receiveQueueDepth: receiveDepth, maxSendScatterEntries: 1, maxReceiveScatterEntries: 1, maxInlineData: inlineLimit),
            retry: RetryPolicy(receiverNotReadyRetries: nil))
    }

    /// Receives always cover the whole receive buffer.
    func postReceives(_ count: Int) throws {
        for _ in 0..<count {
            _ = try queuePair.postReceive(receiveRequest)
        }
    }

    /// Polls once; sleeps on the queue's descriptor first in blocking mode.
    @inline(__always)
    func poll() throws -> Int { try poll(cq) }

    /// Polls `queue` once into `completions`; in blocking mode, sleeps on
    /// its descriptor first if it had nothing.
    @inline(__always)
    func poll(_ queue: D.CompletionQueue) throws -> Int {
        let n = queue.poll(into: completions)
        if n == 0 && !busyPoll {
            _ = try queue.wait(timeout: .seconds(30))
            return queue.poll(into: completions)
        }
        for i in 0..<n where completions[i].status != .success {
            throw PerfError("completion failed: \(completions[i])")
        }
        return n
    }

    /// The request a timed loop posts again and again (only its id and
    /// signalled flag change): built once per measurement, so that the loop
    /// builds, copies and destroys no request per iteration, as perftest
    /// reuses its work request.
    func request(_ operation: SendOperation, size: Int) throws(FabricError) -> SendWorkRequest {
        var flags: SendFlags = []
        switch operation {
        case .send, .sendWithImmediate, .write, .writeWithImmediate:
            if size <= inlineLimit { flags.insert(.inline) }
        default: break
        }
        let local: ScatterList = size == 0 ? .empty : .single(try sendRegion.element(offset: 0, length: size))
        return SendWorkRequest(id: 0, operation: operation, local: local, flags: flags)
    }

    /// The receive every loop posts (a timed loop builds it once: see `request`).
    var receiveRequest: ReceiveWorkRequest {
        get throws(FabricError) { ReceiveWorkRequest(id: 0, local: .single(try receiveRegion.element())) }
    }

    /// Posts `request` with a new id on `queuePair`. Timed loops pass the
    /// queue pair they bound once: read from the `queuePair` property, each
    /// call would take and drop a reference to it.
    @inline(__always)
    func post(_ request: inout SendWorkRequest, id: UInt64, signaled: Bool, on queuePair: D.QueuePair) throws {
        request.id = id
        if signaled { request.flags.insert(.signaled) } else { request.flags.remove(.signaled) }
        while try queuePair.postSend(request) == .wouldBlock {
            _ = try poll()
        }
    }

    /// Waits for a receive completion, reposting the receive; other
    /// completions (signalled sends) are consumed on the way.
    @inline(__always)
    func awaitReceive(on queuePair: D.QueuePair, repost: ReceiveWorkRequest) throws {
        while true {
            let n = try poll()
            var received = false
            for i in 0..<n where completions[i].opcode == .receive || completions[i].opcode == .receiveWithImmediate {
                received = true
                _ = try queuePair.postReceive(repost)
            }
            if received { return }
        }
    }

    /// Waits for the completion of request `id`.
    @inline(__always)
    func awaitCompletion(_ id: UInt64) throws {
        while true {
            let n = try poll()
            for i in 0..<n where completions[i].workRequestID == id && completions[i].opcode != .receive { return }
        }
    }

    /// Waits until the peer wrote `marker` into the last byte of `size`.
    @inline(__always)
    func awaitMarker(_ marker: UInt8, size: Int) throws {
        let address = receiveBuffer + (size - 1)
        while address.load(as: UInt8.self) != marker {
            _ = try poll()
        }
    }
}

/// What a bandwidth or message-rate test posts on each queue pair: the
/// operation, how many requests stay in flight, and how often one is
/// signalled (the rest complete silently, as perftest's do).
struct BandwidthShape {
    let operation: SendOperation
    let window: Int
    let every: Int

    init(_ test: PerfTest, size: Int, peer: RemoteMemory) throws {
        switch test {
        case .bandwidthWrite: operation = .write(peer)
        case .bandwidthRead: operation = .read(peer)
        case .bandwidthSend, .rateSend: operation = .send
        default: throw PerfError("\(test.rawValue) is not a bandwidth test")
        }
        window = max(2, min(128, (32 << 20) / max(size, 1)))
        every = max(1, min(16, window / 2))
    }
}

/// The client's half of each test: it drives and times.
struct FabricClient<D: FabricDevice> {
    let side: FabricSide<D>

    /// The test's timings, and the cost of its loop (warm-up included in
    /// the socket calls, which are read only before and after it).
    func latency(_ test: PerfTest, size: Int, iterations: Int) throws -> (LatencyHistogram, LoopCost) {
        let warmup = max(10, iterations / 10)
        var timings = LatencyHistogram()
        var allocations: UInt64 = 0
        let operation: SendOperation
        switch test {
        case .latencySend: operation = .send
        case .latencyWrite, .latencyWriteCompletion: operation = .write(side.peer)
        case .latencyRead, .latencyReadPassive: operation = .read(side.peer)
        case .latencyFetchAdd, .latencyFetchAddPassive: operation = .fetchAndAdd(side.peer, add: 1)
        case .latencyCompareSwap: operation = .compareAndSwap(side.peer, compare: 0, swap: 0)
        default: throw PerfError("\(test.rawValue) is not a latency test")
        }
        var request = try side.request(operation, size: test.effectiveSize(size))
        let repost = try side.receiveRequest
        let queuePair: D.QueuePair = side.queuePair
        let callsBefore = side.socketCalls(of: [queuePair])
        // One clock reading per iteration, as perftest takes: each sample
        // runs from the end of the previous iteration to the end of this one.
        var last = now()
        for i in 0..<(warmup + iterations) {
            if i == warmup {
                allocation_counter_enable(1)
                allocations = allocation_counter_count()
            }
            switch test {
            case .latencySend:
                try side.post(&request, id: UInt64(i), signaled: i % 64 == 63, on: queuePair)
                try side.awaitReceive(on: queuePair, repost: repost)
            case .latencyWrite:
                let marker = UInt8(i % 255 + 1)
                side.sendBuffer.storeBytes(of: marker, toByteOffset: size - 1, as: UInt8.self)
                try side.post(&request, id: UInt64(i), signaled: i % 64 == 63, on: queuePair)
                try side.awaitMarker(marker, size: size)
            default:
                try side.post(&request, id: UInt64(i), signaled: true, on: queuePair)
                try side.awaitCompletion(UInt64(i))
            }
            let end = now()
            if i >= warmup { timings.record(nanoseconds: end - last) }
            last = end
        }
        allocations = allocation_counter_count() - allocations
        allocation_counter_enable(0)
        // Before the drain below, whose polls are no part of the test.
        let calls = difference(side.socketCalls(of: [queuePair]), callsBefore)
        // Drain the last signalled completions.
        if test == .latencySend || test == .latencyWrite {
            let clock = ContinuousClock()
            let until = clock.now + .milliseconds(5)
            while clock.now < until { _ = side.cq.poll(into: side.completions) }
        }
        return (test.metric == "one-way" ? timings.halved() : timings, LoopCost(allocations: allocations, socketCalls: calls))
    }

    func bandwidth(_ test: PerfTest, size: Int, count: Int, postList: Int) throws -> (Double, LoopCost) {
        let shape = try BandwidthShape(test, size: size, peer: side.peer)
        let (window, every) = (shape.window, shape.every)
        var request = try side.request(shape.operation, size: size)
        let list = PostList(repeating: request, capacity: postList)
        defer { list.deallocate() }
        let callsBefore = side.socketCalls(of: [side.queuePair])
        let start = now()
        allocation_counter_enable(1)
        let allocationsBefore = allocation_counter_count()
        let queuePair: D.QueuePair = side.queuePair
        var posted = 0
        var completed = 0
        while completed < count {
            if postList == 1 {
                while posted < count && posted - completed < window {
                    let signaled = posted % every == every - 1 || posted == count - 1
                    try side.post(&request, id: UInt64(posted), signaled: signaled, on: queuePair)
                    posted += 1
                }
            } else {
                // The window's free room in lists; a full send queue ends
                // the refill (the poll below makes room).
                while posted < count && posted - completed < window {
                    let length = min(postList, count - posted, window - (posted - completed))
                    for index in 0..<length {
                        let sequence = posted + index
                        list.set(index, id: UInt64(sequence), signaled: sequence % every == every - 1 || sequence == count - 1)
                    }
                    let accepted = try queuePair.postSend(list.prefix(length))
                    posted += accepted
                    if accepted < length { break }
                }
            }
            let n = try side.poll()
            for i in 0..<n { completed = max(completed, Int(side.completions[i].workRequestID) + 1) }
        }
        let elapsed = Double(now() - start) / 1e9
        let allocations = allocation_counter_count() - allocationsBefore
        allocation_counter_enable(0)
        let cost = LoopCost(allocations: allocations, socketCalls: difference(side.socketCalls(of: [queuePair]), callsBefore))
        if test.isRate { return (Double(count) / elapsed / 1e6, cost) }
        return (Double(size * count) / elapsed / 1e6, cost)
    }
}

/// The server's half: echo, place, or serve one-sided operations.
struct FabricServer<D: FabricDevice> {
    let side: FabricSide<D>
    let control: ControlChannel

    /// Serves one repetition; for the tests the client ends with "stop",
    /// the loop (and its socket calls) runs until that line is waiting.
    func run(_ test: PerfTest, size: Int, count: Int) throws -> LoopCost {
        let warmup = test.isLatency ? max(10, count / 10) : 0
        let callsBefore = side.socketCalls(of: [side.queuePair])
        allocation_counter_enable(1)
        let before = allocation_counter_count()
        switch test {
        case .latencySend:
            var request = try side.request(.send, size: size)
            let repost = try side.receiveRequest
            let queuePair: D.QueuePair = side.queuePair
            for i in 0..<(warmup + count) {
                try side.awaitReceive(on: queuePair, repost: repost)
                try side.post(&request, id: UInt64(i), signaled: i % 64 == 63, on: queuePair)
            }
        case .latencyWrite:
            var request = try side.request(.write(side.peer), size: size)
            let queuePair: D.QueuePair = side.queuePair
            for i in 0..<(warmup + count) {
                let marker = UInt8(i % 255 + 1)
                try side.awaitMarker(marker, size: size)
                side.sendBuffer.storeBytes(of: marker, toByteOffset: size - 1, as: UInt8.self)
                try side.post(&request, id: UInt64(i), signaled: i % 64 == 63, on: queuePair)
            }
        case .bandwidthSend, .rateSend:
            // Keep polling until the client has its last completion (it
            // needs our acknowledgement), as a running application would.
            var received = 0
            var spins = 0
            while true {
                let n = try pollOrSleep()
                for i in 0..<n where side.completions[i].opcode == .receive {
                    received += 1
                    _ = try side.queuePair.postReceive(side.receiveRequest)
                }
                spins += 1
                if received >= count && spins % 64 == 0 && control.hasInput() { break }
            }
        default:
            // One-sided: the card serves the client. An active target polls
            // its queue; a passive one computes and never calls the library.
            var spins = 0
            var sink: UInt64 = 0
            while true {
                if test.passiveTarget {
                    for k in 0..<2000 { sink = sink &* 6364136223846793005 &+ UInt64(k) }
                    if control.hasInput() { break }
                } else {
                    _ = try pollOrSleep()
                    spins += 1
                    if (!side.busyPoll || spins % 256 == 0) && control.hasInput() { break }
                }
            }
            if sink == 42 { print("") }
        }
        let allocations = allocation_counter_count() - before
        allocation_counter_enable(0)
        return LoopCost(allocations: allocations, socketCalls: difference(side.socketCalls(of: [side.queuePair]), callsBefore))
    }
}

extension FabricServer {
    /// Busy-polling: one poll. Blocking: poll, and if nothing came, sleep on
    /// the completion queue's descriptor and the control channel together
    /// (the client's "stop" must wake the server too).
    func pollOrSleep() throws -> Int { try pollOrSleep(side.cq) }

    /// `pollOrSleep()` on `queue`, which may be a queue-pair group's.
    func pollOrSleep(_ queue: D.CompletionQueue) throws -> Int {
        if side.busyPoll { return try side.poll(queue) }
        let n = queue.poll(into: side.completions)
        if n > 0 {
            for i in 0..<n where side.completions[i].status != .success {
                throw PerfError("completion failed: \(side.completions[i])")
            }
            return n
        }
        var descriptors = [
            pollfd(fd: queue.fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: control.fd, events: Int16(POLLIN), revents: 0),
        ]
        _ = Glibc.poll(&descriptors, 2, 1000)
        return 0
    }
}

