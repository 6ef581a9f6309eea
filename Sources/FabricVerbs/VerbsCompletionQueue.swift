internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// A completion queue (ibv_cq) with a completion channel for sleeping.
///
/// Polling reads the device's completions straight into a small buffer on
/// the stack and translates them: no lock but the queue pair's ring, no
/// allocation, no system call. The completion channel costs nothing until
/// someone sleeps: `wait` arms it for one sleep, and `fileDescriptor` puts
/// the queue in descriptor mode, where every poll re-arms it (one system
/// call on rxe) so that the descriptor is readable whenever work may be
/// waiting.
public final class VerbsCompletionQueue: FabricCompletionQueue, @unchecked Sendable {  // mutable state is atomic or behind locks
    let device: VerbsDevice
    let cq: UnsafeMutablePointer<ibv_cq>
    private let channel: UnsafeMutablePointer<ibv_comp_channel>
    public let capacity: Int

    /// The queue pairs that report here. A list, searched by number: a
    /// queue serves few queue pairs, and a scan beats hashing them.
    private let routes = Mutex<[QueuePairWork]>([])
    /// The shared receive queues of those queue pairs, kept while this
    /// queue lives: a receive completion whose queue pair is gone still
    /// returns its slot.
    private let sharedQueues = Mutex<[VerbsSharedReceiveQueue]>([])
    private let descriptorMode = Atomic<Bool>(false)
    /// A completion `wait` found after arming, handed to the next poll.
    private let stash = Mutex<Completion?>(nil)
    private let hasStash = Atomic<Bool>(false)

    /// Completions read from the device per call.
    static let batch = 16

    init(device: VerbsDevice, capacity: Int) throws(FabricError) {
        self.device = device
        self.capacity = capacity
        guard let channel = ibv_create_comp_channel(device.context) else {
            throw VerbsError.system("creating a completion channel")
        }
        SystemCalls.setNonBlocking(channel.pointee.fd)
        guard let cq = ibv_create_cq(device.context, Int32(capacity), nil, channel, 0) else {
            let code = errno
            ibv_destroy_comp_channel(channel)
            throw VerbsError.system("creating a completion queue of \(capacity) entries", code)
        }
        self.channel = channel
        self.cq = cq
    }

    deinit {
        guard !device.forkDetection.isForkedChild else { return }
        drainChannel()
        ibv_destroy_cq(cq)
        ibv_destroy_comp_channel(channel)
    }

    func attach(_ work: QueuePairWork) {
        routes.withLock { $0.append(work) }
        if let shared = work.shared {
            sharedQueues.withLock { list in
                if !list.contains(where: { $0 === shared }) { list.append(shared) }
            }
        }
    }

    /// A completion of a queue pair that is gone: only a shared receive
    /// queue's slot needs returning.
    private func releaseOrphan(_ id: UInt64) {
        guard id & WorkRequestTag.receive != 0, id & WorkRequestTag.shared != 0 else { return }
        let index = WorkRequestTag.sharedQueueIndex(id)
        let queue = sharedQueues.withLock { list in list.first { $0.index == index } }
        _ = queue?.slots.withLock { $0.complete(Int(id & WorkRequestTag.slotMask)) }
    }

    func detach(_ number: QueuePairNumber) {
        routes.withLock { $0.removeAll { $0.number == number } }
    }

    public var fileDescriptor: Int32 {
        if !descriptorMode.exchange(true, ordering: .relaxed) { rearm() }
        return channel.pointee.fd
    }

    public func poll(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        guard buffer.count > 0, !device.forkDetection.isForkedChild else { return 0 }
        var produced = 0
        if hasStash.load(ordering: .acquiring), let stashed = takeStash() {
            buffer[0] = stashed
            produced = 1
        }
        guard descriptorMode.load(ordering: .relaxed) else {
            while produced < buffer.count {
                let (found, read) = pollDevice(into: UnsafeMutableBufferPointer(rebasing: buffer[produced...]))
                produced += found
                // Stop when the device is empty, or after a batch that gave
                // something; go on when every completion read was internal
                // (a signal that only freed ring slots).
                if read == 0 || found > 0 { break }
            }
            return produced
        }
        // Descriptor mode: the channel raises an event only for completions
        // that arrive after arming, so arm only once the device was seen
        // empty, then look once more for what arrived just before. A caller
        // whose buffer filled polls again (see `fileDescriptor`).
        var empty = false
        while produced < buffer.count && !empty {
            let (found, read) = pollDevice(into: UnsafeMutableBufferPointer(rebasing: buffer[produced...]))
            produced += found
            empty = read == 0
        }
        if empty {
            rearm()
            while produced < buffer.count {
                let (found, read) = pollDevice(into: UnsafeMutableBufferPointer(rebasing: buffer[produced...]))
                produced += found
                if read == 0 { break }
            }
        }
        return produced
    }

    public func wait(timeout: Duration?) throws(FabricError) -> Bool {
        try device.forkDetection.checkNotForked()
        // One waiter at a time looks and stashes, so that two cannot both
        // take a completion and keep only one.
        let ready: Bool = stash.withLock { stashed in
            if stashed != nil { return true }
            rearm()
            // Completions that arrived before the arming raise no event:
            // look once more, keeping what is found for the next poll.
            var completion = Completion.empty
            let found = withUnsafeMutablePointer(to: &completion) { pointer in
                while true {
                    let (found, read) = pollDevice(into: UnsafeMutableBufferPointer(start: pointer, count: 1))
                    if found > 0 || read == 0 { return found }
                }
            }
            guard found == 1 else { return false }
            stashed = completion
            hasStash.store(true, ordering: .releasing)
            return true
        }
        if ready { return true }
        let result = SystemCalls.waitForInput(channel.pointee.fd, milliseconds: timeout.map(Self.milliseconds) ?? -1)
        if result < 0 {
            throw VerbsError.system("waiting on the completion channel")
        }
        return result != 0
    }

