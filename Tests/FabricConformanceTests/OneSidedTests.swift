import Fabric
import FabricTestSupport
import Testing

@Suite("one-sided operations")
struct OneSidedTests {
    @Test("WRITE places data without the target polling", arguments: ConformanceBackend.available, [1, 4096, 1 << 20, 64 << 20])
    func write(_ backend: ConformanceBackend, size: Int) throws {
        try write(on: backend.opener, size: size)
    }

    private func write<Backend: BackendOpener>(on backend: Backend, size: Int) throws {
        let pair = try connectedPair(backend)
        if size > pair.client.device.capabilities.maxMessageSize {
            try expectRefusedAsTooLong(pair, size: size) { .write($0) }
            return
        }
        let target = Buffer(size)
        let targetRegion = try pair.server.register(target)
        let source = Buffer(size)
        source.fillPattern(seed: 5)
        let sourceRegion = try pair.client.register(source)
        // The server never polls: its progress thread is the card.
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(targetRegion.remote()), local: .single(sourceRegion.element())))
        let completion = try pair.client.nextSend()
        #expect(completion.status == .success, "\(completion)")
        #expect(completion.opcode == .write && completion.byteLength == UInt32(size))
        #expect(target.matchesPattern(seed: 5))
    }

    /// A device that carries less than `size` (rxe: 8 MiB) refuses the post
    /// and says so.
    private func expectRefusedAsTooLong<D: FabricDevice>(
        _ pair: Connection<D>, size: Int, _ operation: (RemoteMemory) -> SendOperation
    ) throws {
        let buffer = Buffer(size)
        let region = try pair.client.register(buffer)
        #expect {
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: operation(region.remote()), local: .single(region.element())))
        } throws: { error in
            (error as? FabricError)?.workRequestRule == .messageTooLarge
        }
    }

    @Test("READ fetches data without the target polling", arguments: ConformanceBackend.available, [1, 8, 65_536, 64 << 20])
    func read(_ backend: ConformanceBackend, size: Int) throws {
        try read(on: backend.opener, size: size)
    }

    private func read<Backend: BackendOpener>(on backend: Backend, size: Int) throws {
        let pair = try connectedPair(backend)
        if size > pair.client.device.capabilities.maxMessageSize {
            try expectRefusedAsTooLong(pair, size: size) { .read($0) }
            return
        }
        let remote = Buffer(size)
        remote.fillPattern(seed: 11)
        let remoteRegion = try pair.server.register(remote)
        let local = Buffer(size)
        let localRegion = try pair.client.register(local)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .read(remoteRegion.remote()), local: .single(localRegion.element())))
        let completion = try pair.client.nextSend()
        #expect(completion.status == .success, "\(completion)")
        #expect(completion.opcode == .read && completion.byteLength == UInt32(size))
        #expect(local.matchesPattern(seed: 11))
    }

    @Test("READ into a scatter list", arguments: ConformanceBackend.available)
    func readScatter(_ backend: ConformanceBackend) throws {
        try readScatter(on: backend.opener)
    }

    private func readScatter<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let remote = Buffer(300)
        remote.fillPattern(seed: 2)
        let remoteRegion = try pair.server.register(remote)
        let local = Buffer(400)
        let localRegion = try pair.client.register(local)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(
            id: 3, operation: .read(remoteRegion.remote(offset: 0)),
            local: .multiple([localRegion.element(offset: 200, length: 100), localRegion.element(offset: 0, length: 200)])))
        #expect(try pair.client.nextSend().status == .success)
        for i in 0..<300 {
            let expected = remote.pointer.load(fromByteOffset: i, as: UInt8.self)
            let actual = i < 100 ? local.pointer.load(fromByteOffset: 200 + i, as: UInt8.self) : local.pointer.load(fromByteOffset: i - 100, as: UInt8.self)
            #expect(expected == actual)
            if expected != actual { break }
        }
    }

    @Test("fetch-and-add and compare-and-swap", arguments: ConformanceBackend.available)
    func atomics(_ backend: ConformanceBackend) throws {
        try atomics(on: backend.opener)
    }

    private func atomics<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let remote = Buffer(64)
        remote.setWord(100, 8)
        let remoteRegion = try pair.server.register(remote)
        let local = Buffer(64)
        let localRegion = try pair.client.register(local)
        let qp = pair.client.queuePair!
        _ = try qp.postSend(SendWorkRequest(id: 1, operation: .fetchAndAdd(remoteRegion.remote(offset: 8), add: 5), local: .single(localRegion.element(offset: 0, length: 8))))
        var completion = try pair.client.nextSend("the first fetch-and-add")
        #expect(completion.status == .success && completion.opcode == .fetchAndAdd && completion.byteLength == 8)
        #expect(local.word(0) == 100 && remote.word(8) == 105)
        // A failing compare leaves the word alone and returns it.
        _ = try qp.postSend(SendWorkRequest(id: 2, operation: .compareAndSwap(remoteRegion.remote(offset: 8), compare: 1, swap: 7), local: .single(localRegion.element(offset: 8, length: 8))))
        completion = try pair.client.nextSend("the failing compare-and-swap")
        #expect(completion.status == .success && completion.opcode == .compareAndSwap)
        #expect(local.word(8) == 105 && remote.word(8) == 105)
        _ = try qp.postSend(SendWorkRequest(id: 3, operation: .compareAndSwap(remoteRegion.remote(offset: 8), compare: 105, swap: 7), local: .single(localRegion.element(offset: 16, length: 8))))
        completion = try pair.client.nextSend("the succeeding compare-and-swap")
        #expect(completion.status == .success)
        #expect(local.word(16) == 105 && remote.word(8) == 7)
        // Many concurrent adds from the client all land exactly once.
        for i in 0..<200 {
            while try qp.postSend(SendWorkRequest(id: UInt64(100 + i), operation: .fetchAndAdd(remoteRegion.remote(offset: 8), add: 1), local: .single(localRegion.element(offset: 24, length: 8)), flags: [])) == .wouldBlock {
                _ = pair.client.sendCQ.poll()
            }
        }
        _ = try qp.postSend(SendWorkRequest(id: 999, operation: .read(remoteRegion.remote(offset: 8)), local: .single(localRegion.element(offset: 32, length: 8))))
        completion = try pair.client.nextSend("the READ behind 200 unsignalled fetch-and-adds")
        #expect(completion.workRequestID == 999 && completion.status == .success)
        #expect(local.word(32) == 207)
    }

    @Test("WRITE with immediate consumes a receive and tells its length", arguments: ConformanceBackend.available)
    func writeWithImmediate(_ backend: ConformanceBackend) throws {
        try writeWithImmediate(on: backend.opener)
    }

    private func writeWithImmediate<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(4096)
        let targetRegion = try pair.server.register(target)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 42, local: .empty))
        let source = Buffer(1000)
        source.fillPattern(seed: 1)
        let sourceRegion = try pair.client.register(source)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .writeWithImmediate(targetRegion.remote(offset: 96), immediate: 77), local: .single(sourceRegion.element())))
        let received = try pair.server.nextReceive()
        #expect(received.status == .success && received.opcode == .receiveWithImmediate)
        #expect(received.workRequestID == 42 && received.immediate == 77 && received.byteLength == 1000)
        #expect(target.matchesPattern(seed: 1, count: 1000, offset: 96))
        #expect(try pair.client.nextSend().status == .success)
    }

    @Test("a receive completion implies earlier WRITEs are visible", arguments: ConformanceBackend.available)
    func writesVisibleBeforeSend(_ backend: ConformanceBackend) throws {
        try writesVisibleBeforeSend(on: backend.opener)
    }

    private func writesVisibleBeforeSend<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend, limits: QueuePairLimits(sendQueueDepth: 256))
        let target = Buffer(1 << 20)
        let targetRegion = try pair.server.register(target)
        let flag = Buffer(8)
        let flagRegion = try pair.server.register(flag)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 1, local: .single(flagRegion.element())))
        let source = Buffer(1 << 20)
        source.fillPattern(seed: 77)
        let sourceRegion = try pair.client.register(source)
        // 16 unsignalled writes of 64 KiB, then a send.
        for i in 0..<16 {
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(i), operation: .write(targetRegion.remote(offset: i << 16)), local: .single(sourceRegion.element(offset: i << 16, length: 1 << 16)), flags: []))
        }
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 100, operation: .send, local: .empty))
        let received = try pair.server.nextReceive()
        #expect(received.status == .success)
        #expect(target.matchesPattern(seed: 77))
        let sent = try pair.client.nextSend()
        #expect(sent.workRequestID == 100 && sent.status == .success)
    }

    @Test("a fenced request waits for an earlier READ", arguments: ConformanceBackend.available)
    func fence(_ backend: ConformanceBackend) throws {
        try fence(on: backend.opener)
    }

    private func fence<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let remote = Buffer(8)
        remote.setWord(1)
        let remoteRegion = try pair.server.register(remote)
        let local = Buffer(16)
        let localRegion = try pair.client.register(local)
        local.setWord(2, 8)
        // READ the word, then a fenced WRITE over it: the READ must see the old value.
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .read(remoteRegion.remote()), local: .single(localRegion.element(offset: 0, length: 8))))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .write(remoteRegion.remote()), local: .single(localRegion.element(offset: 8, length: 8)), flags: [.signaled, .fence]))
        let first = try pair.client.nextSend()
        let second = try pair.client.nextSend()
        #expect(first.workRequestID == 1 && first.status == .success)
        #expect(second.workRequestID == 2 && second.status == .success)
        #expect(local.word(0) == 1)
        #expect(remote.word() == 2)
    }

    @Test("many queue pairs share completion queues", arguments: ConformanceBackend.available)
    func manyQueuePairs(_ backend: ConformanceBackend) throws {
        try manyQueuePairs(on: backend.opener)
    }

    private func manyQueuePairs<Backend: BackendOpener>(on backend: Backend) throws {
        let clientDevice = try backend.open()
        let serverDevice = try backend.open()
        let target = Buffer(64 * 4096)
        var pairs: [Connection<Backend.Device>] = []
        for _ in 0..<32 {
            pairs.append(try connect(client: clientDevice, server: serverDevice, host: backend.host))
        }
        var regions: [Backend.Device.MemoryRegion] = []
        for (index, pair) in pairs.enumerated() {
            let region = try pair.server.register(target)
            regions.append(region)
            let source = Buffer(4096)
            source.fillPattern(seed: UInt8(index))
            let sourceRegion = try pair.client.register(source)
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(index), operation: .write(region.remote(offset: index * 4096)), local: .single(sourceRegion.element())))
            #expect(try pair.client.nextSend().status == .success)
        }
        for index in 0..<32 {
            #expect(target.matchesPattern(seed: UInt8(index), count: 4096, offset: index * 4096) == true)
        }
    }
}

