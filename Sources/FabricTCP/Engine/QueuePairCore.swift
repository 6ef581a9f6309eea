import CFabricShims
import FabricCore
import Glibc

/// Who is driving a queue pair's progress: the application (polling its
/// completion queue, or posting) or the device's progress thread.
enum ProgressDriver { case application, progressThread }

/// What to do once the current incoming payload is fully placed.
enum ReceiveAction {
    case none
    case writePlaced
    case receivePlaced(id: UInt64, opcode: CompletionOpcode, immediate: UInt32?, length: Int)
    case readResponse(position: Int)
    case atomicRequest(FrameHeader)
    case atomicResponse(position: Int)
    /// The payload is being thrown away; then send this NAK (if any).
    case discard(nak: (sequence: UInt32, status: CompletionStatus, detail: CompletionDetail)?)
}

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

/// All mutable state of a queue pair: the send queue and its positions, the
/// responder's output, the receive parser and placement. Lives inside the
/// queue pair's lock; every method runs with that lock held.
struct QueuePairCore: ~Copyable {
    let fd: Int32
    let number: QueuePairNumber
    let device: TCPDeviceCore
    let sendCQ: TCPCompletionQueue
    let receiveCQ: TCPCompletionQueue
    let sharedReceiveQueue: TCPSharedReceiveQueue?
    let table: RegionTable
    let domain: ObjectIdentifier
    let limits: QueuePairLimits
    let retry: RetryPolicy
    let maxMessage: Int
    /// READs and atomics this queue pair keeps in flight as initiator: the
    /// profile's limit, at most what a responder's queue holds.
    let maxOutstandingReads: Int
    /// The profile's MTU: the packet size the counters count in.
    let mtu: Int

    var state: QueuePairState = .initialized
    var socketShut = false

    // Send queue: positions only grow. [head, acknowledged) accepted by the
    // peer, [acknowledged, transmitted) handed to the socket, [transmitted,
    // tail) waiting. A READ or atomic stays until its response arrived.
    var sendQueue: SendQueueStorage
    var head = 0
    var acknowledged = 0
    var transmitted = 0
    var tail = 0
    var outstandingReadAtomics = 0
    /// The most READs and atomics that were ever in flight at once (tests
    /// check the profile's limit with it).
    var outstandingReadAtomicsHighWater = 0
    var receiverNotReadyRetriesLeft: Int?
    var resendAt: UInt64 = 0

    var responses: ResponseQueueStorage
    var receives: ReceiveRing

    /// The frames of the next write, and the frame a write cut.
    var output = OutputBatch()
    let controlHeader: UnsafeMutableRawPointer
    let iov: UnsafeMutablePointer<iovec>
    let accessed: UnsafeMutablePointer<Unmanaged<RegionRecord>>

    // Input.
    let staging: UnsafeMutableRawPointer
    var stagedStart = 0
    var stagedEnd = 0
    var headerOnlyRead = false
    var inPayload = false
    var inputEnded = false
    var lastReadShort = false
    var discarding = false
    var payloadRemaining = 0
    var action: ReceiveAction = .none
    var targets: PlacementTargets
    let scratch: UnsafeMutableRawPointer
    let operands: UnsafeMutableRawPointer
    var expectedSequence: UInt32 = 0
    var awaitingRetryOf: UInt32?

    // Acknowledgements owed to the peer.
    var acknowledgeOwed = false
    var acknowledgeRequested = false
    var acknowledgeOwedSince: UInt64 = 0
    var acceptedSinceAcknowledge = 0
    /// The clock reading of the current progress round.
    var clock: UInt64 = 0
    /// Set when a write found the socket full; cleared by the next write
    /// that the socket took whole.
    var socketFullAt: UInt64 = 0
    /// Set when the emulated link's token bucket, not the socket, stopped
    /// the output; cleared by the next round.
    var waitingForLink = false

