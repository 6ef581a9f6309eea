import FabricCore

/// The requester side of a queue pair: the send queue and its positions,
/// sequence numbers, the peer's cumulative acknowledgements, go-back after
/// an RNR NAK, and the response timer. A value without sockets or clocks of
/// its own: every time it needs is passed in, and it says what happened;
/// completions and the error state are the queue pair's business.
///
/// Positions only grow. `[head, acknowledged)` the peer accepted,
/// `[acknowledged, transmitted)` went to the socket, `[transmitted, tail)`
/// wait. A READ or atomic stays until its response arrived. A position's
/// sequence number is its low 32 bits.
struct Requester: ~Copyable {
    var sendQueue: SendQueueStorage
    private(set) var head = 0
    private(set) var acknowledged = 0
    private(set) var transmitted = 0
    private(set) var tail = 0
    /// READs and atomics sent and not yet answered.
    private(set) var outstandingReadAtomics = 0
    /// The most READs and atomics that were ever in flight at once (tests
    /// check the profile's limit with it).
    private(set) var outstandingReadAtomicsHighWater = 0
    /// READs and atomics kept in flight at most: the profile's limit, at
    /// most what a responder's queue holds.
    let maxOutstandingReads: Int
    let retry: RetryPolicy
    /// The policy's response timeout and RNR delay in nanoseconds, converted
    /// once: a `Duration`'s conversion (a 128-bit division) cost every
    /// progress round with a request in flight two of them, a busy-polling
    /// requester's every look included.
    private let responseTimeout: UInt64
    private let receiverNotReadyDelay: UInt64
    /// RNR retries left for the current request (nil: forever).
    private(set) var receiverNotReadyRetriesLeft: Int?
    /// When the requests sent again after an RNR NAK may go (0: none wait).
    private(set) var resendAt: UInt64 = 0
    /// The region the last send came from (see `RegionTable.checkLocal`).
    private var lastLocalRecord: RegionRecord?

    init(depth: Int, maxElements: Int, maxInline: Int, maxOutstandingReads: Int, retry: RetryPolicy) {
        sendQueue = SendQueueStorage(depth: depth, maxElements: maxElements, maxInline: maxInline)
        self.maxOutstandingReads = maxOutstandingReads
        self.retry = retry
        responseTimeout = MonotonicClock.nanoseconds(retry.responseTimeout)
        receiverNotReadyDelay = MonotonicClock.nanoseconds(retry.receiverNotReadyDelay)
        receiverNotReadyRetriesLeft = retry.receiverNotReadyRetries
    }

    @inline(__always) func sequence(of position: Int) -> UInt32 { UInt32(truncatingIfNeeded: position) }

    @inline(__always) func slot(_ position: Int) -> SendSlot { sendQueue.slots[sendQueue.index(position)] }

    var isFull: Bool { tail - head == sendQueue.depth }
    /// Requests posted and not yet completed.
    var isEmpty: Bool { head == tail }
    /// Requests that wait to be written.
    var hasUnsent: Bool { transmitted < tail }
    /// The requests after an RNR NAK wait for their delay.
    var waitsToResend: Bool { resendAt != 0 }

    // MARK: Posting

    /// What posting a request did.
    struct Queued {
        var position: Int
        /// A local scatter element that the key table refused.
        var localFailure: CompletionDetail?
    }

    /// Encodes `request` into the next slot and claims its local memory (an
    /// inline payload is copied now). The caller checked that there is room.
    /// (Inlined into the post, as it was before it had its own part: a
    /// call here costs the small sends several instructions.)
    @inline(__always)
    mutating func queue(_ request: SendWorkRequest, table: RegionTable, domain: ObjectIdentifier) -> Queued {
        let position = tail
        let slotIndex = sendQueue.index(position)
        var slot = SendSlot()
        slot.id = request.id
        slot.flags = request.flags
        slot.elementCount = request.local.count
        slot.completionOpcode = Self.completionOpcode(request.operation)
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
        if let localFailure {
            slot.status = .localProtectionError
            slot.detail = localFailure
        }
        header.encode(to: sendQueue.header(position))
        sendQueue.slots[slotIndex] = slot
        tail += 1
        return Queued(position: position, localFailure: localFailure)
    }

