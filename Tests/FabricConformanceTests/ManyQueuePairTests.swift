import Dispatch
import Fabric
import FabricTestSupport
import Glibc
import Testing

/// Many queue pairs on one pair of completion queues per side, as an MPI
/// rank has one per peer: every one carries checked traffic, timers of
/// idle-looking queue pairs still fire, and blocking waits see them all.
@Suite("many queue pairs on shared completion queues")
struct ManyQueuePairTests {
    /// `count` connections between two sides; each side's queue pairs share
    /// its two completion queues. Each server queue pair gets `receives`
    /// receives of 64 bytes posted before it connects.
    static func connectMany<D: FabricDevice>(
        client: Side<D>, server: Side<D>, host: String, count: Int, memory: Buffer, region: D.MemoryRegion,
        retry: RetryPolicy = RetryPolicy()
    ) throws -> (clients: [D.QueuePair], servers: [D.QueuePair]) {
        let listener = try server.device.listen(on: Endpoint(host: host, port: 0), backlog: count)
        defer { listener.close() }
        let setup = server.setup(retry: retry)
        nonisolated(unsafe) var accepted: [D.QueuePair] = []
        nonisolated(unsafe) var failure: Error?
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            do {
                for index in 0..<count {
                    guard let request = try listener.next(timeout: .seconds(20)) else { throw TestFailure("request \(index) did not come") }
                    accepted.append(try request.accept(setup, privateData: []) { (qp) throws(FabricError) in
                        // Each queue pair receives into its own 64 bytes.
                        _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(index), local: .single(region.element(offset: index * 64, length: 64))))
                    })
                }
            } catch {
                failure = error
            }
            done.signal()
        }
        var clients: [D.QueuePair] = []
        for _ in 0..<count {
            clients.append(try client.device.connect(to: listener.endpoint, client.setup(retry: retry), options: ConnectOptions(timeout: .seconds(20)), prepare: { _ in }).queuePair)
        }
        done.wait()
        if let failure { throw failure }
        _ = memory
        return (clients, accepted)
    }

    @Test("64 queue pairs on shared queues each deliver a checked SEND and WRITE", arguments: ConformanceBackend.available)
    func sixtyFour(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            let count = 64
            let client = try Side(try backend.open())
            let server = try Side(try backend.open())
            let serverMemory = Buffer(count * 64 + count * 256)
            let serverRegion = try server.register(serverMemory)
            let (clients, servers) = try Self.connectMany(
                client: client, server: server, host: backend.host, count: count, memory: serverMemory, region: serverRegion)
            #expect(servers.count == count)
            let source = Buffer(count * 256)
            source.fillPattern(seed: 7)
            let sourceRegion = try client.register(source)
            // Every queue pair, in an order that is not that of creation.
            for step in 0..<count {
                let index = (step * 37) % count
                let qp = clients[index]
                let writeOffset = count * 64 + index * 256
                _ = try qp.postSend(SendWorkRequest(
                    id: UInt64(1000 + index), operation: .write(serverRegion.remote(offset: writeOffset)),
                    local: .single(sourceRegion.element(offset: index * 256, length: 256)), flags: .signaled))
                _ = try qp.postSend(SendWorkRequest(
                    id: UInt64(index), operation: .send, local: .single(sourceRegion.element(offset: index * 256, length: 64)), flags: .signaled))
            }
            var sendsDone = Set<UInt64>()
            while sendsDone.count < 2 * count {
                let completion = try client.nextSend()
                #expect(completion.status == .success, "\(completion)")
                sendsDone.insert(completion.workRequestID)
            }
            var received = Set<UInt64>()
            let numbers = Dictionary(uniqueKeysWithValues: servers.enumerated().map { ($1.number, $0) })
            while received.count < count {
                let completion = try server.nextReceive()
                #expect(completion.status == .success)
                #expect(completion.byteLength == 64)
                // The receive came in on the queue pair it was posted to.
                #expect(numbers[completion.queuePair] == Int(completion.workRequestID))
                received.insert(completion.workRequestID)
            }
            for index in 0..<count {
                // The SEND carried the first 64 bytes of this queue pair's slice.
                let sent = source.pointer + index * 256
                let sendMatches = memcmp(serverMemory.pointer + index * 64, sent, 64) == 0
                let writeMatches = memcmp(serverMemory.pointer + (count * 64 + index * 256), sent, 256) == 0
                #expect(sendMatches, "SEND on queue pair \(index)")
                #expect(writeMatches, "WRITE on queue pair \(index)")
            }
            withExtendedLifetime((clients, servers, sourceRegion, serverRegion)) {}
        }
    }

    @Test("among 16 idle queue pairs, one that only waits for a timer still completes (lost first packet)")
    func timerOfAnIdleLookingQueuePair() throws {
        // Every queue pair's first packet is dropped by the emulator: the
        // READ completes only if the requester's retry timer fires, with no
        // input on any socket to wake a readiness poll.
        let faults = try FaultScript.parse("drop packet=1")
        let client = try Side(try TCPDevice(secret: testSecret, faults: faults))
        let server = try Side(try TCPDevice(secret: testSecret))
        let serverMemory = Buffer(16 * 64)
        serverMemory.fillPattern(seed: 3)
        let serverRegion = try server.register(serverMemory)
        let retry = RetryPolicy(responseTimeout: .milliseconds(400))
        let (clients, servers) = try Self.connectMany(
            client: client, server: server, host: "127.0.0.1", count: 16, memory: serverMemory, region: serverRegion, retry: retry)
        let target = Buffer(64)
        let targetRegion = try client.register(target)
        _ = try clients[9].postSend(SendWorkRequest(
            id: 1, operation: .read(serverRegion.remote(offset: 9 * 64)), local: .single(targetRegion.element()), flags: .signaled))
        let completion = try client.nextSend()
        #expect(completion.status == .success, "\(completion)")
        let readMatches = memcmp(target.pointer, serverMemory.pointer + 9 * 64, 64) == 0
        #expect(readMatches)
        // The drop happened and was retried: the fault is real.
        #expect(clients[9].counters.retries >= 1)
        #expect(clients[9].counters.faultsInjected >= 1)
        withExtendedLifetime((clients, servers, serverRegion, targetRegion)) {}
    }

    @Test("among 16 idle queue pairs, a response timeout fires when the peer vanishes (no input, no emulation on our side)")
    func responseTimeoutOfAnIdleLookingQueuePair() throws {
        // The server's queue pairs vanish at their first packet (a SEND it
        // posts): from then on they swallow what arrives and answer nothing,
        // so only the requester's own response timer can end its READ.
        let client = try Side(try TCPDevice(secret: testSecret))
        let server = try Side(try TCPDevice(secret: testSecret, faults: try FaultScript.parse("vanish packet=1")))
        let serverMemory = Buffer(16 * 64)
        let serverRegion = try server.register(serverMemory)
        let retry = RetryPolicy(responseTimeout: .milliseconds(300))
        let (clients, servers) = try Self.connectMany(
            client: client, server: server, host: "127.0.0.1", count: 16, memory: serverMemory, region: serverRegion, retry: retry)
        let target = Buffer(64)
        let targetRegion = try client.register(target)
        _ = try servers[9].postSend(SendWorkRequest(id: 7, operation: .send, local: .single(serverRegion.element(length: 8))))
        let clock = ContinuousClock()
        let start = clock.now
        _ = try clients[9].postSend(SendWorkRequest(
            id: 1, operation: .read(serverRegion.remote(offset: 9 * 64)), local: .single(targetRegion.element()), flags: .signaled))
        let completion = try client.nextSend()
        let elapsed = clock.now - start
        #expect(completion.status == .transportRetryExceeded, "\(completion)")
        #expect(completion.detail == .peerTimedOut)
        // On its own timer, not found later by a sweep of the progress
        // thread (which took about a second when the timer was not listed).
        #expect(elapsed >= .milliseconds(300) && elapsed < .milliseconds(800), "\(elapsed)")
        // The server's queue pair vanished: the fault is real.
        #expect(servers[9].counters.faultsInjected >= 1)
        withExtendedLifetime((clients, servers, serverRegion, targetRegion)) {}
    }

    @Test("a blocking wait with 32 queue pairs attached wakes for the one that receives", arguments: ConformanceBackend.available)
    func blockingWaitAmongMany(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            let count = 32
            let client = try Side(try backend.open())
            let server = try Side(try backend.open())
            let serverMemory = Buffer(count * 64)
            let serverRegion = try server.register(serverMemory)
            let (clients, servers) = try Self.connectMany(
                client: client, server: server, host: backend.host, count: count, memory: serverMemory, region: serverRegion)
            let source = Buffer(64, fill: 0x5a)
            let sourceRegion = try client.register(source)
            for index in [31, 0, 17] {
                _ = try clients[index].postSend(SendWorkRequest(id: UInt64(index), operation: .send, local: .single(sourceRegion.element())))
                // The server sleeps in wait, then polls; no busy loop.
                var completion: Completion?
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(20)
                while completion == nil && clock.now < deadline {
                    _ = try server.receiveCQ.wait(timeout: .seconds(5))
                    completion = server.receiveCQ.poll()
                }
                let received = try #require(completion)
                #expect(received.status == .success)
                #expect(received.queuePair == servers[index].number)
                #expect(serverMemory.pointer.load(fromByteOffset: index * 64, as: UInt8.self) == 0x5a)
            }
            withExtendedLifetime((clients, servers, sourceRegion, serverRegion)) {}
        }
    }

    @Test("256 queue pairs between two processes, each carrying checked traffic both ways (tcp)")
    func twoHundredFiftySixAcrossProcesses() throws {
        let count = 256
        let device = try TCPDevice(secret: testSecret)
        let side = try Side(device, cqCapacity: 4 * count)
        let listener = try device.listen(on: Endpoint(host: "127.0.0.1", port: 0), backlog: count)
        defer { listener.close() }
        let child = try PeerProcesses.spawn(
            PeerProcessTests.Peer.helper, ["echo", "127.0.0.1", String(listener.endpoint.port), String(count)],
            environment: ["FABRIC_JOB_SECRET=\(String(decoding: testSecret, as: UTF8.self))"])
        defer { PeerProcesses.end(child) }
        let inbox = Buffer(count * 64)
        let inboxRegion = try side.register(inbox)
        var queuePairs: [TCPQueuePair] = []
        for index in 0..<count {
            guard let request = try listener.next(timeout: .seconds(30)) else { throw TestFailure("connection \(index) of \(count) did not come") }
            queuePairs.append(try request.accept(side.setup(), privateData: []) { (qp) throws(FabricError) in
                _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(index), local: .single(inboxRegion.element(offset: index * 64, length: 64))))
            })
        }
        let outbox = Buffer(count * 64)
        let outboxRegion = try side.register(outbox)
        let byNumber = Dictionary(uniqueKeysWithValues: queuePairs.enumerated().map { ($1.number, $0) })
        // Two rounds: each queue pair sends its own pattern, the peer sends
        // it back on the same queue pair, and the bytes are compared.
        for round in 0..<2 {
            for index in 0..<count {
                for byte in 0..<64 { outbox.pointer.storeBytes(of: UInt8(truncatingIfNeeded: index &* 7 &+ byte &+ round * 13), toByteOffset: index * 64 + byte, as: UInt8.self) }
                _ = try queuePairs[index].postSend(SendWorkRequest(id: UInt64(index), operation: .send, local: .single(outboxRegion.element(offset: index * 64, length: 64))))
            }
            var echoed = Set<Int>()
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(30)
            while echoed.count < count && clock.now < deadline {
                guard let completion = side.receiveCQ.poll() else { continue }
                #expect(completion.status == .success, "\(completion)")
                let index = try #require(byNumber[completion.queuePair])
                #expect(Int(completion.workRequestID) == index)
                let same = memcmp(inbox.pointer + index * 64, outbox.pointer + index * 64, 64) == 0
                #expect(same, "round \(round), queue pair \(index): the echo differs")
                echoed.insert(index)
                _ = try queuePairs[index].postReceive(ReceiveWorkRequest(id: UInt64(index), local: .single(inboxRegion.element(offset: index * 64, length: 64))))
            }
            #expect(echoed.count == count, "round \(round): \(echoed.count) of \(count) echoes")
            while side.sendCQ.poll() != nil {}
        }
        withExtendedLifetime((queuePairs, inboxRegion, outboxRegion)) {}
    }
}