    var counters = QueuePairCounters()
    /// The emulated link and fault rules of this queue pair; nil (the
    /// common case) when none apply. The data path tests `emulating` first:
    /// a plain flag costs no reference counting, binding the reference does.
    let emulation: LinkEmulation?
    let emulating: Bool
    /// The region the last send came from (see `RegionTable.checkLocal`).
    var lastLocalRecord: RegionRecord?
    /// The region the peer's last one-sided request used.
    var lastRemoteRecord: RegionRecord?

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
        self.limits = limits
        self.retry = retry
        self.emulation = emulation
        emulating = emulation != nil
        self.maxMessage = device.capabilities.maxMessageSize
        maxOutstandingReads = max(1, min(device.capabilities.maxOutstandingReads, EngineTuning.maxOutstandingReadAtomics))
        mtu = max(1, device.capabilities.mtu)
        receiverNotReadyRetriesLeft = retry.receiverNotReadyRetries
        sendQueue = SendQueueStorage(depth: limits.sendQueueDepth, maxElements: limits.maxSendScatterEntries, maxInline: limits.maxInlineData)
        responses = ResponseQueueStorage(depth: EngineTuning.maxOutstandingReadAtomics + 8)
        receives = ReceiveRing(depth: sharedReceiveQueue == nil ? limits.receiveQueueDepth : 1, maxElements: max(1, limits.maxReceiveScatterEntries))
        iov = .allocate(capacity: EngineTuning.iovecCapacity)
        accessed = .allocate(capacity: EngineTuning.iovecCapacity)
        controlHeader = .allocate(byteCount: FrameHeader.size, alignment: 16)
        staging = .allocate(byteCount: EngineTuning.stagingCapacity, alignment: 64)
        targets = PlacementTargets(capacity: max(limits.maxReceiveScatterEntries, limits.maxSendScatterEntries, 1) + 1)
        scratch = .allocate(byteCount: EngineTuning.scratchCapacity, alignment: 64)
        operands = .allocate(byteCount: 32, alignment: 16)
    }

    deinit {
        iov.deallocate()
        accessed.deallocate()
        controlHeader.deallocate()
        staging.deallocate()
        scratch.deallocate()
        operands.deallocate()
    }

    @inline(__always) func sequence(of position: Int) -> UInt32 { UInt32(truncatingIfNeeded: position) }

    // MARK: - Posting

    /// Validates and queues a send request, then tries to transmit at once.
    mutating func postSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        switch state {
        case .initialized:
            throw FabricError(.invalidState, "\(number) is not connected yet; post sends after connect or accept")
        case .error:
            pushSendCompletion(id: request.id, status: .flushed, opcode: completionOpcode(request.operation), length: 0, detail: .queuePairInError)
            return .posted
        case .readyToSend:
            break
        }
        if tail - head == sendQueue.depth { return .wouldBlock }

        let position = tail
        let slotIndex = sendQueue.index(position)
        var slot = SendSlot()
        slot.id = request.id
        slot.flags = request.flags
        slot.elementCount = request.local.count
        slot.completionOpcode = completionOpcode(request.operation)
        let length = Int(request.local.totalLength)
        slot.length = length
        var header = FrameHeader(opcode: .send)
        header.sequence = sequence(of: position)
        header.length = UInt32(truncatingIfNeeded: length)
        var needsLocalWrite = false
        var operandCount = 0
        switch request.operation {
        case .send:
            header.opcode = .send
        case .sendWithImmediate(let immediate):
            header.opcode = .sendWithImmediate
            header.immediate = immediate
        case .write(let remote):
            header.opcode = .write
            header.remoteAddress = remote.address
            header.remoteKey = remote.key.rawValue
        case .writeWithImmediate(let remote, let immediate):
            header.opcode = .writeWithImmediate
            header.remoteAddress = remote.address
            header.remoteKey = remote.key.rawValue
            header.immediate = immediate
        case .read(let remote):
            header.opcode = .readRequest
            header.remoteAddress = remote.address
            header.remoteKey = remote.key.rawValue
            needsLocalWrite = true
            slot.awaitsResponse = true
        case .fetchAndAdd(let remote, let add):
            header.opcode = .fetchAndAdd
            header.remoteAddress = remote.address
            header.remoteKey = remote.key.rawValue
            header.length = UInt32(atomicRequestPayload)
            sendQueue.header(position).storeBytes(of: add.littleEndian, toByteOffset: FrameHeader.size, as: UInt64.self)
            sendQueue.header(position).storeBytes(of: UInt64(0), toByteOffset: FrameHeader.size + 8, as: UInt64.self)
            operandCount = atomicRequestPayload
            needsLocalWrite = true
            slot.awaitsResponse = true
        case .compareAndSwap(let remote, let compare, let swap):
            header.opcode = .compareAndSwap
            header.remoteAddress = remote.address
            header.remoteKey = remote.key.rawValue
            header.length = UInt32(atomicRequestPayload)
            sendQueue.header(position).storeBytes(of: compare.littleEndian, toByteOffset: FrameHeader.size, as: UInt64.self)
            sendQueue.header(position).storeBytes(of: swap.littleEndian, toByteOffset: FrameHeader.size + 8, as: UInt64.self)
            operandCount = atomicRequestPayload
            needsLocalWrite = true
            slot.awaitsResponse = true
        }
        if slot.awaitsResponse { header.flags.insert(.acknowledgeRequested) }
        if request.flags.contains(.signaled) || (tail - head) * 2 >= sendQueue.depth {
            header.flags.insert(.acknowledgeRequested)
        }
        slot.opcode = header.opcode

        // Local memory: inline payloads are copied now; everything else is
        // checked against the key table and pinned by its record.
        let base = sendQueue.elementBase(position)
        var localFailure: CompletionDetail?
        if request.flags.contains(.inline) && !needsLocalWrite {
            let inline = sendQueue.inline(position)
            var offset = 0
            for i in 0..<request.local.count {
                let element = request.local[i]
                if element.length > 0, let source = UnsafeRawPointer(bitPattern: UInt(element.address)) {
                    (inline + offset).copyMemory(from: source, byteCount: Int(element.length))
                }
                offset += Int(element.length)
            }
            slot.elementCount = 1
            sendQueue.elements[base] = ScatterGatherElement(address: UInt64(UInt(bitPattern: inline)), length: UInt32(length), localKey: LocalKey(rawValue: 0))
            sendQueue.records[base] = nil
        } else {
            for i in 0..<request.local.count {
                let element = request.local[i]
                sendQueue.elements[base + i] = element
                if element.length == 0 {
                    sendQueue.records[base + i] = nil
                    continue
                }
                switch table.checkLocal(element, needsWrite: needsLocalWrite, domain: domain, cache: &lastLocalRecord) {
                case .success(let record):
                    sendQueue.records[base + i] = record
                case .failure(let detail):
                    sendQueue.records[base + i] = nil
                    if localFailure == nil { localFailure = detail }
                }
            }
        }
        if operandCount > 0 {
            slot.wireLength = FrameHeader.size + operandCount
        } else if header.opcode == .readRequest {
            slot.wireLength = FrameHeader.size
        } else {
            slot.wireLength = FrameHeader.size + length
        }
        header.encode(to: sendQueue.header(position))
        sendQueue.slots[slotIndex] = slot
        tail += 1

        if let localFailure {
            sendQueue.slots[slotIndex].status = .localProtectionError
            sendQueue.slots[slotIndex].detail = localFailure
            enterError(.localProtectionError, localFailure)
            return .posted
        }
        if emulating, let emulation {
            sendQueue.slots[slotIndex].readyAt = MonotonicClock.now()
            sendQueue.slots[slotIndex].packetCount = requestPackets(sendQueue.slots[slotIndex])
            sendQueue.slots[slotIndex].firstPacket = emulation.numberPackets(sendQueue.slots[slotIndex].packetCount)
            if emulation.forcesError() {
                counters.faultsInjected += 1
                enterError(.flushed, .injectedFault)
                return .posted
            }
        }
        // Send now, unless a frame is stuck half-written: then the socket is
        // full and progress finishes the job when it drains.
        if output.partial == nil { flushOutput() }
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

    func completionOpcode(_ operation: SendOperation) -> CompletionOpcode {
        switch operation {
        case .send, .sendWithImmediate: return .send
        case .write, .writeWithImmediate: return .write
        case .read: return .read
        case .fetchAndAdd: return .fetchAndAdd
        case .compareAndSwap: return .compareAndSwap
        }
    }

    // MARK: - Progress

    /// One round of work: read what arrived, send what is owed, run timers.
    /// Returns the next deadline (or .max).
    /// `now` is the caller's clock reading (CLOCK_MONOTONIC, ns).
    mutating func progress(by driver: ProgressDriver, now: UInt64) -> UInt64 {
        let hadAcknowledgeOwed = acknowledgeOwed
        if state != .initialized {
            clock = now
            receive()
            if resendAt != 0 && now >= resendAt { resendAt = 0 }
            let outputWaiting = output.partial != nil || responses.count > 0 || (transmitted < tail && resendAt == 0)
            if outputWaiting || acknowledgeOwed || resendAt != 0 || head != tail {
                // An owed acknowledgement goes out alone only if nothing is
                // about to carry it: the progress thread has no application
                // reply to wait for; the application had its chance if the
                // ack was already owed when this round began.
                var standalone = false
                if acknowledgeOwed {
                    standalone = driver == .progressThread
                        || acceptedSinceAcknowledge >= EngineTuning.acknowledgeBatch
                        || (hadAcknowledgeOwed && acknowledgeRequested)
                        || (now > acknowledgeOwedSince && now - acknowledgeOwedSince >= acknowledgeDelay)
                }
                if outputWaiting || standalone { flushOutput(standaloneAcknowledge: standalone) }
                checkResponseTimeout(now: now)
            }
        }
        return nextDeadline()
    }

    /// Output that waits: for room in the socket, or for the emulated link's
    /// tokens (cheap: asked by every progress round).
    var outputStuck: Bool { output.partial != nil || (socketFullAt != 0 && (responses.count > 0 || transmitted < tail)) }

    /// Output that waits for room in the socket, not for the link's tokens
    /// (a timer covers those, and the socket has room): what sleepers watch
    /// the socket for.
    var outputWaitsForSocket: Bool {
        (output.partial != nil && !waitingForLink) || (socketFullAt != 0 && (responses.count > 0 || transmitted < tail))
    }

    /// How long an owed acknowledgement may wait for a frame to carry it.
    var acknowledgeDelay: UInt64 {
        acknowledgeRequested ? EngineTuning.acknowledgeDelay : EngineTuning.unrequestedAcknowledgeDelay
    }

    // Inlined: called as a separate function from the mutating `progress`,
    // the compiler passed it a stack copy of the whole core (840 bytes,
    // one memcpy per progress round).
    @inline(__always)
    func nextDeadline() -> UInt64 {
        var deadline = UInt64.max
        if resendAt != 0 { deadline = resendAt }
        var acknowledgeDue = acknowledgeOwedSince &+ acknowledgeDelay
        if emulating, let emulation {
            // A held frame's release (only while output can still leave: in
            // the error state or during an RNR wait no round asks the link,
            // and a past release time would wake us for nothing, for ever);
            // an acknowledgement cannot leave before the link's latency.
            if state == .readyToSend && resendAt == 0 { deadline = min(deadline, emulation.releaseAt) }
            acknowledgeDue = max(acknowledgeDue, acknowledgeOwedSince &+ emulation.latency)
        }
        if acknowledgeOwed { deadline = min(deadline, acknowledgeDue) }
        if acknowledged < transmitted || (head < acknowledged) {
            let oldest = sendQueue.slots[sendQueue.index(head)].sentAt
            if oldest != 0 { deadline = min(deadline, oldest &+ MonotonicClock.nanoseconds(retry.responseTimeout)) }
        }
        return deadline
    }

    mutating func checkResponseTimeout(now: UInt64) {
        guard state == .readyToSend, head < transmitted, now != 0 else { return }
        let slot = sendQueue.slots[sendQueue.index(head)]
        guard slot.sentAt != 0 else { return }
        if now > slot.sentAt && now - slot.sentAt > MonotonicClock.nanoseconds(retry.responseTimeout) {
            sendQueue.slots[sendQueue.index(head)].status = .transportRetryExceeded
            sendQueue.slots[sendQueue.index(head)].detail = .peerTimedOut
            enterError(.transportRetryExceeded, .peerTimedOut)
        }
    }
}

/// Per-queue-pair counters, like a card's.
struct QueuePairCounters {
    var framesSent = 0
    var framesReceived = 0
    /// Frames counted in packets of the profile's MTU, as a card counts them.
    var packetsSent = 0
    var packetsReceived = 0
    var bytesSent = 0
    var bytesReceived = 0
    var receiverNotReadyNaksSent = 0
    var receiverNotReadyNaksReceived = 0
    var outOfSequenceDropped = 0
    var remoteAccessErrors = 0
    /// Requests sent again after a lost packet (the emulator's drops).
    var retries = 0
    /// Faults the emulator's fault script injected here.
    var faultsInjected = 0
}

extension QueuePairCore {
    /// The packets of the profile's MTU a payload of `length` bytes takes
    /// (one for an empty frame).
    @inline(__always)
    func packets(_ length: Int) -> Int {
        length <= mtu ? 1 : (length + mtu - 1) / mtu
    }
}