    static func completionOpcode(_ operation: SendOperation) -> CompletionOpcode {
        switch operation {
        case .send, .sendWithImmediate: return .send
        case .write, .writeWithImmediate: return .write
        case .read: return .read
        case .fetchAndAdd: return .fetchAndAdd
        case .compareAndSwap: return .compareAndSwap
        }
    }

    // MARK: Sending

    /// Whether the request at `position` may go out now, with `outstanding`
    /// READs and atomics in flight (counting those of the batch being
    /// built).
    @inline(__always)
    func mayTransmit(_ position: Int, outstanding: Int) -> Bool {
        guard resendAt == 0, position < tail else { return false }
        let slot = sendQueue.slots[sendQueue.index(position)]
        if slot.flags.contains(.fence) && outstanding > 0 { return false }
        if slot.awaitsResponse && outstanding >= maxOutstandingReads { return false }
        return true
    }

    /// The request at `position` (the next unsent one) began to leave at
    /// `now`: its response timer starts.
    @inline(__always)
    mutating func sent(_ position: Int, now: UInt64) {
        precondition(position == transmitted)
        transmitted += 1
        sendQueue.slots[sendQueue.index(position)].sentAt = now
        if sendQueue.slots[sendQueue.index(position)].awaitsResponse {
            outstandingReadAtomics += 1
            outstandingReadAtomicsHighWater = max(outstandingReadAtomicsHighWater, outstandingReadAtomics)
        }
    }

    /// The next unsent request fails before its first byte leaves; it
    /// counts as sent.
    mutating func failUnsent(_ position: Int, _ status: CompletionStatus, _ detail: CompletionDetail) {
        precondition(position == transmitted)
        transmitted += 1
        fail(position, status, detail)
    }

    /// Marks the request at `position` failed (its completion says so).
    @inline(__always)
    mutating func fail(_ position: Int, _ status: CompletionStatus, _ detail: CompletionDetail) {
        sendQueue.slots[sendQueue.index(position)].status = status
        sendQueue.slots[sendQueue.index(position)].detail = detail
    }

    /// Marks the oldest request failed, unless it already failed: the
    /// connection broke, and it reports why.
    mutating func failOldest(_ status: CompletionStatus, _ detail: CompletionDetail) {
        guard head < tail else { return }
        let index = sendQueue.index(head)
        if sendQueue.slots[index].status == .success {
            sendQueue.slots[index].status = status
            sendQueue.slots[index].detail = detail
        }
    }

    // MARK: Answers

    /// What an acknowledgement did.
    enum Acknowledgement {
        /// It acknowledges nothing new.
        case unchanged
        /// More requests are accepted: some may be finished now.
        case advanced
        /// It acknowledges a request never sent (a protocol violation).
        case beyondSent
    }

    /// The peer's cumulative acknowledgement: every request below `value`
    /// was accepted.
    @inline(__always)
    mutating func acknowledge(upTo value: UInt32) -> Acknowledgement {
        let newlyAcknowledged = Int(Int32(bitPattern: value &- sequence(of: acknowledged)))
        if newlyAcknowledged <= 0 { return .unchanged }
        guard acknowledged + newlyAcknowledged <= transmitted else { return .beyondSent }
        acknowledged += newlyAcknowledged
        // Progress: the RNR count starts over.
        receiverNotReadyRetriesLeft = retry.receiverNotReadyRetries
        return .advanced
    }

    /// The send-queue position of a request the peer answers, if it is one
    /// that was sent and not yet finished.
    func outstandingPosition(_ sequenceNumber: UInt32) -> Int? {
        let distance = Int(Int32(bitPattern: sequenceNumber &- sequence(of: head)))
        guard distance >= 0 else { return nil }
        let position = head + distance
        guard position < transmitted else { return nil }
        return position
    }

