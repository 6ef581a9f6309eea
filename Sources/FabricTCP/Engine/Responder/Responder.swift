import FabricCore

/// The responder side of a queue pair: which request it expects next, the
/// checks a request passes before any byte of registered memory is
/// touched, the frames it answers with (READ responses, atomic responses,
/// NAKs), and the acknowledgements it owes. A value without sockets or
/// clocks of its own: times are passed in; completions, counters and the
/// error state are the queue pair's business.
struct Responder: ~Copyable {
    /// The sequence number of the next request to accept; every frame sent
    /// carries it as the cumulative acknowledgement.
    private(set) var expectedSequence: UInt32 = 0
    /// After an RNR NAK: the refused request, which the requester sends
    /// again; the requests behind it are dropped until it comes.
    private(set) var awaitingRetryOf: UInt32?
    /// The frames waiting to be written.
    var responses: ResponseQueueStorage
    /// The longest message this device takes (a peer's profile may allow
    /// longer ones: those are refused).
    let maxMessage: Int

    // Acknowledgements owed to the peer.
    private(set) var acknowledgeOwed = false
    /// A request since the last acknowledgement asked for one.
    private(set) var acknowledgeRequested = false
    /// One of them was a plain WRITE: no reply of this side's application
    /// will follow it to carry the acknowledgement, so it goes out at once.
    private(set) var writeAcknowledgeRequested = false
    private(set) var acknowledgeOwedSince: UInt64 = 0
    private(set) var acceptedSinceAcknowledge = 0
    /// The region the peer's last one-sided request used.
    private var lastRemoteRecord: RegionRecord?

    init(maxMessage: Int, responseDepth: Int) {
        self.maxMessage = maxMessage
        responses = ResponseQueueStorage(depth: responseDepth)
    }

    // MARK: Requests

    /// What to do with an arriving request.
    enum Admission: Equatable {
        /// The next in sequence: check and execute it.
        case inSequence
        /// The queue pair is in error: read and drop its payload.
        case discard
        /// A request behind one refused with RNR: dropped (go-back-N; the
        /// requester sends it again).
        case droppedOutOfSequence
        /// A sequence number the protocol does not allow.
        case violation
    }

    /// Looks at a request's header: its place in the sequence, and whether
    /// it asks for an acknowledgement. `connected`: the queue pair is not
    /// in error.
    @inline(__always)
    mutating func admit(_ header: FrameHeader, connected: Bool) -> Admission {
        if header.flags.contains(.acknowledgeRequested) {
            acknowledgeRequested = true
            if header.opcode == .write { writeAcknowledgeRequested = true }
        }
        if !connected { return .discard }
        if header.sequence != expectedSequence {
            if let waiting = awaitingRetryOf, header.sequence != waiting { return .droppedOutOfSequence }
            return .violation
        }
        awaitingRetryOf = nil
        return .inSequence
    }

    /// The request `sequence` was refused with RNR: drop what follows until
    /// it comes again.
    mutating func refusedNotReady(_ sequence: UInt32) {
        awaitingRetryOf = sequence
    }

    /// The request in sequence was accepted at `now`: it will be
    /// acknowledged.
    @inline(__always)
    mutating func accept(now: UInt64) {
        expectedSequence &+= 1
        if !acknowledgeOwed {
            acknowledgeOwed = true
            acknowledgeOwedSince = now
        }
        acceptedSinceAcknowledge += 1
    }

    /// The access check of a one-sided request against the key table (a
    /// one-entry cache of the region used last usually avoids the table).
    @inline(__always)
    mutating func check(_ header: FrameHeader, length: Int, right: MemoryAccess, table: RegionTable, domain: ObjectIdentifier) -> Result<RegionRecord, CompletionDetail> {
        table.checkRemote(key: header.remoteKey, address: header.remoteAddress, length: UInt64(length), right: right, domain: domain, cache: &lastRemoteRecord)
    }

    // MARK: Acknowledgements

    /// How long an owed acknowledgement may wait for a frame to carry it.
    @inline(__always)
    var acknowledgeDelay: UInt64 {
        acknowledgeRequested ? EngineTuning.acknowledgeDelay : EngineTuning.unrequestedAcknowledgeDelay
    }

