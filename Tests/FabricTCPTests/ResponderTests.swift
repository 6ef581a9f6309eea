@testable import FabricTCP
import FabricCore
import Testing

/// The responder alone: request headers arrive in a scripted order at
/// scripted clock readings, and it must say which to execute, which to
/// drop, when an acknowledgement is due, and what it queues in answer.
@Suite("tcp engine: responder")
struct ResponderTests {
    func makeResponder(responses: Int = 4) -> Responder {
        Responder(maxMessage: 1 << 20, responseDepth: responses)
    }

    func request(_ sequence: UInt32, asksAcknowledge: Bool = false) -> FrameHeader {
        var header = FrameHeader(opcode: .send)
        header.sequence = sequence
        if asksAcknowledge { header.flags.insert(.acknowledgeRequested) }
        return header
    }

    @Test("requests are executed in sequence; one out of sequence breaks the protocol")
    func sequence() {
        var responder = makeResponder()
        let first = responder.admit(request(0), connected: true)
        #expect(first == .inSequence)
        responder.accept(now: 1)
        #expect(responder.expectedSequence == 1)
        let skipped = responder.admit(request(2), connected: true)
        #expect(skipped == .violation)
        let repeated = responder.admit(request(0), connected: true)
        #expect(repeated == .violation)
        let next = responder.admit(request(1), connected: true)
        #expect(next == .inSequence)
    }

    @Test("after an RNR refusal the requests behind the refused one are dropped until it comes again")
    func goBackAfterReceiverNotReady() {
        var responder = makeResponder()
        _ = responder.admit(request(0), connected: true)
        responder.refusedNotReady(0)
        let behind1 = responder.admit(request(1), connected: true)
        let behind2 = responder.admit(request(2), connected: true)
        #expect(behind1 == .droppedOutOfSequence)
        #expect(behind2 == .droppedOutOfSequence)
        let retried = responder.admit(request(0), connected: true)
        #expect(retried == .inSequence)
        #expect(responder.awaitingRetryOf == nil)
        responder.accept(now: 5)
        // The wait is over: a request out of sequence is a violation again.
        let wrong = responder.admit(request(3), connected: true)
        #expect(wrong == .violation)
    }

    @Test("in the error state every request is read and dropped, but its request for an acknowledgement is noted")
    func discardInError() {
        var responder = makeResponder()
        let admission = responder.admit(request(7, asksAcknowledge: true), connected: false)
        #expect(admission == .discard)
        let acknowledgeRequested = responder.acknowledgeRequested
        #expect(acknowledgeRequested)
        #expect(responder.expectedSequence == 0)
    }

    @Test("an acknowledgement owed goes out alone at once when the progress thread drives")
    func acknowledgeProgressThread() {
        var responder = makeResponder()
        let idle = responder.standaloneAcknowledgeDue(by: .progressThread, owedAtStart: false, now: 10)
        #expect(!idle)
        _ = responder.admit(request(0), connected: true)
        responder.accept(now: 1_000)
        let due = responder.standaloneAcknowledgeDue(by: .progressThread, owedAtStart: false, now: 1_000)
        #expect(due)
    }