@Suite("batched posting")
struct BatchTests {
    @Test("a batch posts in order; a full queue takes what fits; a bad request is refused", arguments: ConformanceBackend.available)
    func batch(_ backend: ConformanceBackend) throws {
        try batch(on: backend.opener)
    }

    private func batch<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(64 * 8)
        let targetRegion = try pair.server.register(target)
        let source = Buffer(64 * 8)
        source.fillPattern(seed: 9)
        let sourceRegion = try pair.client.register(source)
        // Eight WRITEs, only the last signalled: its completion implies the others.
        let writes = try (0..<8).map { index in
            SendWorkRequest(
                id: UInt64(index), operation: .write(targetRegion.remote(offset: index * 64)),
                local: .single(try sourceRegion.element(offset: index * 64, length: 64)), flags: index == 7 ? [.signaled] : [])
        }
        #expect(try writes.withUnsafeBufferPointer { try pair.client.queuePair.postSend($0) } == 8)
        let completion = try pair.client.nextSend()
        #expect(completion.workRequestID == 7 && completion.status == .success, "\(completion)")
        #expect(target.matchesPattern(seed: 9))

        // A request the queue pair cannot take (too many scatter entries) is refused.
        let element = try sourceRegion.element(offset: 0, length: 8)
        let bad = [writes[0], SendWorkRequest(id: 99, operation: .send, local: .multiple(Array(repeating: element, count: 64)))]
        #expect(throws: FabricError.self) { _ = try bad.withUnsafeBufferPointer { try pair.client.queuePair.postSend($0) } }

        // A queue of 4 with sends nobody receives (retried forever) takes 4 of 6.
        let blocked = try connectedPair(backend, limits: QueuePairLimits(sendQueueDepth: 4), retry: RetryPolicy(receiverNotReadyRetries: nil))
        let sends = (0..<6).map { SendWorkRequest(id: UInt64($0), operation: .send, local: .empty) }
        #expect(try sends.withUnsafeBufferPointer { try blocked.client.queuePair.postSend($0) } == 4)
    }
}
