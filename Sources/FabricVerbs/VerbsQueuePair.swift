internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// A reliable connected queue pair (ibv_qp of type RC) with its rdma_cm
/// identifier.
public final class VerbsQueuePair: FabricQueuePair, @unchecked Sendable {  // immutable; rings are behind locks
    let device: VerbsDevice
    // Kept alive while the queue pair uses them.
    let domain: VerbsProtectionDomain
    let sendQueue: VerbsCompletionQueue
    let receiveQueue: VerbsCompletionQueue
    let qp: UnsafeMutablePointer<ibv_qp>
    let work: QueuePairWork
    public let number: QueuePairNumber
    public let limits: QueuePairLimits
    let retry: RetryPolicy
    /// Set once the connection is established.
    private let connection = Mutex<ConnectionRecord?>(nil)
    /// The connection's rdma_cm identifier: the queue pair holds it from
    /// creation on, and it goes (after the ibv_qp, in `deinit`) when the
    /// queue pair does.
    private let identifier: RDMAIdentifier
    /// The connection's entry in the device's tie-break table, if tagged:
    /// dropped with the queue pair.
    private let tagEntry = Mutex<ConnectionTags.RecordID?>(nil)
    var tagRecord: ConnectionTags.RecordID? {
        get { tagEntry.withLock { $0 } }
        set { tagEntry.withLock { $0 = newValue } }
    }

    /// Creates the queue pair (in the reset state) for connection `id`.
    init(
        device: VerbsDevice, setup: QueuePairSetup<VerbsDevice>, identifier: RDMAIdentifier
    ) throws(FabricError) {
        try device.validate(setup)
        var attributes = ibv_qp_init_attr()
        attributes.send_cq = setup.sendCompletionQueue.cq
        attributes.recv_cq = setup.receiveCompletionQueue.cq
        attributes.srq = setup.sharedReceiveQueue?.srq
        attributes.qp_type = IBV_QPT_RC
        attributes.sq_sig_all = 0
        attributes.cap.max_send_wr = UInt32(setup.limits.sendQueueDepth)
        attributes.cap.max_recv_wr = setup.sharedReceiveQueue == nil ? UInt32(setup.limits.receiveQueueDepth) : 0
        attributes.cap.max_send_sge = UInt32(setup.limits.maxSendScatterEntries)
        attributes.cap.max_recv_sge = UInt32(setup.limits.maxReceiveScatterEntries)
        attributes.cap.max_inline_data = UInt32(setup.limits.maxInlineData)
        guard let qp = ibv_create_qp(setup.protectionDomain.pd, &attributes) else {
            throw VerbsError.system("creating a queue pair (send depth \(setup.limits.sendQueueDepth), receive depth \(setup.limits.receiveQueueDepth))")
        }
        self.device = device
        domain = setup.protectionDomain
        sendQueue = setup.sendCompletionQueue
        receiveQueue = setup.receiveCompletionQueue
        self.qp = qp
        self.identifier = identifier
        number = QueuePairNumber(rawValue: qp.pointee.qp_num)
        limits = setup.limits
        retry = setup.retry
        work = QueuePairWork(number: number, limits: setup.limits, shared: setup.sharedReceiveQueue)
        sendQueue.attach(work)
        receiveQueue.attach(work)
    }

    deinit {
        // In a forked child every handle is the parent's: leave them alone.
        guard !device.forkDetection.isForkedChild else { return }
        if let record = connection.withLock({ $0 }) {
            record.closedLocally.store(true, ordering: .releasing)
            device.events.remove(record)
            rdma_disconnect(identifier.id)
        }
        sendQueue.detach(number)
        receiveQueue.detach(number)
        ibv_destroy_qp(qp)
        if let record = tagRecord { device.tags.withLock { $0.remove(record) } }
    }

    /// The connection is up: its events are followed from now on.
    func established() {
        let record = ConnectionRecord(id: identifier.id, qp: qp)
        connection.withLock { $0 = record }
        device.events.add(record)
    }

    public var state: QueuePairState {
        guard !device.forkDetection.isForkedChild else { return .error }
        var attributes = ibv_qp_attr()
        var initial = ibv_qp_init_attr()
        guard ibv_query_qp(qp, &attributes, Int32(IBV_QP_STATE.rawValue), &initial) == 0 else { return .error }
        switch attributes.qp_state {
        case IBV_QPS_RTS, IBV_QPS_SQD: return .readyToSend
        case IBV_QPS_ERR, IBV_QPS_SQE: return .error
        default: return .initialized
        }
    }

    public func disconnect() {
        guard !device.forkDetection.isForkedChild else { return }
        let record = connection.withLock { $0 }
        record?.closedLocally.store(true, ordering: .releasing)
        var attributes = ibv_qp_attr()
        attributes.qp_state = IBV_QPS_ERR
        _ = ibv_modify_qp(qp, &attributes, Int32(IBV_QP_STATE.rawValue))
        if record != nil { rdma_disconnect(identifier.id) }
    }

