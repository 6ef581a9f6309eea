@testable import FabricTCP
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Testing

@Suite("posting a batch")
struct PostBatchTests {
    /// Socket calls that sent something: what a batch should need one of.
    private func sendingCalls(_ queuePair: TCPQueuePair) -> Int {
        queuePair.counters.sendCalls + queuePair.counters.sendmsgCalls
    }

    @Test("a list of WRITEs leaves in one sendmsg, and every one lands and completes")
    func oneCallForTheList() throws {
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TestClient()
        let qp = try client.connect(to: server, limits: QueuePairLimits(sendQueueDepth: 64, maxInlineData: 64))
        let target = server.receiveRegion.remote()
        for index in 0..<16 {
            (client.memory + index * 64).initializeMemory(as: UInt8.self, repeating: UInt8(index + 1), count: 64)
        }
        let requests = try (0..<16).map { index in
            SendWorkRequest(
                id: UInt64(index), operation: .write(RemoteMemory(address: target.address + UInt64(index * 64), key: target.key)),
                local: .single(try client.region.element(offset: index * 64, length: 64)), flags: index == 15 ? [.signaled] : [])
        }
        let callsBefore = sendingCalls(qp)
        let posted = try requests.withUnsafeBufferPointer { try qp.postSend($0) }
        #expect(posted == 16)
        #expect(sendingCalls(qp) - callsBefore == 1, "\(qp.counters)")
        let completion = try #require(client.next())
        #expect(completion.status == .success && completion.workRequestID == 15)
        // In order on one connection: the last WRITE's completion means
        // every WRITE before it was placed.
        for index in 0..<16 {
            let bytes = UnsafeRawBufferPointer(start: server.receiveBuffer + index * 64, count: 64)
            #expect(bytes.allSatisfy { $0 == UInt8(index + 1) }, "WRITE \(index)")
        }
    }

    @Test("a structurally wrong request refuses the whole list: nothing is posted")
    func wrongRequestRefusesTheList() throws {
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TestClient()
        let qp = try client.connect(to: server, limits: QueuePairLimits(maxSendScatterEntries: 1))
        let target = server.receiveRegion.remote()
        let good = SendWorkRequest(id: 1, operation: .write(target), local: .single(try client.region.element(offset: 0, length: 8)), flags: [.signaled])
        let twoPieces = ScatterList.multiple([try client.region.element(offset: 0, length: 8), try client.region.element(offset: 8, length: 8)])
        let tooManyPieces = SendWorkRequest(id: 2, operation: .write(target), local: twoPieces, flags: [.signaled])
        let callsBefore = sendingCalls(qp)
        do {
            _ = try [good, tooManyPieces, good].withUnsafeBufferPointer { try qp.postSend($0) }
            Issue.record("a request with two scatter entries on a queue pair that allows one was posted")
        } catch let error as FabricError {
            #expect(error.workRequestRule == .tooManyScatterEntries, "\(error)")
        }
        #expect(sendingCalls(qp) == callsBefore)
        let clock = ContinuousClock()
        let until = clock.now + .milliseconds(100)
        while clock.now < until { #expect(client.cq.poll() == nil) }
    }

    @Test("a list longer than the free send queue posts what fits and says how many")
    func listLongerThanTheQueue() throws {
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TestClient()
        let qp = try client.connect(to: server, limits: QueuePairLimits(sendQueueDepth: 4))
        let target = server.receiveRegion.remote()
        let requests = try (0..<10).map { index in
            SendWorkRequest(id: UInt64(index), operation: .write(target), local: .single(try client.region.element(offset: 0, length: 8)), flags: [.signaled])
        }
        let posted = try requests.withUnsafeBufferPointer { try qp.postSend($0) }
        #expect(posted == 4)
        var completed: [UInt64] = []
        while completed.count < posted, let completion = client.next() {
            #expect(completion.status == .success)
            completed.append(completion.workRequestID)
        }
        #expect(completed == [0, 1, 2, 3])
    }

    @Test("posts made while another thread holds the queue pair leave together: the last poster sends them all in one call")
    func convoyOfPosters() throws {
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TestClient()
        let qp = try client.connect(to: server, limits: QueuePairLimits(sendQueueDepth: 16, maxInlineData: 64))
        let target = server.receiveRegion.remote()
        let requests = try (0..<2).map { index in
            SendWorkRequest(
                id: UInt64(index), operation: .write(RemoteMemory(address: target.address + UInt64(index * 8), key: target.key)),
                local: .single(try client.region.element(offset: index * 8, length: 8)), flags: [.signaled])
        }
        // Without the progress thread, which could take the engine between
        // the two posters and send the first one's frame on its own.
        client.device.core.stop()
        let callsBefore = sendingCalls(qp)
        // Hold the engine as a sending thread would, until both posters
        // (threads of their own: a busy dispatch pool may start them late)
        // are waiting for it.
        var posters: [SystemThread] = []
        qp.engine.core.withLock { _ in
            for request in requests {
                if case .success(let poster) = SystemThread.start({ _ = try? qp.postSend(request) }) { posters.append(poster) }
            }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(20)
            while qp.engine.postersWaiting.load(ordering: .relaxed) < 2 && clock.now < deadline { sched_yield() }
        }
        #expect(posters.count == 2, "a poster thread did not start")
        for poster in posters { poster.join() }
        #expect(sendingCalls(qp) - callsBefore == 1, "\(qp.counters)")
        for _ in 0..<2 { #expect(client.next()?.status == .success) }
    }
}
