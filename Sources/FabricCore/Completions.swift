/// Completions: what a completion queue reports about finished work requests.

/// The outcome of a work request (verbs: `ibv_wc_status`, the subset a
/// reliable connection produces).
public enum CompletionStatus: UInt8, Hashable, Sendable, CustomStringConvertible {
    case success = 0
    /// A receive buffer was too small for the message, or a local length did
    /// not match the operation (verbs: IBV_WC_LOC_LEN_ERR).
    case localLengthError
    /// A local scatter element named a key, range or right this queue pair
    /// may not use (verbs: IBV_WC_LOC_PROT_ERR).
    case localProtectionError
    /// The queue pair was in the error state; the request was not executed
    /// (verbs: IBV_WC_WR_FLUSH_ERR).
    case flushed
    /// The peer refused the key, range or right of a WRITE, READ or atomic
    /// (verbs: IBV_WC_REM_ACCESS_ERR).
    case remoteAccessError
    /// The peer could not accept the request: too long for its receive
    /// buffer, or an operation it does not support (verbs: IBV_WC_REM_INV_REQ_ERR).
    case remoteInvalidRequest
    /// The peer failed while executing the request (verbs: IBV_WC_REM_OP_ERR).
    case remoteOperationError
    /// The peer had no receive posted, and retries ran out
    /// (verbs: IBV_WC_RNR_RETRY_EXC_ERR).
    case receiverNotReadyRetryExceeded
    /// The peer stopped answering or is gone (verbs: IBV_WC_RETRY_EXC_ERR).
    case transportRetryExceeded
    /// The peer sent something the protocol does not allow
    /// (verbs: IBV_WC_BAD_RESP_ERR).
    case badResponse
    /// Anything else, with the reason in the completion's detail
    /// (verbs: IBV_WC_GENERAL_ERR).
    case generalError
    /// The device could not execute the request as posted (verbs:
    /// IBV_WC_LOC_QP_OP_ERR; rxe reports a bad local key or an unusable
    /// receive this way, where other devices say local protection or length
    /// error). Last, so that the values before it, which the tcp wire
    /// protocol carries in NAKs, keep their numbers.
    case localQueuePairOperationError

    public var description: String {
        switch self {
        case .success: return "success"
        case .localLengthError: return "local length error"
        case .localProtectionError: return "local protection error"
        case .localQueuePairOperationError: return "local queue pair operation error"
        case .flushed: return "flushed"
        case .remoteAccessError: return "remote access error"
        case .remoteInvalidRequest: return "remote invalid request"
        case .remoteOperationError: return "remote operation error"
        case .receiverNotReadyRetryExceeded: return "receiver not ready, retries exceeded"
        case .transportRetryExceeded: return "transport retries exceeded"
        case .badResponse: return "bad response"
        case .generalError: return "general error"
        }
    }
}

/// Why a request failed, in more words than the status (verbs' vendor error,
/// but portable). `none` on success.
public enum CompletionDetail: UInt16, Error, Hashable, Sendable, CustomStringConvertible {
    case none = 0
    case unknownKey
    case keyOfAnotherProtectionDomain
    case outOfBounds
    case accessNotGranted
    case unalignedAtomic
    case atomicLength
    case pageNotMapped
    case receiveBufferTooSmall
    case messageTooLong
    case tooManyScatterEntries
    case inlineTooLong
    case peerClosedConnection
    case peerTimedOut
    case malformedFrame
    case truncatedFrame
    case oversizedFrame
    case unknownOpcode
    case unsupportedVersion
    case unexpectedResponse
    case queuePairInError
    case completionQueueOverrun
    case localMemoryFault
    case operationNotSupported
    case disconnected
    /// The software NIC's fault script caused it (docs/emulation.md).
    case injectedFault

