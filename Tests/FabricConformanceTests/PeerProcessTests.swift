import Fabric
import FabricTestSupport
import FabricSupport
import Foundation
import Glibc
import Testing

/// Faults of a peer that lives in a process of its own
/// (Sources/fabric-test-peer): killed with SIGKILL in the middle of
/// transfers, stopped with SIGSTOP, stopped and resumed. Every outstanding
/// request must end, with an error, within a bound; a peer that resumes in
/// time must leave no trace. tcp backend (the capability
/// `oneSidedProgress` says a card would keep serving a stopped process).
@Suite("a peer process killed or stopped (tcp)", .serialized)
struct PeerProcessTests {
    /// The peer process, connected, and where its memory is.
    final class Peer {
        let processID: pid_t
        let side: Side<TCPDevice>
        let remote: RemoteMemory
        let length: Int

        /// `launcher` runs the helper somewhere else (`ip netns exec B`),
        /// from where it reaches this process at `host`.
        init(retry: RetryPolicy, limits: QueuePairLimits = QueuePairLimits(), host: String = "127.0.0.1", launcher: [String] = []) throws {
            let device = try TCPDevice(secret: testSecret)
            side = try Side(device)
            let listener = try device.listen(on: Endpoint(host: host, port: 0), backlog: 1)
            defer { listener.close() }
            let command = launcher + [Self.helper, host, String(listener.endpoint.port)]
            let child = try PeerProcesses.spawn(
                command[0], Array(command.dropFirst()),
                environment: ["FABRIC_JOB_SECRET=\(String(decoding: testSecret, as: UTF8.self))"])
            processID = child
            // deinit does not run if the set-up fails half-way: end the child here then.
            var ready = false
            defer {
                if !ready { PeerProcesses.end(child) }
            }
            guard let request = try listener.next(timeout: .seconds(20)) else { throw TestFailure("the peer process did not connect") }
            let inbox = Buffer(4096)
            let inboxRegion = try side.register(inbox)
            side.keepAlive += [inbox, inboxRegion]
            side.queuePair = try request.accept(side.setup(limits: limits, retry: retry), privateData: []) { (qp) throws(FabricError) in
                _ = try qp.postReceive(ReceiveWorkRequest(id: 1, local: .single(inboxRegion.element())))
            }
            let announcement = try side.nextReceive()
            guard announcement.status == .success, announcement.byteLength == 16 else { throw TestFailure("bad announcement \(announcement)") }
            remote = RemoteMemory(
                address: UInt64(littleEndian: inbox.pointer.loadUnaligned(as: UInt64.self)),
                key: RemoteKey(rawValue: UInt32(littleEndian: inbox.pointer.loadUnaligned(fromByteOffset: 8, as: UInt32.self))))
            length = Int(UInt32(littleEndian: inbox.pointer.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
            ready = true
        }

        deinit { PeerProcesses.end(processID) }

        /// The helper sits beside the test bundle in the build directory.
        static var helper: String { PeerProcesses.executable(named: "fabric-test-peer") }

        func signal(_ number: Int32) { kill(processID, number) }
    }

    /// Collects completions until `count` arrived or `limit` passed.
    private func collect(_ side: Side<TCPDevice>, _ count: Int, within limit: Duration) -> [Completion] {
        var completions: [Completion] = []
        let deadline = ContinuousClock().now + limit
        while completions.count < count && ContinuousClock().now < deadline {
            if let completion = side.sendCQ.poll() { completions.append(completion) }
        }
        return completions
    }

    @Test("SIGKILL in the middle of transfers: every outstanding request ends with an error, at once")
    func killed() throws {
        let peer = try Peer(retry: RetryPolicy(responseTimeout: .seconds(5)))
        let source = Buffer(1 << 20, fill: 0x3C)
        let sourceRegion = try peer.side.register(source)
        // A stream of WRITEs and READs: more than the socket holds.
        let count = 64
        for i in 0..<count {
            let operation: SendOperation = i % 4 == 3 ? .read(peer.remote) : .write(peer.remote)
            _ = try peer.side.queuePair.postSend(SendWorkRequest(id: UInt64(i), operation: operation, local: .single(sourceRegion.element())))
        }
        var completions = collect(peer.side, 2, within: .seconds(20))
        let start = ContinuousClock().now
        peer.signal(SIGKILL)
        completions += collect(peer.side, count - completions.count, within: .seconds(10))
        let took = ContinuousClock().now - start
        #expect(completions.count == count, "\(completions.count) of \(count) completed; the rest hang")
        let failed = completions.filter { $0.status != .success }
        #expect(!failed.isEmpty)
        #expect(failed.allSatisfy { [.flushed, .transportRetryExceeded].contains($0.status) }, "\(failed.prefix(3))")
        #expect(took < .seconds(2), "detected after \(took)")
        print("peer killed: \(completions.count - failed.count) done, \(failed.count) failed within \(took)")
        #expect(peer.side.queuePair.state == .error)
        withExtendedLifetime(sourceRegion) {}
    }

    @Test("SIGSTOP: a READ to the stopped peer fails with transport retry exceeded within the response timeout")
    func stopped() throws {
        let peer = try Peer(retry: RetryPolicy(responseTimeout: .milliseconds(800)))
        let local = Buffer(4096)
        let localRegion = try peer.side.register(local)
        peer.signal(SIGSTOP)
        defer { peer.signal(SIGCONT) }
        usleep(50_000)
        let start = ContinuousClock().now
        _ = try peer.side.queuePair.postSend(SendWorkRequest(id: 1, operation: .read(peer.remote), local: .single(localRegion.element())))
        let completion = try peer.side.nextSend()
        let took = ContinuousClock().now - start
        #expect(completion.status == .transportRetryExceeded && completion.detail == .peerTimedOut, "\(completion)")
        #expect(took >= .milliseconds(790) && took < .seconds(3), "detected after \(took)")
        print("peer stopped: detected after \(took) (response timeout 800 ms)")
        withExtendedLifetime(localRegion) {}
    }

    @Test("SIGSTOP then SIGCONT within the response timeout: the READ completes as if nothing happened")
    func stoppedAndResumed() throws {
        let peer = try Peer(retry: RetryPolicy(responseTimeout: .seconds(5)))
        let local = Buffer(4096)
        let localRegion = try peer.side.register(local)
        let source = Buffer(4096, fill: 0x77)
        let sourceRegion = try peer.side.register(source)
        _ = try peer.side.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(peer.remote), local: .single(sourceRegion.element())))
        #expect(try peer.side.nextSend().status == .success)
        peer.signal(SIGSTOP)
        usleep(50_000)
        _ = try peer.side.queuePair.postSend(SendWorkRequest(id: 2, operation: .read(peer.remote), local: .single(localRegion.element())))
        #expect(peer.side.nothingCompletes(peer.side.sendCQ, for: .milliseconds(500)) == nil, "a stopped peer answered")
        peer.signal(SIGCONT)
        let completion = try peer.side.nextSend()
        #expect(completion.status == .success, "\(completion)")
        #expect(local.bytes.allSatisfy { $0 == 0x77 })
        #expect(peer.side.queuePair.state == .readyToSend)
        withExtendedLifetime((localRegion, sourceRegion)) {}
    }

