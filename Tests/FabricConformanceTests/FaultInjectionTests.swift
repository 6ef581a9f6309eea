import Fabric
import FabricTestSupport
import Testing

/// The error paths a card takes when its link or its peer fails, produced
/// on demand by the software NIC's fault script (docs/emulation.md). Only
/// the tcp backend injects faults; each test checks the completions, the
/// flushes and the counters the fabric API specifies.
@Suite("fault injection (tcp)")
struct FaultInjectionTests {
    /// Two software NICs, each with its own fault script.
    private func pair(
        client: String = "", server: String = "", retry: RetryPolicy = RetryPolicy(),
        receives: Int = 0, receiveLength: Int = 64
    ) throws -> (Connection<TCPDevice>, Buffer) {
        let clientDevice = try TCPDevice(secret: testSecret, faults: FaultScript.parse(client))
        let serverDevice = try TCPDevice(secret: testSecret, faults: FaultScript.parse(server))
        let inbox = Buffer(max(receiveLength, 1) * max(receives, 1))
        nonisolated(unsafe) var inboxRegion: TCPMemoryRegion?
        let connection = try connect(
            client: clientDevice, server: serverDevice, host: "127.0.0.1",
            clientSetup: { $0.setup(retry: retry) }, serverSetup: { side in
                inboxRegion = try? side.register(inbox)
                side.keepAlive.append(inbox)
                if let inboxRegion { side.keepAlive.append(inboxRegion) }
                return side.setup(retry: retry)
            },
            prepareServer: { qp in
                for i in 0..<receives {
                    _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(100 + i), local: .single(inboxRegion!.element(offset: i * receiveLength, length: receiveLength))))
                }
            })
        return (connection, inbox)
    }

    private func elapsed(since start: ContinuousClock.Instant) -> Duration { ContinuousClock().now - start }

    @Test("a lost packet is sent again after the retry timeout; the atomic it carries is applied once")
    func dropThenRetry() throws {
        // Two losses, three retries allowed: the third attempt gets through.
        let retry = RetryPolicy(responseTimeout: .milliseconds(400), transportRetries: 3)  // 100 ms per attempt
        let (pair, _) = try self.pair(client: "drop packet=2 times=2", retry: retry)
        let word = Buffer(8)
        word.setWord(41)
        let wordRegion = try pair.server.register(word)
        let old = Buffer(8)
        let oldRegion = try pair.client.register(old)
        let payload = Buffer(16, fill: 0x5C)
        let payloadRegion = try pair.client.register(payload)
        let target = Buffer(16)
        let targetRegion = try pair.server.register(target)

        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(targetRegion.remote()), local: .single(payloadRegion.element())))
        #expect(try pair.client.nextSend().status == .success)
        let start = ContinuousClock().now
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .fetchAndAdd(wordRegion.remote(), add: 1), local: .single(oldRegion.element())))
        let added = try pair.client.nextSend()
        let took = elapsed(since: start)
        #expect(added.workRequestID == 2 && added.status == .success, "\(added)")
        #expect(old.word() == 41)
        #expect(word.word() == 42, "applied exactly once")
        #expect(took >= .milliseconds(190), "two retry timeouts of 100 ms; took \(took)")
        #expect(target.bytes.allSatisfy { $0 == 0x5C })
        let counters = pair.client.queuePair.counters
        #expect(counters.retries == 2 && counters.faultsInjected == 2, "\(counters)")
        #expect(pair.client.queuePair.state == .readyToSend)
        withExtendedLifetime((wordRegion, oldRegion, payloadRegion, targetRegion)) {}
    }

    @Test("a packet lost more often than the retries allow fails with transport retry exceeded and flushes the rest")
    func dropUntilRetriesRunOut() throws {
        let retry = RetryPolicy(responseTimeout: .milliseconds(300), transportRetries: 2)
        let (pair, _) = try self.pair(client: "drop packet=2 times=all", retry: retry, receives: 3)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
        #expect(try pair.client.nextSend().status == .success)
        let start = ContinuousClock().now
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .empty))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 3, operation: .send, local: .empty))
        let failed = try pair.client.nextSend()
        let took = elapsed(since: start)
        #expect(failed.workRequestID == 2 && failed.status == .transportRetryExceeded && failed.detail == .injectedFault, "\(failed)")
        #expect(took >= .milliseconds(290) && took < .seconds(5), "three attempts of 100 ms; took \(took)")
        let flushed = try pair.client.nextSend()
        #expect(flushed.workRequestID == 3 && flushed.status == .flushed, "\(flushed)")
        #expect(pair.client.queuePair.state == .error)
        let counters = pair.client.queuePair.counters
        #expect(counters.retries == 2 && counters.faultsInjected == 3, "\(counters)")
        // The target got the first SEND only; the connection's end flushes the rest.
        let received = try pair.server.nextReceive()
        #expect(received.workRequestID == 100 && received.status == .success)
        let targetFlushed = try pair.server.nextReceive()
        #expect(targetFlushed.workRequestID == 101 && targetFlushed.status == .flushed, "\(targetFlushed)")
    }

    @Test("a link that loses packets at random delivers every message once, in order, after retries it counts")
    func randomLoss() throws {
        let retry = RetryPolicy(responseTimeout: .milliseconds(80), transportRetries: 7)  // 10 ms per attempt
        // 3 % per packet: with the rxe profile's 1 KiB MTU an 8 KiB message is
        // 8 packets, lost 22 % of the time, so 8 losses in a row (the retries
        // running out) stay out of reach; 120 messages (within the queue
        // depth) of at least 240 packets make some loss all but certain.
        let count = 120
        let (pair, inbox) = try self.pair(client: "loss rate=3% seed=5", retry: retry, receives: count, receiveLength: 8192)
        let message = Buffer(8192 * count)
        message.fillPattern(seed: 3)
        let messageRegion = try pair.client.register(message)
        for index in 0..<count {
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(index), operation: .send, local: .single(messageRegion.element(offset: index * 8192, length: 8192))))
        }
        for index in 0..<count {
            let sent = try pair.client.nextSend()
            #expect(sent.workRequestID == UInt64(index) && sent.status == .success, "\(sent)")
            let received = try pair.server.nextReceive()
            #expect(received.workRequestID == UInt64(100 + index) && received.status == .success, "\(received)")
        }
        #expect(inbox.matchesPattern(seed: 3), "every message arrived once, in its own receive")
        let counters = pair.client.queuePair.counters
        #expect(counters.faultsInjected > 0 && counters.retries == counters.faultsInjected, "\(counters)")
        #expect(pair.client.queuePair.state == .readyToSend)
        withExtendedLifetime(messageRegion) {}
    }

    @Test("a delayed packet holds back those behind it, in order")
    func delay() throws {
        let (pair, inbox) = try self.pair(client: "delay packet=1 by=150ms", receives: 2, receiveLength: 8)
        let message = Buffer(8, fill: 7)
        let messageRegion = try pair.client.register(message)
        let start = ContinuousClock().now
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(messageRegion.element())))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .single(messageRegion.element())))
        let first = try pair.server.nextReceive()
        let took = elapsed(since: start)
        let second = try pair.server.nextReceive()
        #expect(first.workRequestID == 100 && second.workRequestID == 101 && second.status == .success, "\(first) \(second)")
        #expect(took >= .milliseconds(145), "held for 150 ms; arrived after \(took)")
        #expect(inbox.bytes.prefix(16).allSatisfy { $0 == 7 })
        #expect(try pair.client.nextSend().status == .success)
        #expect(try pair.client.nextSend().status == .success)
        #expect(pair.client.queuePair.counters.faultsInjected == 1 && pair.client.queuePair.counters.retries == 0)
        withExtendedLifetime((message, messageRegion)) {}
    }

    @Test("receiver-not-ready for N sends: retried and delivered within the RNR retries, an RNR error beyond them")
    func receiverNotReady() throws {
        let retry = RetryPolicy(receiverNotReadyRetries: 3, receiverNotReadyDelay: .milliseconds(1))
        do {
            let (pair, _) = try self.pair(server: "rnr sends=3", retry: retry, receives: 1)
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
            let sent = try pair.client.nextSend()
            #expect(sent.status == .success, "\(sent)")
            #expect(try pair.server.nextReceive().status == .success)
            #expect(pair.server.queuePair.counters.receiverNotReadyNaksSent == 3)
            #expect(pair.server.queuePair.counters.faultsInjected == 3)
            #expect(pair.client.queuePair.counters.receiverNotReadyNaksReceived == 3)
        }
        do {
            let (pair, _) = try self.pair(server: "rnr sends=4 after=1", retry: retry, receives: 2)
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
            #expect(try pair.client.nextSend().status == .success)
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .empty))
            let failed = try pair.client.nextSend()
            #expect(failed.workRequestID == 2 && failed.status == .receiverNotReadyRetryExceeded, "\(failed)")
            #expect(pair.client.queuePair.counters.receiverNotReadyNaksReceived == 4)
            #expect(pair.client.queuePair.state == .error)
        }
    }

    @Test("an injected remote access error fails the chosen request and moves both ends to the error state")
    func accessError() throws {
        let (pair, _) = try self.pair(server: "access-error request=2", receives: 1)
        let source = Buffer(64, fill: 3)
        let sourceRegion = try pair.client.register(source)
        let target = Buffer(64)
        let targetRegion = try pair.server.register(target)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(targetRegion.remote()), local: .single(sourceRegion.element(length: 32))))
        #expect(try pair.client.nextSend().status == .success)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .write(targetRegion.remote(offset: 32)), local: .single(sourceRegion.element(length: 32))))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 3, operation: .send, local: .empty))
        let failed = try pair.client.nextSend()
        #expect(failed.workRequestID == 2 && failed.status == .remoteAccessError && failed.detail == .injectedFault, "\(failed)")
        #expect(try pair.client.nextSend().status == .flushed)
        let targetFlushed = try pair.server.nextReceive()
        #expect(targetFlushed.status == .flushed && targetFlushed.detail == .injectedFault, "\(targetFlushed)")
        #expect(target.bytes.prefix(32).allSatisfy { $0 == 3 } && target.bytes.suffix(32).allSatisfy { $0 == 0 }, "the refused WRITE touched nothing")
        #expect(pair.server.queuePair.counters.remoteAccessErrors == 1 && pair.server.queuePair.counters.faultsInjected == 1)
        #expect(pair.server.queuePair.state == .error && pair.client.queuePair.state == .error)
        withExtendedLifetime((sourceRegion, targetRegion)) {}
    }

    @Test("a queue pair forced into the error state at the Nth post flushes everything outstanding, and its peer sees it go")
    func forcedError() throws {
        let (pair, _) = try self.pair(client: "error post=2", receives: 2)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .empty))
        var completions: [Completion] = []
        completions.append(try pair.client.nextSend())
        completions.append(try pair.client.nextSend())
        let second = completions.first { $0.workRequestID == 2 }
        #expect(second?.status == .flushed && second?.detail == .injectedFault, "\(completions)")
        #expect(pair.client.queuePair.state == .error)
        #expect(pair.client.queuePair.counters.faultsInjected == 1)
        var events: [AsyncEvent] = []
        while let event = pair.client.device.pollAsyncEvent() { events.append(event) }
        #expect(events.contains { $0.kind == .queuePairFatal && $0.detail == .injectedFault }, "\(events)")
        // The peer's receives end as flushed once the connection is gone.
        var peer = try pair.server.nextReceive()
        if peer.status == .success { peer = try pair.server.nextReceive() }
        #expect(peer.status == .flushed, "\(peer)")
    }

    @Test("a peer that vanishes is found out by the survivor's own timeout, in bounded time")
    func vanish() throws {
        let retry = RetryPolicy(responseTimeout: .milliseconds(300))
        let (pair, _) = try self.pair(client: "vanish packet=2", retry: retry, receives: 2)
        let clientInbox = Buffer(64)
        let clientInboxRegion = try pair.client.register(clientInbox)
        _ = try pair.client.queuePair.postReceive(ReceiveWorkRequest(id: 7, local: .single(clientInboxRegion.element())))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
        #expect(try pair.client.nextSend().status == .success)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .empty))
        // The survivor's SEND goes unanswered.
        let start = ContinuousClock().now
        _ = try pair.server.queuePair.postSend(SendWorkRequest(id: 9, operation: .send, local: .empty))
        let lost = try pair.server.nextSend()
        let took = elapsed(since: start)
        #expect(lost.workRequestID == 9 && lost.status == .transportRetryExceeded && lost.detail == .peerTimedOut, "\(lost)")
        #expect(took >= .milliseconds(290) && took < .seconds(3), "detected after \(took)")
        // The vanished side's own request times out the same way.
        let own = try pair.client.nextSend()
        #expect(own.workRequestID == 2 && own.status == .transportRetryExceeded, "\(own)")
        #expect(pair.client.queuePair.counters.faultsInjected == 1)
        #expect(try pair.server.nextReceive().workRequestID == 100)
        withExtendedLifetime(clientInboxRegion) {}
    }

    @Test("rules can name one queue pair; the others are untouched")
    func ruleForOneQueuePair() throws {
        let script = try FaultScript.parse("error post=1 qp=2")
        let device = try TCPDevice(secret: testSecret, faults: script)
        let peer = try TCPDevice(secret: testSecret)
        let first = try connect(client: device, server: peer, host: "127.0.0.1")
        let second = try connect(client: device, server: peer, host: "127.0.0.1")
        _ = try first.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
        _ = try second.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
        let flushed = try second.client.nextSend()
        #expect(second.client.queuePair.number.rawValue == 2)
        #expect(flushed.status == .flushed && flushed.detail == .injectedFault, "\(flushed)")
        #expect(first.client.queuePair.state == .readyToSend)
    }
}

