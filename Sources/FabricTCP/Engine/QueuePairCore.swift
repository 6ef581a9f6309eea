import CFabricShims
import FabricCore
import Glibc

/// Who is driving a queue pair's progress: the application (polling its
/// completion queue, or posting) or the device's progress thread.
enum ProgressDriver { case application, progressThread }

/// Tunables of the engine. Defaults suit loopback and LANs.
struct EngineTuning {
    /// Bytes requested per socket read between frames, when frames are small.
    static let readWindow = 64 * 1024
    /// Payloads from this size on are read straight into place; after one,
    /// the next read asks for a header only, so no payload is over-read.
    static let largePayload = 4096
    static let stagingCapacity = 128 * 1024
    /// The longest frame payload the wire allows: the largest maximum
    /// message a device profile may set. A longer frame is a protocol
    /// violation; a request longer than this device's own maximum is
    /// refused with a NAK (a peer may have a larger profile).
    static let wireMaximumMessage = 1 << 30
    static let scratchCapacity = 16 * 1024
    /// Reads and atomics a queue pair keeps outstanding (verbs: max_rd_atomic).
    static let maxOutstandingReadAtomics = 16
    /// An acknowledgement owed for this long goes out on its own...
    static let acknowledgeDelay: UInt64 = 20_000
    /// ... unless no request since the last one asked for it: then nobody
    /// waits on it (a requester that needs a completion or send-queue space
    /// sets ACK_REQUESTED), and a stream of large WRITEs is not answered by
    /// one small frame per WRITE, each of which costs both kernels a
    /// segment to process (about 10 % of loopback bandwidth).
    static let unrequestedAcknowledgeDelay: UInt64 = 1_000_000
    /// ... and so does one owed for this many requests.
    static let acknowledgeBatch = 16
    static let iovecCapacity = 128
    /// Bytes one write call hands to the socket at most.
    static let writeChunk = 1 << 20
    /// Bytes one progress call writes at most to one queue pair.
    static let transmitBudget = 4 << 20
    /// Bytes one progress call reads at most from one queue pair.
    static let receiveBudget = 4 << 20
    static let batchCapacity = 32
}

/// A 64 KiB page of zeros: the payload of a READ response whose region
/// vanished under it (the trailer then says so).
nonisolated(unsafe) let zeroPage: UnsafeMutableRawPointer = {
    let page = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 4096)
    page.initializeMemory(as: UInt8.self, repeating: 0, count: 65536)
    return page
}()

/// A queue pair's engine: the coordinator of its parts, the owner of its
/// socket. The parts hold the state and make the decisions: `FrameInput`
/// cuts the incoming stream into frames, `PayloadPlacement` puts their
/// payloads in place, `Requester` and `Responder` are the two sides of the
/// protocol, `OutputBatch` gathers the frames of one write, and
/// `EmulationHooks` asks the emulated link. The core moves bytes through
/// `SystemCalls`, pushes completions and runs the error state, which touch
/// several parts at once. Lives inside the queue pair's lock; every method
/// runs with that lock held.
struct QueuePairCore: ~Copyable {
    let fd: Int32
    let number: QueuePairNumber
    let device: TCPDeviceCore
    let sendCQ: TCPCompletionQueue
    let receiveCQ: TCPCompletionQueue
    let sharedReceiveQueue: TCPSharedReceiveQueue?
    let table: RegionTable
    let domain: ObjectIdentifier
    /// The profile's MTU: the packet size the counters count in.
    let mtu: Int

    var state: QueuePairState = .initialized
    var socketShut = false

    var requester: Requester
    var responder: Responder
    var receives: ReceiveRing
    var input = FrameInput()
    var placement: PayloadPlacement
    /// The frames of the next write, and the frame a write cut.
    var output = OutputBatch()
    /// The header of a standalone acknowledgement or of the disconnect.
    let controlHeader: UnsafeMutableRawPointer

    /// The clock reading of the current progress round.
    var clock: UInt64 = 0
    /// Set when a write found the socket full; cleared by the next write
    /// that the socket took whole.
    var socketFullAt: UInt64 = 0
    /// Set when the emulated link's token bucket, not the socket, stopped
    /// the output; cleared by the next round.
    var waitingForLink = false

    /// Per-queue-pair counters, like a card's.
    var counters = QueuePairStatistics.zero
    /// Large SENDs read ahead into their receive, and frames read ahead
    /// that turned out to be something else (for tests).
    var readAheadHits = 0
    var readAheadMisses = 0
    /// Rounds of progress (for tests: a queue pair nobody needs to drive
    /// must not be driven over and over).
    var progressRounds = 0
    let emulation: EmulationHooks

    init(
        fd: Int32, number: QueuePairNumber, device: TCPDeviceCore, sendCQ: TCPCompletionQueue,
        receiveCQ: TCPCompletionQueue, sharedReceiveQueue: TCPSharedReceiveQueue?, domain: ObjectIdentifier,
        limits: QueuePairLimits, retry: RetryPolicy, emulation: LinkEmulation?
    ) {
        self.fd = fd
        self.number = number
        self.device = device
        self.sendCQ = sendCQ
        self.receiveCQ = receiveCQ
        self.sharedReceiveQueue = sharedReceiveQueue
        self.table = device.regions
        self.domain = domain
        self.emulation = EmulationHooks(emulation)
        mtu = max(1, device.capabilities.mtu)
        requester = Requester(
            depth: limits.sendQueueDepth, maxElements: limits.maxSendScatterEntries, maxInline: limits.maxInlineData,
            maxOutstandingReads: max(1, min(device.capabilities.maxOutstandingReads, EngineTuning.maxOutstandingReadAtomics)),
            retry: retry)
        responder = Responder(maxMessage: device.capabilities.maxMessageSize, responseDepth: EngineTuning.maxOutstandingReadAtomics + 8)
        receives = ReceiveRing(depth: sharedReceiveQueue == nil ? limits.receiveQueueDepth : 1, maxElements: max(1, limits.maxReceiveScatterEntries))
        controlHeader = .allocate(byteCount: FrameHeader.size, alignment: 16)
        placement = PayloadPlacement(segments: max(limits.maxReceiveScatterEntries, limits.maxSendScatterEntries, 1) + 1)
    }

