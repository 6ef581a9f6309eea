internal import CVerbs
import FabricCore
import FabricSupport
import Glibc
import Synchronization

/// Moving a queue pair through its states with the attributes rdma_cm
/// negotiated, plus ours: access rights, retry counts, timers.
enum Transitions {
    static let remoteAccess = MemoryAccess([.remoteWrite, .remoteRead, .remoteAtomic])

    private static func move(
        _ qp: UnsafeMutablePointer<ibv_qp>, _ id: UnsafeMutablePointer<rdma_cm_id>, to state: ibv_qp_state,
        _ what: String, adjust: (inout ibv_qp_attr, inout Int32) -> Void
    ) throws(FabricError) {
        var attributes = ibv_qp_attr()
        var mask: Int32 = 0
        attributes.qp_state = state
        guard rdma_init_qp_attr(id, &attributes, &mask) == 0 else {
            throw VerbsError.system("getting the attributes to move a queue pair to \(what)")
        }
        adjust(&attributes, &mask)
        let code = ibv_modify_qp(qp, &attributes, mask)
        guard code == 0 else { throw VerbsError.system("moving a queue pair to \(what)", code) }
    }

    static func toInitialized(_ qp: VerbsQueuePair, _ id: UnsafeMutablePointer<rdma_cm_id>, access: MemoryAccess) throws(FabricError) {
        try move(qp.qp, id, to: IBV_QPS_INIT, "INIT") { attributes, mask in
            attributes.qp_access_flags = access.verbsFlags
            mask |= Int32(IBV_QP_ACCESS_FLAGS.rawValue)
        }
    }

    static func toReadyToReceive(_ qp: VerbsQueuePair, _ id: UnsafeMutablePointer<rdma_cm_id>, access: MemoryAccess?) throws(FabricError) {
        try move(qp.qp, id, to: IBV_QPS_RTR, "RTR") { attributes, mask in
            attributes.min_rnr_timer = receiverNotReadyTimerCode(qp.retry.receiverNotReadyDelay)
            mask |= Int32(IBV_QP_MIN_RNR_TIMER.rawValue)
            if let access {
                attributes.qp_access_flags = access.verbsFlags
                mask |= Int32(IBV_QP_ACCESS_FLAGS.rawValue)
            }
        }
    }

    static func toReadyToSend(_ qp: VerbsQueuePair, _ id: UnsafeMutablePointer<rdma_cm_id>) throws(FabricError) {
        try move(qp.qp, id, to: IBV_QPS_RTS, "RTS") { attributes, mask in
            attributes.timeout = timeoutCode(qp.retry.responseTimeout, attempts: qp.retry.transportRetries + 1)
            attributes.retry_cnt = UInt8(qp.retry.transportRetries)
            attributes.rnr_retry = receiverNotReadyRetryCount(qp.retry)
            mask |= Int32(IBV_QP_TIMEOUT.rawValue | IBV_QP_RETRY_CNT.rawValue | IBV_QP_RNR_RETRY.rawValue)
        }
    }

    /// The connection parameters both sides send: our proof as private
    /// data, read depths, retry counts, and the queue pair we made ourselves.
    static func withParameters(
        privateData: [UInt8], responderResources: UInt8, initiatorDepth: UInt8,
        queuePair: VerbsQueuePair, setup: QueuePairSetup<VerbsDevice>, _ body: (inout rdma_conn_param) -> Int32
    ) -> Int32 {
        privateData.withUnsafeBytes { bytes in
            var parameters = rdma_conn_param()
            parameters.private_data = bytes.baseAddress
            parameters.private_data_len = UInt8(bytes.count)
            parameters.responder_resources = responderResources
            parameters.initiator_depth = initiatorDepth
            parameters.retry_count = UInt8(setup.retry.transportRetries)  // ignored when accepting
            parameters.rnr_retry_count = receiverNotReadyRetryCount(setup.retry)
            parameters.srq = setup.sharedReceiveQueue == nil ? 0 : 1
            parameters.qp_num = queuePair.number.rawValue
            return body(&parameters)
        }
    }

    /// rnr_retry: 7 means forever; otherwise at most 6.
    static func receiverNotReadyRetryCount(_ policy: RetryPolicy) -> UInt8 {
        guard let retries = policy.receiverNotReadyRetries else { return 7 }
        return UInt8(max(0, min(6, retries)))
    }

    /// The InfiniBand RNR timer code whose delay is the smallest at least
    /// `delay` (code 0 is the longest, 655.36 ms).
    static func receiverNotReadyTimerCode(_ delay: Duration) -> UInt8 {
        let microseconds: [Int64] = [
            655_360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560,
            3840, 5120, 7680, 10240, 15360, 20480, 30720, 40960, 61440, 81920, 122_880, 163_840,
            245_760, 327_680, 491_520,
        ]
        let (seconds, attoseconds) = delay.components
        guard seconds < 1000 else { return 0 }
        let wanted = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        for code in 1..<microseconds.count where microseconds[code] >= wanted { return UInt8(code) }
        return 0
    }

    /// The local ACK timeout code: 4.096 us x 2^code per attempt, so that
    /// `attempts` (retry_cnt + 1) fit within `timeout`.
    static func timeoutCode(_ timeout: Duration, attempts: Int = 8) -> UInt8 {
        let perAttempt = timeout.inNanoseconds / Double(max(1, attempts)) / 4096
        guard perAttempt > 2 else { return 1 }
        return UInt8(max(1, min(31, Int(log2(perAttempt)))))
    }
}