/// Link shaping only slows traffic down: these check lower bounds, which
/// hold on any machine (the achieved figures are fabric-perf's business).
@Suite("link shaping (tcp)")
struct LinkShapingTests {
    @Test("a shaped link carries no more than its rate, and adds its latency each way")
    func shapedLink() throws {
        let link = try LinkShape.parse("rate=100Mbit/s,latency=20ms,burst=64K")
        let pair = try connect(
            client: TCPDevice(secret: testSecret, link: link), server: TCPDevice(secret: testSecret, link: link), host: "127.0.0.1")
        #expect(pair.client.device.link == link)
        let size = 1 << 20
        let source = Buffer(size)
        source.fillPattern(seed: 9)
        let sourceRegion = try pair.client.register(source)
        let target = Buffer(size)
        let targetRegion = try pair.server.register(target)
        // 1 MiB at 100 Mbit/s is 84 ms (less the 64 KiB burst), plus 20 ms
        // for the WRITE and 20 ms for its acknowledgement.
        let start = ContinuousClock().now
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(targetRegion.remote()), local: .single(sourceRegion.element())))
        let written = try pair.client.nextSend()
        let took = ContinuousClock().now - start
        #expect(written.status == .success)
        #expect(target.matchesPattern(seed: 9))
        #expect(took >= .milliseconds(110), "took \(took)")
        // A READ of 8 bytes: 20 ms there, 20 ms back.
        let readStart = ContinuousClock().now
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .read(targetRegion.remote()), local: .single(sourceRegion.element(length: 8))))
        #expect(try pair.client.nextSend().status == .success)
        let readTook = ContinuousClock().now - readStart
        #expect(readTook >= .milliseconds(39), "took \(readTook)")
        withExtendedLifetime((sourceRegion, targetRegion)) {}
    }

    @Test("on a shaped link, blocking waits hold its latency too: the sleepers wake for the held frames")
    func shapedLinkBlocking() throws {
        // Long enough to tell from a sleep that ignored the hold, short
        // enough that a millisecond would show (docs/emulation.md).
        let link = try LinkShape.parse("latency=300us")
        let pair = try connect(
            client: TCPDevice(secret: testSecret, link: link), server: TCPDevice(secret: testSecret, link: link), host: "127.0.0.1")
        let source = Buffer(64)
        source.fillPattern(seed: 3)
        let sourceRegion = try pair.client.register(source)
        let target = Buffer(64)
        let targetRegion = try pair.server.register(target)
        // Nobody polls: the client sleeps in `wait` (it must wake to let its
        // WRITE leave) and the server's progress thread serves the WRITE
        // (it must wake to let the acknowledgement leave), 300 us each way.
        for id in 1...5 {
            let start = ContinuousClock().now
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(id), operation: .write(targetRegion.remote()), local: .single(sourceRegion.element())))
            let written = try #require(try pair.client.sendCQ.next(timeout: .seconds(20)), "no completion for WRITE \(id) within 20 s")
            let took = ContinuousClock().now - start
            #expect(written.status == .success)
            #expect(written.workRequestID == UInt64(id))
            #expect(took >= .microseconds(600), "WRITE \(id) took \(took)")
        }
        #expect(target.matchesPattern(seed: 3))
        withExtendedLifetime((sourceRegion, targetRegion)) {}
    }
}