    struct PreparedSend {
        var flags: UInt32
        var opcode: CompletionOpcode
        var length: UInt64
        var userSignaled: Bool
    }

    /// Checks a request against the queue pair and the device (the rules
    /// every backend shares, `WorkRequestValidation`) and works out its
    /// verbs flags.
    @inline(__always)
    func prepare(_ request: SendWorkRequest) throws(FabricError) -> PreparedSend {
        try WorkRequestValidation.check(request, limits: limits, capabilities: device.capabilities, on: number)
        var flags: UInt32 = 0
        if request.flags.contains(.fence) { flags |= IBV_SEND_FENCE.rawValue }
        let opcode: CompletionOpcode
        switch request.operation {
        case .send, .sendWithImmediate, .write, .writeWithImmediate:
            opcode = request.operation.isSend ? .send : .write
            // Inline means something only to a request that carries a payload.
            if request.flags.contains(.inline) { flags |= IBV_SEND_INLINE.rawValue }
        case .read: opcode = .read
        case .fetchAndAdd: opcode = .fetchAndAdd
        case .compareAndSwap: opcode = .compareAndSwap
        }
        return PreparedSend(flags: flags, opcode: opcode, length: request.local.totalLength, userSignaled: request.flags.contains(.signaled))
    }

    public func postSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        try device.forkDetection.checkNotForked()
        let prepared = try prepare(request)
        return try work.send.withLock { (ring) throws(FabricError) -> PostResult in
            if ring.isFull { return .wouldBlock }
            let signal = prepared.userSignaled || ring.needsSignal
            let scratch = ring.scratch.request, elements = ring.scratch.elements
            let count = PostingBuffers.copy(request.local, into: elements)
            PostingBuffers.fill(
                &scratch.pointee, request, id: ring.posted, flags: prepared.flags | (signal ? IBV_SEND_SIGNALED.rawValue : 0),
                elements: count == 0 ? nil : elements, count: count)
            var bad: UnsafeMutablePointer<ibv_send_wr>?
            let code = ibv_post_send(qp, scratch, &bad)
            if code == ENOMEM { return .wouldBlock }
            if code != 0 { throw VerbsError.system("posting \(request.operation.name) on \(number)", code) }
            ring.record(prepared.slot(request.id), signaledToDevice: signal)
            return .posted
        }
    }

    /// Posts the batch as one linked list: one call into the provider, one
    /// doorbell. Every request is checked first; none is posted if one is
    /// refused.
    public func postSend(_ requests: UnsafeBufferPointer<SendWorkRequest>) throws(FabricError) -> Int {
        try device.forkDetection.checkNotForked()
        guard !requests.isEmpty else { return 0 }
        if requests.count == 1 { return try postSend(requests[0]) == .posted ? 1 : 0 }
        return try withUnsafeTemporaryAllocation(of: PreparedSend.self, capacity: requests.count) { prepared throws(FabricError) -> Int in
            var elements = 0
            for index in requests.indices {
                prepared.initializeElement(at: index, to: try prepare(requests[index]))
                elements += requests[index].local.count
            }
            return try work.send.withLock { (ring) throws(FabricError) -> Int in
                let count = min(requests.count, ring.capacity - Int(ring.posted &- ring.retired))
                guard count > 0 else { return 0 }
                // Signal as single posts would have.
                var run = ring.unsignaledRun
                for index in 0..<count {
                    let signal = prepared[index].userSignaled || ring.needsSignal(after: index, run: run)
                    run = signal ? 0 : run + 1
                    if signal { prepared[index].flags |= IBV_SEND_SIGNALED.rawValue }
                }
                let (code, accepted) = PostingBuffers.withSendList(
                    requests, flags: { prepared[$0].flags }, count: count, elements: elements, firstID: ring.posted
                ) { first, bad in ibv_post_send(qp, first, &bad) }
                for index in 0..<accepted {
                    let signaled = prepared[index].flags & IBV_SEND_SIGNALED.rawValue != 0
                    ring.record(prepared[index].slot(requests[index].id), signaledToDevice: signaled)
                }
                if accepted == 0 && code != 0 && code != ENOMEM {
                    throw VerbsError.system("posting \(count) requests on \(number)", code)
                }
                return accepted
            }
        }
    }

    public func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult {
        try device.forkDetection.checkNotForked()
        try WorkRequestValidation.check(request, limits: limits, usesSharedReceiveQueue: work.shared != nil, on: number)
        return try work.receive.withLock { (ring) throws(FabricError) -> PostResult in
            if ring.isFull { return .wouldBlock }
            let wr = ring.scratch.receive(request.local, id: WorkRequestTag.receive | ring.posted)
            var bad: UnsafeMutablePointer<ibv_recv_wr>?
            let code = ibv_post_recv(qp, wr, &bad)
            if code == ENOMEM { return .wouldBlock }
            if code != 0 { throw VerbsError.system("posting a receive on \(number)", code) }
            ring.record(request.id)
            return .posted
        }
    }
}

