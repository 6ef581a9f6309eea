@testable import FabricTCP
import FabricCore
import FabricTestSupport
import Testing

@Suite("reading a large SEND ahead into its receive")
struct ReadAheadTests {
    /// Large SENDs one at a time arm the read ahead; a WRITE after them is
    /// read ahead into a receive by mistake; two shorter SENDs posted
    /// together are read ahead with part of the next frame. Every byte
    /// must still land where it belongs, and the counters must show that
    /// each way was taken.
    @Test("large SENDs, a WRITE among them and SENDs shorter than predicted all land intact")
    func mixedStream() throws {
        let pair = try connectedPair(TCPOpener(), limits: QueuePairLimits(sendQueueDepth: 16, receiveQueueDepth: 16))
        let receiveSize = 16 << 10
        let receives = Buffer(receiveSize * 10)
        let receiveRegion = try pair.server.register(receives)
        for id in 0..<9 {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: UInt64(id), local: .single(receiveRegion.element(offset: id * receiveSize, length: receiveSize))))
        }
        let target = Buffer(8 << 10)
        let targetRegion = try pair.server.register(target)
        let sources = (1...10).map { seed -> Buffer in
            let buffer = Buffer(8 << 10)
            buffer.fillPattern(seed: UInt8(seed))
            return buffer
        }
        let sourceRegions = try sources.map { try pair.client.register($0) }
        func send(_ seed: Int, length: Int = 8 << 10) throws -> SendWorkRequest {
            SendWorkRequest(id: UInt64(seed), operation: .send, local: .single(try sourceRegions[seed - 1].element(offset: 0, length: length)))
        }
        var receiveID = 0
        func expectReceived(_ seed: Int, length: Int = 8 << 10) throws {
            let completion = try pair.server.nextReceive()
            #expect(completion.status == .success && completion.workRequestID == UInt64(receiveID) && completion.byteLength == UInt32(length), "\(completion)")
            #expect(receives.matchesPattern(seed: UInt8(seed), count: length, offset: receiveID * receiveSize), "SEND \(seed)")
            receiveID += 1
        }
        // One at a time: each frame arrives alone, after the receiver read
        // the one before.
        for seed in 1...4 {
            _ = try pair.client.queuePair.postSend(try send(seed))
            try expectReceived(seed)
            #expect(try pair.client.nextSend().status == .success)
        }
        let write = SendWorkRequest(
            id: 5, operation: .write(targetRegion.remote()), local: .single(try sourceRegions[4].element()))
        _ = try pair.client.queuePair.postSend(write)
        #expect(try pair.client.nextSend().status == .success)
        #expect(target.matchesPattern(seed: 5))
        for seed in 6...7 {
            _ = try pair.client.queuePair.postSend(try send(seed))
            try expectReceived(seed)
            #expect(try pair.client.nextSend().status == .success)
        }
        // Two shorter SENDs in one list: the read ahead asks for 8 KiB and
        // gets the first whole and the start of the second.
        let shorter = [try send(8, length: 5 << 10), try send(9, length: 6 << 10)]
        #expect(try shorter.withUnsafeBufferPointer { try pair.client.queuePair.postSend($0) } == 2)
        try expectReceived(8, length: 5 << 10)
        try expectReceived(9, length: 6 << 10)
        for _ in 0..<2 { #expect(try pair.client.nextSend().status == .success) }

        let server = try #require(pair.server.queuePair as TCPQueuePair?)
        let readAhead = server.engine.readAhead
        #expect(readAhead.hits >= 3, "\(readAhead)")
        #expect(readAhead.misses >= 1, "\(readAhead)")
    }
}
