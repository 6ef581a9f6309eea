import Fabric
import FabricTestSupport
import Testing

@Suite("send and receive")
struct TwoSidedTests {
    @Test("a send lands in the posted receive", arguments: ConformanceBackend.available)
    func sendReceive(_ backend: ConformanceBackend) throws {
        try sendReceive(on: backend.opener)
    }

    private func sendReceive<Backend: BackendOpener>(on backend: Backend) throws {
        let receiveBuffer = Buffer(64)
        nonisolated(unsafe) var receiveRegion: Backend.Device.MemoryRegion?
        let pair = try connectedPair(backend) { qp in
            _ = qp
        }
        receiveRegion = try pair.server.register(receiveBuffer)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 7, local: .single(receiveRegion!.element())))
        let sendBuffer = Buffer(11)
        sendBuffer.fillPattern(seed: 3)
        let sendRegion = try pair.client.register(sendBuffer)
        #expect(try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(sendRegion.element()))) == .posted)
        let received = try pair.server.nextReceive()
        #expect(received.status == .success)
        #expect(received.workRequestID == 7)
        #expect(received.opcode == .receive)
        #expect(received.byteLength == 11)
        #expect(!received.hasImmediate)
        #expect(receiveBuffer.matchesPattern(seed: 3, count: 11))
        let sent = try pair.client.nextSend()
        #expect(sent.status == .success)
        #expect(sent.workRequestID == 1)
        #expect(sent.opcode == .send)
    }

    @Test("send with immediate, inline send and a zero-length send", arguments: ConformanceBackend.available)
    func immediateInlineAndEmpty(_ backend: ConformanceBackend) throws {
        try immediateInlineAndEmpty(on: backend.opener)
    }

    private func immediateInlineAndEmpty<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let receiveBuffer = Buffer(256)
        let region = try pair.server.register(receiveBuffer)
        for id in 0..<3 {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: UInt64(id), local: .single(region.element(offset: id * 64, length: 64))))
        }
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 10, operation: .sendWithImmediate(0xBEEF), local: .empty))
        var scratch: UInt64 = 0x1122_3344_5566_7788
        try withUnsafeBytes(of: &scratch) { raw in
            let element = try ScatterGatherElement(pointer: raw.baseAddress!, length: 8, localKey: LocalKey(rawValue: 0))
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 11, operation: .send, local: .single(element), flags: [.signaled, .inline]))
        }
        scratch = 0  // inline: the buffer may change at once
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 12, operation: .send, local: .empty))

        let first = try pair.server.nextReceive()
        #expect(first.workRequestID == 0 && first.hasImmediate && first.immediate == 0xBEEF && first.byteLength == 0)
        let second = try pair.server.nextReceive()
        #expect(second.workRequestID == 1 && second.byteLength == 8 && !second.hasImmediate)
        #expect(receiveBuffer.word(64) == 0x1122_3344_5566_7788)
        let third = try pair.server.nextReceive()
        #expect(third.workRequestID == 2 && third.byteLength == 0 && third.status == .success)
        for id in 10...12 {
            let completion = try pair.client.nextSend()
            #expect(completion.workRequestID == UInt64(id) && completion.status == .success)
        }
    }

    @Test("scatter and gather lists", arguments: ConformanceBackend.available)
    func scatterGather(_ backend: ConformanceBackend) throws {
        try scatterGather(on: backend.opener)
    }

    private func scatterGather<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(3000)
        let targetRegion = try pair.server.register(target)
        // Receive into two pieces, out of order in memory.
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 1, local: .multiple([
            targetRegion.element(offset: 2000, length: 1000), targetRegion.element(offset: 0, length: 1500),
        ])))
        let source = Buffer(2400)
        source.fillPattern(seed: 9)
        let sourceRegion = try pair.client.register(source)
        // Send from three pieces.
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .multiple([
            sourceRegion.element(offset: 0, length: 100), sourceRegion.element(offset: 100, length: 1200),
            sourceRegion.element(offset: 1300, length: 1100),
        ])))
        let received = try pair.server.nextReceive()
        #expect(received.status == .success && received.byteLength == 2400)
        // The first 1000 bytes went to offset 2000, the next 1400 to offset 0.
        var ok = true
        for i in 0..<2400 {
            let expected = source.pointer.load(fromByteOffset: i, as: UInt8.self)
            let actual = i < 1000 ? target.pointer.load(fromByteOffset: 2000 + i, as: UInt8.self)
                                  : target.pointer.load(fromByteOffset: i - 1000, as: UInt8.self)
            if expected != actual { ok = false; break }
        }
        #expect(ok)
        #expect(try pair.client.nextSend().status == .success)
    }

    @Test("messages of every size class arrive intact", arguments: ConformanceBackend.available, [1, 7, 64, 4095, 4096, 65_536, 1 << 20, 8 << 20])
    func sizes(_ backend: ConformanceBackend, size: Int) throws {
        try sizes(on: backend.opener, size: size)
    }

    private func sizes<Backend: BackendOpener>(on backend: Backend, size: Int) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(size)
        let targetRegion = try pair.server.register(target)
        let source = Buffer(size)
        source.fillPattern(seed: UInt8(size & 0xff))
        let sourceRegion = try pair.client.register(source)
        for round in 0..<3 {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: UInt64(round), local: .single(targetRegion.element())))
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(round), operation: .send, local: .single(sourceRegion.element())))
            let received = try pair.server.nextReceive()
            #expect(received.status == .success && received.byteLength == UInt32(size), "\(received)")
            #expect(try pair.client.nextSend().status == .success)
        }
        #expect(target.matchesPattern(seed: UInt8(size & 0xff)))
    }

    @Test("sends are received in posting order", arguments: ConformanceBackend.available)
    func ordering(_ backend: ConformanceBackend) throws {
        try ordering(on: backend.opener)
    }

    private func ordering<Backend: BackendOpener>(on backend: Backend) throws {
        let count = 500
        let pair = try connectedPair(backend, limits: QueuePairLimits(sendQueueDepth: 64, receiveQueueDepth: 512))
        let target = Buffer(8 * count)
        let targetRegion = try pair.server.register(target)
        for i in 0..<count {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: UInt64(i), local: .single(targetRegion.element(offset: 8 * i, length: 8))))
        }
        let source = Buffer(8 * count)
        for i in 0..<count { source.setWord(UInt64(i), 8 * i) }
        let sourceRegion = try pair.client.register(source)
        var posted = 0
        var sent = 0
        var received = 0
        while received < count || sent < count {
            if posted < count {
                let request = SendWorkRequest(id: UInt64(posted), operation: .send, local: .single(try sourceRegion.element(offset: 8 * posted, length: 8)))
                if try pair.client.queuePair.postSend(request) == .posted { posted += 1 }
            }
            if let completion = pair.client.sendCQ.poll() {
                #expect(completion.status == .success && completion.workRequestID == UInt64(sent))
                sent += 1
            }
            if let completion = pair.server.receiveCQ.poll() {
                #expect(completion.status == .success && completion.workRequestID == UInt64(received))
                received += 1
            }
        }
        for i in 0..<count { #expect(target.word(8 * i) == UInt64(i)) }
    }
}