    deinit {
        controlHeader.deallocate()
    }

    /// The most READs and atomics that were ever in flight at once.
    var outstandingReadAtomicsHighWater: Int { requester.outstandingReadAtomicsHighWater }

    // MARK: - Posting

    /// Queues a send request, then tries to transmit at once.
    mutating func postSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        let result = try queueSend(request)
        if result == .posted { sendQueued() }
        return result
    }

    /// Sends what the send queue holds, unless a frame is stuck half-written:
    /// then the socket is full and progress finishes the job when it drains.
    @inline(__always)
    mutating func sendQueued() {
        if state == .readyToSend && output.partial == nil { flushOutput() }
    }

    /// Queues the requests in order until the send queue is full, then
    /// transmits them together: one doorbell, and as many frames per
    /// sendmsg as fit (`OutputBatch`). Returns how many were queued.
    mutating func postSend(_ requests: UnsafeBufferPointer<SendWorkRequest>) throws(FabricError) -> Int {
        var queued = 0
        for request in requests {
            guard try queueSend(request) == .posted else { break }
            queued += 1
        }
        if queued > 0 { sendQueued() }
        return queued
    }

    /// Puts a send request on the send queue (or completes it at once as
    /// flushed when the queue pair is in error); sends nothing.
    @inline(__always)
    mutating func queueSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        switch state {
        case .initialized:
            throw FabricError(.invalidState, "\(number) is not connected yet; post sends after connect or accept")
        case .error:
            pushSendCompletion(id: request.id, status: .flushed, opcode: Requester.completionOpcode(request.operation), length: 0, detail: .queuePairInError)
            return .posted
        case .readyToSend:
            break
        }
        if requester.isFull { return .wouldBlock }
        let queued = requester.queue(request, table: table, domain: domain)
        if let localFailure = queued.localFailure {
            enterError(.localProtectionError, localFailure)
            return .posted
        }
        if emulation.active { _ = emulatedPost(queued.position) }
        return .posted
    }

    mutating func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult {
        if state == .error {
            pushReceiveCompletion(Completion(workRequestID: request.id, status: .flushed, opcode: .receive, queuePair: number, detail: .queuePairInError))
            return .posted
        }
        if receives.isFull { return .wouldBlock }
        if let detail = receives.post(request, table: table, domain: domain) {
            throw FabricError(.invalidArgument, "receive \(request.id): \(detail)")
        }
        return .posted
    }

    // MARK: - Progress

    /// One round of work: read what arrived, send what is owed, run timers.
    /// Returns the next deadline (or .max).
    /// `now` is the caller's clock reading (CLOCK_MONOTONIC, ns).
    mutating func progress(by driver: ProgressDriver, now: UInt64) -> UInt64 {
        progressRounds &+= 1
        let hadAcknowledgeOwed = responder.acknowledgeOwed
        if state != .initialized {
            clock = now
            receive()
            requester.resendIfDue(now: now)
            let outputWaiting = output.partial != nil || responder.responses.count > 0 || (requester.hasUnsent && !requester.waitsToResend)
            if outputWaiting || responder.acknowledgeOwed || requester.waitsToResend || !requester.isEmpty {
                let standalone = responder.standaloneAcknowledgeDue(by: driver, owedAtStart: hadAcknowledgeOwed, now: now)
                if outputWaiting || standalone { flushOutput(standaloneAcknowledge: standalone) }
                checkResponseTimeout(now: now)
            }
        }
        return nextDeadline()
    }

    /// Output that waits: for room in the socket, or for the emulated link's
    /// tokens (cheap: asked by every progress round).
    var outputStuck: Bool {
        output.partial != nil || (socketFullAt != 0 && (responder.responses.count > 0 || requester.hasUnsent))
    }

    /// Output that waits for room in the socket, not for the link's tokens
    /// (a timer covers those, and the socket has room): what sleepers watch
    /// the socket for.
    var outputWaitsForSocket: Bool {
        (output.partial != nil && !waitingForLink) || (socketFullAt != 0 && (responder.responses.count > 0 || requester.hasUnsent))
    }

    // Inlined: called as a separate function from the mutating `progress`,
    // the compiler passed it a stack copy of the whole core (840 bytes,
    // one memcpy per progress round).
    @inline(__always)
    func nextDeadline() -> UInt64 {
        var deadline = requester.deadline
        var acknowledgeDue = responder.acknowledgeDue
        if emulation.active {
            emulation.adjust(
                deadline: &deadline, acknowledgeDue: &acknowledgeDue, acknowledgeOwedSince: responder.acknowledgeOwedSince,
                outputMayLeave: state == .readyToSend && !requester.waitsToResend)
        }
        if responder.acknowledgeOwed { deadline = min(deadline, acknowledgeDue) }
        return deadline
    }

    mutating func checkResponseTimeout(now: UInt64) {
        guard state == .readyToSend else { return }
        if requester.responseTimedOut(now: now) {
            enterError(.transportRetryExceeded, .peerTimedOut)
        }
    }
}

extension QueuePairCore {
    /// The packets of the profile's MTU a payload of `length` bytes takes
    /// (one for an empty frame).
    @inline(__always)
    func packets(_ length: Int) -> Int {
        length <= mtu ? 1 : (length + mtu - 1) / mtu
    }
}