    /// Whether the owed acknowledgement goes out alone in this round:
    /// only if nothing is about to carry it. The progress thread has no
    /// application reply to wait for; neither has a WRITE the peer waits
    /// on (one-sided: this side's application plays no part); otherwise
    /// the application had its chance if the acknowledgement was already
    /// owed when the round began (`owedAtStart`) and the peer asked for
    /// it; and a batch of requests, or the delay, ends the wait anyway.
    @inline(__always)
    func standaloneAcknowledgeDue(by driver: ProgressDriver, owedAtStart: Bool, now: UInt64) -> Bool {
        guard acknowledgeOwed else { return false }
        return driver == .progressThread
            || writeAcknowledgeRequested
            || acceptedSinceAcknowledge >= EngineTuning.acknowledgeBatch
            || (owedAtStart && acknowledgeRequested)
            || (now > acknowledgeOwedSince && now - acknowledgeOwedSince >= acknowledgeDelay)
    }

    /// When the owed acknowledgement goes out on its own at the latest, if
    /// one is owed (`acknowledgeOwed`).
    @inline(__always)
    var acknowledgeDue: UInt64 { acknowledgeOwedSince &+ acknowledgeDelay }

    /// A frame carrying the current acknowledgement reached the stream.
    @inline(__always)
    mutating func acknowledgementSent() {
        acknowledgeOwed = false
        acknowledgeRequested = false
        writeAcknowledgeRequested = false
        acceptedSinceAcknowledge = 0
    }

    /// The acknowledgement will never be sent (the queue pair vanished).
    mutating func forgetAcknowledgement() {
        acknowledgeOwed = false
        acknowledgeRequested = false
        writeAcknowledgeRequested = false
    }

    // MARK: Responses

    /// Queues a frame of the responder; false if the peer exceeded its
    /// allowance of outstanding reads and atomics. `readyAt`: when it was
    /// queued, for the emulated link (0 without one).
    mutating func queueResponse(
        _ header: FrameHeader, payload: UnsafeMutableRawPointer? = nil, length: Int = 0, record: RegionRecord? = nil,
        atomicValue: UInt64 = 0, fatal: Bool = false, readyAt: UInt64 = 0
    ) -> Bool {
        guard !responses.isFull else { return false }
        let index = responses.reserve()
        let buffer = responses.buffer(index)
        header.encode(to: buffer)
        buffer.storeBytes(of: atomicValue.littleEndian, toByteOffset: 32, as: UInt64.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: 40, as: UInt32.self)
        responses.items[index].payload = payload
        responses.items[index].payloadLength = length
        responses.items[index].record = record
        responses.items[index].fatal = fatal
        responses.items[index].readyAt = readyAt
        return true
    }

    /// Queues a NAK for `sequence`. A NAK names a request that was NOT
    /// accepted: the acknowledgement it carries stops just before it.
    /// Every status but RNR ends the connection once written.
    mutating func queueNak(_ sequence: UInt32, _ status: CompletionStatus, _ detail: CompletionDetail, readyAt: UInt64 = 0) -> Bool {
        var nak = FrameHeader(opcode: .negativeAcknowledge)
        nak.sequence = sequence
        nak.immediate = NakSyndrome.encode(status: status, detail: detail)
        return queueResponse(nak, fatal: status != .receiverNotReadyRetryExceeded, readyAt: readyAt)
    }

    /// A READ response whose memory is gone: zeros, and a trailer that
    /// turns the response into a remote access error at the requester.
    mutating func markResponseFailed(_ index: Int, detail: CompletionDetail) {
        responses.items[index].record = nil
        responses.items[index].payload = nil
        responses.items[index].fatal = true
        responses.buffer(index).storeBytes(
            of: NakSyndrome.encode(status: .remoteAccessError, detail: detail).littleEndian,
            toByteOffset: 40, as: UInt32.self)
    }

    /// Whether a queued frame ends the connection (a fatal NAK: the frames
    /// before it still go, and it tells the peer why).
    var holdsFatalResponse: Bool {
        var index = responses.head
        for _ in 0..<responses.count {
            if responses.items[index].fatal { return true }
            index += 1
            if index == responses.depth { index = 0 }
        }
        return false
    }
}