    @Test("a receiver that stops reading: the send queue fills and refuses more, nothing piles up in the sender, and all completes once it reads again")
    func backpressure() throws {
        let depth = 32
        let peer = try Peer(retry: RetryPolicy(responseTimeout: .seconds(10)), limits: QueuePairLimits(sendQueueDepth: depth))
        let source = Buffer(1 << 20, fill: 0x5A)
        let sourceRegion = try peer.side.register(source)
        peer.signal(SIGSTOP)
        let residentBefore = try ResidentMemory.bytes()
        // Post 1 MiB WRITEs until the queue refuses: the stopped peer reads
        // nothing, so the sockets fill and nothing completes.
        var posted = 0
        while posted < 10 * depth {
            let result = try peer.side.queuePair.postSend(SendWorkRequest(id: UInt64(posted), operation: .write(peer.remote), local: .single(sourceRegion.element())))
            if result == .wouldBlock { break }
            posted += 1
        }
        #expect(posted == depth, "the queue took \(posted) requests; its depth is \(depth)")
        // The bytes handed to the kernel stop growing: bounded by the sockets.
        _ = peer.side.nothingCompletes(peer.side.sendCQ, for: .milliseconds(300))
        let sentEarly = peer.side.queuePair.counters.bytesSent
        #expect(peer.side.nothingCompletes(peer.side.sendCQ, for: .milliseconds(300)) == nil)
        let sentLate = peer.side.queuePair.counters.bytesSent
        let residentDuring = try ResidentMemory.bytes()
        #expect(sentLate == sentEarly, "still sending to a stopped peer: \(sentEarly) then \(sentLate) bytes")
        #expect(sentLate < posted << 20, "all \(posted) MiB left although nobody reads")
        print("backpressure: \(posted) requests queued (the depth), \(sentLate >> 10) KiB in the sockets, resident memory \(residentBefore >> 20) -> \(residentDuring >> 20) MiB")
        peer.signal(SIGCONT)
        var completions: [Completion] = []
        let deadline = ContinuousClock().now + .seconds(20)
        while completions.count < posted && ContinuousClock().now < deadline {
            if let completion = peer.side.sendCQ.poll() { completions.append(completion) }
        }
        #expect(completions.count == posted && completions.allSatisfy { $0.status == .success }, "\(completions.count) of \(posted)")
        withExtendedLifetime(sourceRegion) {}
    }

}