    public var description: String {
        switch self {
        case .none: return "no detail"
        case .unknownKey: return "the remote key is not registered (never issued, or deregistered)"
        case .keyOfAnotherProtectionDomain: return "the key belongs to another protection domain"
        case .outOfBounds: return "the range is outside the registered region"
        case .accessNotGranted: return "the region was not registered with that access right"
        case .unalignedAtomic: return "the atomic's address is not 8-byte aligned"
        case .atomicLength: return "an atomic needs exactly one 8-byte local buffer"
        case .pageNotMapped: return "the region's memory is no longer mapped"
        case .receiveBufferTooSmall: return "the message is longer than the posted receive buffer"
        case .messageTooLong: return "the message is longer than the device's maximum"
        case .tooManyScatterEntries: return "more scatter entries than the queue pair allows"
        case .inlineTooLong: return "inline payload longer than the queue pair's maximum"
        case .peerClosedConnection: return "the peer closed the connection"
        case .peerTimedOut: return "the peer did not answer within the timeout"
        case .malformedFrame: return "the peer sent a malformed frame"
        case .truncatedFrame: return "the connection ended inside a frame"
        case .oversizedFrame: return "the peer sent a frame longer than the maximum message"
        case .unknownOpcode: return "the peer sent an unknown opcode"
        case .unsupportedVersion: return "the peer speaks another protocol version"
        case .unexpectedResponse: return "the peer answered a request that was not outstanding"
        case .queuePairInError: return "the queue pair is in the error state"
        case .completionQueueOverrun: return "the completion queue overflowed"
        case .localMemoryFault: return "local memory of the request is not mapped"
        case .operationNotSupported: return "the operation is not supported by this device"
        case .disconnected: return "the queue pair was disconnected"
        case .injectedFault: return "a fault the emulator's fault script injected"
        }
    }
}

/// What finished (verbs: `ibv_wc_opcode`).
public enum CompletionOpcode: UInt8, Hashable, Sendable, CustomStringConvertible {
    case send, write, read, fetchAndAdd, compareAndSwap
    /// A SEND (with or without immediate) arrived in a posted receive.
    case receive
    /// A WRITE with immediate consumed a posted receive.
    case receiveWithImmediate

    public var description: String {
        switch self {
        case .send: return "send"
        case .write: return "write"
        case .read: return "read"
        case .fetchAndAdd: return "fetch-and-add"
        case .compareAndSwap: return "compare-and-swap"
        case .receive: return "receive"
        case .receiveWithImmediate: return "receive-with-immediate"
        }
    }
}

/// One work completion (verbs: `ibv_wc`). A plain value, 32 bytes, so that
/// polling a batch into a caller's buffer allocates nothing.
public struct Completion: Hashable, Sendable, CustomStringConvertible {
    public var workRequestID: UInt64
    public var byteLength: UInt32
    public var immediate: UInt32
    public var queuePair: QueuePairNumber
    public var status: CompletionStatus
    public var opcode: CompletionOpcode
    public var hasImmediate: Bool
    public var detail: CompletionDetail

    public init(
        workRequestID: UInt64, status: CompletionStatus, opcode: CompletionOpcode,
        byteLength: UInt32 = 0, immediate: UInt32? = nil,
        queuePair: QueuePairNumber, detail: CompletionDetail = .none
    ) {
        self.workRequestID = workRequestID
        self.status = status
        self.opcode = opcode
        self.byteLength = byteLength
        self.immediate = immediate ?? 0
        self.hasImmediate = immediate != nil
        self.queuePair = queuePair
        self.detail = detail
    }

    /// A placeholder to fill completion buffers with.
    public static let empty = Completion(workRequestID: 0, status: .success, opcode: .send, queuePair: QueuePairNumber(rawValue: 0))

    public var isSuccess: Bool { status == .success }

    public var description: String {
        var text = "\(opcode) id \(workRequestID) \(status)"
        if status == .success {
            text += ", \(byteLength) B"
            if hasImmediate { text += ", immediate \(immediate)" }
        } else if detail != .none {
            text += ": \(detail)"
        }
        return text + " (\(queuePair))"
    }
}