    @Test("a requested acknowledgement waits 20 µs for a frame to carry it, an unrequested one 1 ms")
    func acknowledgeDelays() {
        var responder = makeResponder()
        _ = responder.admit(request(0), connected: true)
        responder.accept(now: 1_000)
        #expect(responder.acknowledgeDue == 1_000 + EngineTuning.unrequestedAcknowledgeDelay)
        let early = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000 + EngineTuning.acknowledgeDelay)
        #expect(!early)
        let late = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000 + EngineTuning.unrequestedAcknowledgeDelay)
        #expect(late)

        _ = responder.admit(request(1, asksAcknowledge: true), connected: true)
        responder.accept(now: 2_000)
        // Owed since the first request; requested now: the short delay.
        #expect(responder.acknowledgeOwedSince == 1_000)
        #expect(responder.acknowledgeDue == 1_000 + EngineTuning.acknowledgeDelay)
        let before = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000 + EngineTuning.acknowledgeDelay - 1)
        #expect(!before)
        let at = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000 + EngineTuning.acknowledgeDelay)
        #expect(at)
    }

    @Test("a requested acknowledgement already owed when the round began goes out; one owed only since is left for a reply")
    func acknowledgeOwedAtStart() {
        var responder = makeResponder()
        _ = responder.admit(request(0, asksAcknowledge: true), connected: true)
        responder.accept(now: 1_000)
        let fresh = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000)
        #expect(!fresh)
        let owed = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: true, now: 1_000)
        #expect(owed)
    }

    @Test("a WRITE that asks for an acknowledgement gets it in the same round (no reply of this side will carry it); a SEND waits a round")
    func acknowledgeWriteAtOnce() {
        var responder = makeResponder()
        var write = FrameHeader(opcode: .write)
        write.sequence = 0
        write.flags.insert(.acknowledgeRequested)
        _ = responder.admit(write, connected: true)
        responder.accept(now: 1_000)
        let due = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000)
        #expect(due)
        responder.acknowledgementSent()
        _ = responder.admit(request(1, asksAcknowledge: true), connected: true)
        responder.accept(now: 2_000)
        let send = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 2_000)
        #expect(!send)
    }

    @Test("a batch of requests is acknowledged at once, and a sent acknowledgement owes nothing")
    func acknowledgeBatch() {
        var responder = makeResponder()
        for sequence in 0..<UInt32(EngineTuning.acknowledgeBatch) {
            let due = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000)
            #expect(!due)
            let admission = responder.admit(request(sequence), connected: true)
            #expect(admission == .inSequence)
            responder.accept(now: 1_000)
        }
        let due = responder.standaloneAcknowledgeDue(by: .application, owedAtStart: false, now: 1_000)
        #expect(due)
        responder.acknowledgementSent()
        let acknowledgeOwed = responder.acknowledgeOwed
        #expect(!acknowledgeOwed)
        #expect(responder.acceptedSinceAcknowledge == 0)
        let after = responder.standaloneAcknowledgeDue(by: .progressThread, owedAtStart: true, now: .max)
        #expect(!after)
    }

    @Test("the response queue holds what the peer may have outstanding, and a NAK other than RNR is fatal")
    func responses() {
        var responder = makeResponder(responses: 3)
        let rnr = responder.queueNak(4, .receiverNotReadyRetryExceeded, .none)
        #expect(rnr)
        let fatalBefore = responder.holdsFatalResponse
        #expect(!fatalBefore)
        var response = FrameHeader(opcode: .atomicResponse)
        response.sequence = 5
        response.length = UInt32(atomicResponsePayload)
        let atomic = responder.queueResponse(response, atomicValue: 42, readyAt: 9)
        #expect(atomic)
        let fatal = responder.queueNak(6, .remoteAccessError, .unknownKey)
        #expect(fatal)
        let fatalAfter = responder.holdsFatalResponse
        #expect(fatalAfter)
        let overflow = responder.queueNak(7, .remoteAccessError, .unknownKey)
        #expect(!overflow)
        #expect(responder.responses.count == 3)
        // The atomic response carries its old value behind the header.
        let index = (responder.responses.head + 1) % responder.responses.depth
        let buffer = responder.responses.buffer(index)
        let decoded = FrameHeader.decode(from: buffer, maxMessage: 1 << 20)
        #expect(decoded == .success(response))
        #expect(UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 32, as: UInt64.self)) == 42)
        #expect(responder.responses.items[index].readyAt == 9)
        // The NAK's syndrome says why.
        let nakBuffer = responder.responses.buffer((responder.responses.head + 2) % responder.responses.depth)
        let nak = FrameHeader.decode(from: nakBuffer, maxMessage: 1 << 20)
        guard case .success(let nakHeader) = nak else {
            Issue.record("the NAK does not decode: \(nak)")
            return
        }
        #expect(nakHeader.opcode == .negativeAcknowledge)
        #expect(nakHeader.sequence == 6)
        let syndrome = NakSyndrome.decode(nakHeader.immediate)
        #expect(syndrome?.0 == .remoteAccessError)
        #expect(syndrome?.1 == .unknownKey)
    }

    @Test("a one-sided request is checked against the key table: key, right and range")
    func accessChecks() {
        let table = RegionTable()
        let domain = ObjectIdentifier(table)
        let record = RegionRecord(base: 0x10000, length: 4096, access: [.localWrite, .remoteWrite], localKey: 11, remoteKey: 22, domain: domain)
        table.insert(record)
        var responder = makeResponder()
        var write = FrameHeader(opcode: .write)
        write.remoteKey = 22
        write.remoteAddress = 0x10000 + 100
        func failure(_ result: Result<RegionRecord, CompletionDetail>) -> CompletionDetail? {
            if case .failure(let detail) = result { return detail }
            return nil
        }
        let fits = responder.check(write, length: 100, right: .remoteWrite, table: table, domain: domain)
        #expect((try? fits.get()) === record)
        let tooLong = responder.check(write, length: 4096, right: .remoteWrite, table: table, domain: domain)
        #expect(failure(tooLong) == .outOfBounds)
        let noRead = responder.check(write, length: 100, right: .remoteRead, table: table, domain: domain)
        #expect(failure(noRead) == .accessNotGranted)
        let otherDomain = responder.check(write, length: 100, right: .remoteWrite, table: table, domain: ObjectIdentifier(RegionTable()))
        #expect(failure(otherDomain) == .keyOfAnotherProtectionDomain)
        write.remoteKey = 23
        let unknown = responder.check(write, length: 100, right: .remoteWrite, table: table, domain: domain)
        #expect(failure(unknown) == .unknownKey)
    }
}