    /// A READ or atomic response arrived whole for `position`.
    mutating func responseArrived(_ position: Int) {
        sendQueue.slots[sendQueue.index(position)].responded = true
        outstandingReadAtomics -= 1
        // A response implies every earlier request was accepted.
        if acknowledged <= position { acknowledged = position + 1 }
    }

    /// An RNR NAK refused the request at `position`: everything from it
    /// goes again after the RNR delay, counted from `now`. False when its
    /// retries are used up (the caller fails it).
    mutating func receiverNotReady(at position: Int, now: UInt64) -> Bool {
        if let left = receiverNotReadyRetriesLeft {
            if left == 0 { return false }
            receiverNotReadyRetriesLeft = left - 1
        }
        for p in position..<transmitted where sendQueue.slots[sendQueue.index(p)].awaitsResponse {
            outstandingReadAtomics -= 1
        }
        transmitted = position
        if acknowledged > position { acknowledged = position }
        // A request still partly on the wire finishes its frame; the peer
        // drops it as out of sequence.
        resendAt = now &+ receiverNotReadyDelay
        return true
    }

    /// Whether the oldest request is finished: accepted, and answered if
    /// it is a READ or atomic. Completions leave in posting order.
    @inline(__always)
    var oldestFinished: Bool {
        guard head < acknowledged else { return false }
        let slot = sendQueue.slots[sendQueue.index(head)]
        return !slot.awaitsResponse || slot.responded
    }

    /// Takes the oldest request (finished) off the queue; its records let go.
    @inline(__always)
    mutating func retireOldest() {
        sendQueue.releaseRecords(head)
        head += 1
    }

    // MARK: Timers

    /// The RNR delay is over at `now`: the requests may go again.
    @inline(__always)
    mutating func resendIfDue(now: UInt64) {
        if resendAt != 0 && now >= resendAt { resendAt = 0 }
    }

    /// When a timer of the requester fires next: the RNR delay's end, or
    /// the oldest request's response timeout (or .max).
    @inline(__always)
    var deadline: UInt64 {
        var deadline = UInt64.max
        if resendAt != 0 { deadline = resendAt }
        if acknowledged < transmitted || head < acknowledged {
            let oldest = sendQueue.slots[sendQueue.index(head)].sentAt
            if oldest != 0 { deadline = min(deadline, oldest &+ responseTimeout) }
        }
        return deadline
    }

    /// Whether the oldest request sent has waited longer than the response
    /// timeout at `now`; if so it is marked failed (the caller ends the
    /// queue pair).
    mutating func responseTimedOut(now: UInt64) -> Bool {
        guard head < transmitted, now != 0 else { return false }
        let sentAt = sendQueue.slots[sendQueue.index(head)].sentAt
        guard sentAt != 0 else { return false }
        guard now > sentAt && now - sentAt > responseTimeout else { return false }
        fail(head, .transportRetryExceeded, .peerTimedOut)
        return true
    }

    // MARK: The error state

    /// Empties the queue for the error state, one request at a time in
    /// posting order: the request, and whether it had finished
    /// (acknowledged, not failed, answered if it had to be). Nil once the
    /// queue is empty; nothing is outstanding then.
    mutating func flushNext() -> (slot: SendSlot, finished: Bool)? {
        guard head < tail else {
            acknowledged = tail
            transmitted = tail
            outstandingReadAtomics = 0
            resendAt = 0
            return nil
        }
        let slot = sendQueue.slots[sendQueue.index(head)]
        let finished = head < acknowledged && slot.status == .success && (!slot.awaitsResponse || slot.responded)
        sendQueue.releaseRecords(head)
        head += 1
        return (slot, finished)
    }

    /// Bytes a successful completion reports.
    static func completedLength(_ slot: SendSlot) -> UInt32 {
        switch slot.opcode {
        case .fetchAndAdd, .compareAndSwap: return 8
        default: return UInt32(truncatingIfNeeded: slot.length)
        }
    }
}