extension VerbsQueuePair.PreparedSend {
    func slot(_ userID: UInt64) -> SendSlot {
        SendSlot(userID: userID, byteLength: UInt32(truncatingIfNeeded: length), opcode: opcode, userSignaled: userSignaled)
    }
}

extension SendOperation {
    var isSend: Bool {
        switch self {
        case .send, .sendWithImmediate: return true
        default: return false
        }
    }

}

/// Builds verbs work requests on the stack: no allocation per post.
enum PostingBuffers {
    /// Copies a scatter list into a device one (room for the queue pair's
    /// maximum, which posting checked); returns its length.
    @inline(__always)
    static func copy(_ list: ScatterList, into elements: UnsafeMutablePointer<ibv_sge>) -> Int32 {
        switch list {
        case .empty:
            return 0
        case .single(let element):
            elements[0] = ibv_sge(addr: element.address, length: element.length, lkey: element.localKey.rawValue)
            return 1
        case .multiple(let items):
            for (index, element) in items.enumerated() {
                elements[index] = ibv_sge(addr: element.address, length: element.length, lkey: element.localKey.rawValue)
            }
            return Int32(items.count)
        }
    }

    /// Builds the first `count` requests as one linked list, all on the
    /// stack, and posts it. Returns the provider's code and how many
    /// requests it accepted (those before the one it refused).
    static func withSendList(
        _ requests: UnsafeBufferPointer<SendWorkRequest>, flags: (Int) -> UInt32, count: Int, elements: Int, firstID: UInt64,
        post: (UnsafeMutablePointer<ibv_send_wr>, inout UnsafeMutablePointer<ibv_send_wr>?) -> Int32
    ) -> (code: Int32, accepted: Int) {
        withUnsafeTemporaryAllocation(of: ibv_sge.self, capacity: max(1, elements)) { sges in
            withUnsafeTemporaryAllocation(of: ibv_send_wr.self, capacity: count) { wrs in
                var next = 0
                for index in 0..<count {
                    let request = requests[index]
                    let list = request.local
                    let base = sges.baseAddress! + next
                    _ = copy(list, into: base)
                    next += list.count
                    var wr = ibv_send_wr()
                    fill(&wr, request, id: firstID &+ UInt64(index), flags: flags(index), elements: list.count == 0 ? nil : base, count: Int32(list.count))
                    wr.next = index + 1 < count ? wrs.baseAddress! + index + 1 : nil
                    wrs.initializeElement(at: index, to: wr)
                }
                var bad: UnsafeMutablePointer<ibv_send_wr>?
                let code = post(wrs.baseAddress!, &bad)
                guard code != 0 else { return (0, count) }
                let accepted = bad.map { $0 - wrs.baseAddress! } ?? 0
                return (code, max(0, min(count, accepted)))
            }
        }
    }

    static func fill(
        _ wr: inout ibv_send_wr, _ request: SendWorkRequest, id: UInt64, flags: UInt32,
        elements: UnsafeMutablePointer<ibv_sge>?, count: Int32
    ) {
        wr.wr_id = id
        wr.sg_list = elements
        wr.num_sge = count
        wr.send_flags = flags
        switch request.operation {
        case .send:
            wr.opcode = IBV_WR_SEND
        case .sendWithImmediate(let immediate):
            wr.opcode = IBV_WR_SEND_WITH_IMM
            wr.imm_data = immediate.bigEndian
        case .write(let remote):
            wr.opcode = IBV_WR_RDMA_WRITE
            wr.wr.rdma.remote_addr = remote.address
            wr.wr.rdma.rkey = remote.key.rawValue
        case .writeWithImmediate(let remote, let immediate):
            wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM
            wr.imm_data = immediate.bigEndian
            wr.wr.rdma.remote_addr = remote.address
            wr.wr.rdma.rkey = remote.key.rawValue
        case .read(let remote):
            wr.opcode = IBV_WR_RDMA_READ
            wr.wr.rdma.remote_addr = remote.address
            wr.wr.rdma.rkey = remote.key.rawValue
        case .fetchAndAdd(let remote, let add):
            wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD
            wr.wr.atomic.remote_addr = remote.address
            wr.wr.atomic.rkey = remote.key.rawValue
            wr.wr.atomic.compare_add = add
        case .compareAndSwap(let remote, let compare, let swap):
            wr.opcode = IBV_WR_ATOMIC_CMP_AND_SWP
            wr.wr.atomic.remote_addr = remote.address
            wr.wr.atomic.rkey = remote.key.rawValue
            wr.wr.atomic.compare_add = compare
            wr.wr.atomic.swap = swap
        }
    }
}