    /// A timeout in whole milliseconds, rounded up, clamped to what poll(2) takes.
    static func milliseconds(_ duration: Duration) -> Int32 { duration.wholeMillisecondsRoundedUp }

    private func takeStash() -> Completion? {
        stash.withLock { value in
            let taken = value
            value = nil
            hasStash.store(false, ordering: .releasing)
            return taken
        }
    }

    /// Consumes the channel's events and asks for one for the next completion.
    private func rearm() {
        drainChannel()
        _ = ibv_req_notify_cq(cq, 0)
    }

    private func drainChannel() {
        var eventQueue: UnsafeMutablePointer<ibv_cq>?
        var eventContext: UnsafeMutableRawPointer?
        var count: UInt32 = 0
        while ibv_get_cq_event(channel, &eventQueue, &eventContext) == 0 { count += 1 }
        if count > 0 { ibv_ack_cq_events(cq, count) }
    }

    /// Reads up to `buffer.count` device completions; returns how many the
    /// application gets and how many were read.
    private func pollDevice(into buffer: UnsafeMutableBufferPointer<Completion>) -> (found: Int, read: Int) {
        let want = min(buffer.count, Self.batch)
        return withUnsafeTemporaryAllocation(of: ibv_wc.self, capacity: Self.batch) { raw in
            let read = Int(ibv_poll_cq(cq, Int32(want), raw.baseAddress!))
            guard read > 0 else { return (0, 0) }
            return (deliver(UnsafeBufferPointer(rebasing: raw[..<read]), into: buffer), read)
        }
    }

    /// Translates what the device gave into the application's buffer.
    /// Kept out of line, so that the busy-polling loop above stays a few
    /// instructions long; the route table's lock is taken once per batch,
    /// and the routes are used in place, without a reference each.
    @inline(never)
    private func deliver(_ device: UnsafeBufferPointer<ibv_wc>, into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        routes.withLock { list in
            var found = 0
            var route = -1
            for wc in device {
                if route < 0 || list[route].number.rawValue != wc.qp_num {
                    route = list.firstIndex { $0.number.rawValue == wc.qp_num } ?? -1
                }
                // A completion of a queue pair already destroyed has no one
                // to go to.
                guard route >= 0 else {
                    releaseOrphan(wc.wr_id)
                    continue
                }
                // The list holds the route for the whole batch: no
                // reference of our own is needed.
                let completion = list.withUnsafeBufferPointer { routes in
                    Unmanaged.passUnretained(routes[route])._withUnsafeGuaranteedRef { Self.translate(wc, work: $0) }
                }
                if let completion {
                    buffer[found] = completion
                    found += 1
                }
            }
            return found
        }
    }

    /// A device completion as the application sees it, or nil for one that
    /// only freed ring slots.
    @inline(__always)
    static func translate(_ wc: ibv_wc, work: QueuePairWork) -> Completion? {
        let status = Self.status(wc.status)
        let queuePair = work.number
        if wc.wr_id & WorkRequestTag.receive != 0 {
            let index = wc.wr_id & WorkRequestTag.indexMask
            let userID: UInt64
            if wc.wr_id & WorkRequestTag.shared != 0 {
                userID = work.shared?.slots.withLock { $0.complete(Int(wc.wr_id & WorkRequestTag.slotMask)) } ?? 0
            } else {
                userID = work.receive.withLock { $0.retire(index) }
            }
            let withImmediate = wc.wc_flags & IBV_WC_WITH_IMM.rawValue != 0
            let opcode: CompletionOpcode = (status == .success && wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) ? .receiveWithImmediate : .receive
            return Completion(
                workRequestID: userID, status: status, opcode: opcode,
                byteLength: status == .success ? wc.byte_len : 0,
                immediate: withImmediate && status == .success ? UInt32(bigEndian: wc.imm_data) : nil,
                queuePair: queuePair, detail: detail(status))
        }
        guard let slot = work.send.withLock({ $0.retire(wc.wr_id, success: status == .success) }),
              slot.userSignaled || status != .success
        else { return nil }
        return Completion(
            workRequestID: slot.userID, status: status, opcode: slot.opcode,
            byteLength: status == .success ? slot.byteLength : 0,
            queuePair: queuePair, detail: detail(status))
    }

    @inline(__always)
    static func status(_ status: ibv_wc_status) -> CompletionStatus {
        switch status {
        case IBV_WC_SUCCESS: return .success
        case IBV_WC_LOC_LEN_ERR: return .localLengthError
        case IBV_WC_LOC_PROT_ERR, IBV_WC_LOC_ACCESS_ERR: return .localProtectionError
        case IBV_WC_LOC_QP_OP_ERR: return .localQueuePairOperationError
        case IBV_WC_WR_FLUSH_ERR: return .flushed
        case IBV_WC_REM_ACCESS_ERR: return .remoteAccessError
        case IBV_WC_REM_INV_REQ_ERR: return .remoteInvalidRequest
        case IBV_WC_REM_OP_ERR: return .remoteOperationError
        case IBV_WC_RNR_RETRY_EXC_ERR: return .receiverNotReadyRetryExceeded
        case IBV_WC_RETRY_EXC_ERR: return .transportRetryExceeded
        case IBV_WC_BAD_RESP_ERR: return .badResponse
        default: return .generalError
        }
    }

    /// A card names no cause beyond its status; these are what the status
    /// implies.
    @inline(__always)
    static func detail(_ status: CompletionStatus) -> CompletionDetail {
        switch status {
        case .flushed: return .queuePairInError
        case .transportRetryExceeded: return .peerTimedOut
        default: return .none
        }
    }
}
