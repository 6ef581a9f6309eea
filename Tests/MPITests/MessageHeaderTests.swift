import Testing

@testable import MPI

/// The point-to-point frame header: what is written is read back, and
/// every structural violation is refused with its reason.
struct MessageHeaderTests {
    private func roundTrip(_ header: MessageHeader, frameLength: Int? = nil) throws(ProtocolViolation) -> MessageHeader {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        header.encode(to: buffer)
        return try MessageHeader.decode(buffer, frameLength: frameLength ?? header.encodedSize)
    }

    @Test("every kind survives encoding, fields intact")
    func kinds() throws {
        var eager = MessageHeader(kind: .eager)
        eager.synchronous = true
        eager.credits = 17
        eager.context = 2
        eager.tag = 123_456
        eager.source = 5
        eager.length = 20
        eager.cookie = 0xdead_beef_0000_0001
        #expect(try roundTrip(eager, frameLength: MessageHeader.size + 20) == eager)
        var request = MessageHeader(kind: .rendezvousRequest)
        request.length = 1 << 33
        request.remoteAddress = 0x7fff_0000_1000
        request.remoteKey = 0xabcd
        request.cookie = 9
        #expect(try roundTrip(request) == request)
        for kind in [MessageHeader.Kind.rendezvousDone, .synchronousAcknowledgement, .credit] {
            var answer = MessageHeader(kind: kind)
            answer.cookie = 77
            answer.credits = 3
            #expect(try roundTrip(answer) == answer)
        }
    }

    @Test("violations are refused, each naming what was wrong")
    func violations() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        func refused(_ frameLength: Int, _ expected: String, _ prepare: (UnsafeMutableRawPointer) -> Void) {
            var eager = MessageHeader(kind: .eager)
            eager.length = 8
            eager.encode(to: buffer)
            prepare(buffer)
            #expect(throws: ProtocolViolation.self) { try MessageHeader.decode(buffer, frameLength: frameLength) }
            do {
                _ = try MessageHeader.decode(buffer, frameLength: frameLength)
            } catch {
                #expect(error.description.contains(expected), "\(error.description)")
            }
        }
        refused(20, "shorter than the 32-byte header") { _ in }
        refused(40, "unknown kind 9") { $0.storeBytes(of: 9, as: UInt8.self) }
        refused(40, "unknown flags 0x2") { $0.storeBytes(of: 2, toByteOffset: 1, as: UInt8.self) }
        refused(41, "an eager frame of 41 bytes announcing 8 payload bytes") { _ in }
        refused(40, "a rendezvous request of 40 bytes") { $0.storeBytes(of: MessageHeader.Kind.rendezvousRequest.rawValue, as: UInt8.self) }
        refused(40, "a credit frame of 40 bytes") { $0.storeBytes(of: MessageHeader.Kind.credit.rawValue, as: UInt8.self) }
        refused(32, "marked synchronous") {
            $0.storeBytes(of: MessageHeader.Kind.rendezvousDone.rawValue, as: UInt8.self)
            $0.storeBytes(of: 1, toByteOffset: 1, as: UInt8.self)
        }
    }
}

/// Matching: oldest first, wildcards, contexts kept apart.
struct MatchingQueuesTests {
    private func arrived(_ context: UInt32, _ source: Int, _ tag: Int, _ length: Int) -> MatchingQueues.ArrivedMessage {
        MatchingQueues.ArrivedMessage(context: context, source: source, tag: tag, length: length, peer: source, synchronous: false, cookie: 0, payload: .copied([]))
    }

    @Test("a receive takes the oldest message it accepts; any source and any tag accept all of their communicator only")
    func arrivedOrder() {
        var queues = MatchingQueues()
        queues.arrive(arrived(0, 1, 5, 10))
        queues.arrive(arrived(0, 2, 6, 20))
        queues.arrive(arrived(1, 1, 5, 30))
        queues.arrive(arrived(0, 1, 5, 40))
        #expect(queues.takeArrived(.init(context: 0, source: 1, tag: 5))?.length == 10)
        #expect(queues.peekArrived(.init(context: 0, source: -1, tag: -1))?.length == 20)
        #expect(queues.takeArrived(.init(context: 0, source: -1, tag: 5))?.length == 40)
        #expect(queues.takeArrived(.init(context: 0, source: 1, tag: -1)) == nil)
        #expect(queues.takeArrived(.init(context: 1, source: -1, tag: -1))?.length == 30)
        #expect(queues.takeArrived(.init(context: 0, source: 2, tag: 6))?.length == 20)
        #expect(queues.arrived.isEmpty)
    }

    @Test("a message takes the oldest posted receive that accepts it")
    func postedOrder() {
        var queues = MatchingQueues()
        queues.post(.init(selector: .init(context: 0, source: 3, tag: 1), request: 0))
        queues.post(.init(selector: .init(context: 0, source: -1, tag: 1), request: 1))
        queues.post(.init(selector: .init(context: 0, source: -1, tag: -1), request: 2))
        #expect(queues.takePosted(context: 0, source: 4, tag: 1) == 1)
        #expect(queues.takePosted(context: 0, source: 3, tag: 1) == 0)
        #expect(queues.takePosted(context: 1, source: 3, tag: 1) == nil)
        #expect(queues.takePosted(context: 0, source: 3, tag: 9) == 2)
        #expect(queues.posted.isEmpty)
    }

    @Test("a failed peer's rendezvous requests are dropped; its eager messages stay receivable")
    func dropRemote() {
        var queues = MatchingQueues()
        var remote = arrived(0, 1, 5, 100_000)
        remote.payload = .remote(address: 1, key: 2)
        queues.arrive(remote)
        queues.arrive(arrived(0, 1, 5, 10))
        queues.dropRemote(from: 1)
        #expect(queues.arrived.map(\.length) == [10])
    }
}

/// The request table: entries reused, stale requests told apart.
struct RequestTableTests {
    @Test("a collected request's entry is reused with a new generation; the old request names nothing")
    func generations() {
        var table = RequestTable()
        let first = table.start(.send, peer: 1)
        table.complete(first.index, count: 8)
        #expect(table.collect(first.index).count == 8)
        #expect(!table.contains(first))
        let second = table.start(.receive, peer: -1)
        #expect(second.index == first.index && second.generation != first.generation)
        #expect(table.contains(second))
        #expect(table.index(ofCookie: first.cookie) == nil)
        #expect(table.index(ofCookie: second.cookie) == second.index)
        #expect(BounceCookie.slot(second.cookie) == nil && BounceCookie.slot(BounceCookie.make(7)) == 7)
    }

    @Test("work request ids carry their kind and slot or request")
    func workRequestIDs() {
        for id in [WorkRequestID.receiveSlot(511), .bounceSlot(3), .controlSlot(1023), .rendezvousRead(0xffff_fff0, length: WorkRequestID.readLengthLimit), .rendezvousRead(7, length: 4096)] {
            #expect(WorkRequestID(id.encoded) == id)
        }
        #expect(WorkRequestID(0) == nil)
    }
}
