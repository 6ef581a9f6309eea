/// What a device can do, queried once at setup so that protocols choose
/// their paths before the data moves (verbs: `ibv_device_attr` plus the
/// behaviours that differ between a card and the software NIC).
public struct DeviceCapabilities: Hashable, Sendable, Codable {
    /// How registered memory relates to the process's mappings.
    public enum MemoryModel: String, Hashable, Sendable, Codable {
        /// Registration pins the pages: if the owner unmaps and maps the range
        /// again, the device keeps using the old pages (a real card, rxe).
        case pinned
        /// The device reads and writes the current mapping at every access,
        /// like on-demand paging; an unmapped range gives an access error.
        case followsCurrentMapping
    }

    /// Who executes one-sided operations at the target.
    public enum OneSidedProgress: String, Hashable, Sendable, Codable {
        /// The hardware: works even while the target process is stopped.
        case hardware
        /// A thread of the target process (the software NIC): works while the
        /// target computes without calling the library, not while it is
        /// stopped (SIGSTOP) or dead.
        case targetProgressThread
    }

    /// On-demand paging (verbs: `odp_caps` from `ibv_query_device_ex`):
    /// whether memory can be registered without pinning, the device
    /// faulting pages in as it touches them, and for which operations of a
    /// reliable connection. Probed and reported; the library does not use
    /// it yet: rxe offers it from Linux 6.15 (seen on 7.3.4 in the VM), and
    /// the cache has not been measured or tested on it
    /// (docs/registration-cache.md).
    public struct OnDemandPaging: Hashable, Sendable, Codable {
        /// The device can register memory without pinning it.
        public var available: Bool
        /// The whole address space can be registered at once.
        public var implicit: Bool
        /// The operations of reliable connections that may use such
        /// memory, in the order send, receive, write, read, atomic.
        public var reliableConnectedOperations: [String]

        public init(available: Bool, implicit: Bool = false, reliableConnectedOperations: [String] = []) {
            self.available = available
            self.implicit = implicit
            self.reliableConnectedOperations = reliableConnectedOperations
        }

        /// A device without it (every device the tcp backend emulates).
        public static let none = OnDemandPaging(available: false)

        /// One line for the info tools.
        public var summary: String {
            guard available else { return "none" }
            let operations = reliableConnectedOperations.isEmpty ? "no RC operation" : "RC " + reliableConnectedOperations.joined(separator: ", ")
            return "\(operations)\(implicit ? ", implicit" : ""); the registration cache pins all the same (docs/registration-cache.md)"
        }
    }

    /// Atomicity of remote atomics (verbs: `ibv_atomic_cap`).
    public enum AtomicSupport: String, Hashable, Sendable, Codable {
        case none
        /// Atomic with respect to other atomics through the same device.
        case device
        /// Atomic with respect to the CPUs as well.
        case global
    }

    public var maxMessageSize: Int
    public var maxInlineData: Int
    public var maxScatterEntries: Int
    public var maxQueuePairs: Int
    public var maxQueueDepth: Int
    public var maxCompletionQueueDepth: Int
    public var maxMemoryRegions: Int
    public var maxMemoryRegionSize: Int
    public var maxPrivateData: Int
    public var atomics: AtomicSupport
    public var memoryModel: MemoryModel
    public var oneSidedProgress: OneSidedProgress
    /// The path MTU in bytes (verbs: the port's active MTU): the size of
    /// the packets a message is cut into.
    public var mtu: Int
    /// RDMA READs and atomics one queue pair keeps outstanding as
    /// initiator; later ones wait. The verbs backend asks rdma_cm for
    /// min(16, `max_qp_rd_atom`, `max_qp_init_rd_atom`) and reports that.
    public var maxOutstandingReads: Int
    public var onDemandPaging: OnDemandPaging

    public init(
        maxMessageSize: Int, maxInlineData: Int, maxScatterEntries: Int, maxQueuePairs: Int,
        maxQueueDepth: Int, maxCompletionQueueDepth: Int, maxMemoryRegions: Int,
        maxMemoryRegionSize: Int, maxPrivateData: Int, atomics: AtomicSupport,
        memoryModel: MemoryModel, oneSidedProgress: OneSidedProgress,
        mtu: Int = 4096, maxOutstandingReads: Int = 16, onDemandPaging: OnDemandPaging = .none
    ) {
        self.maxMessageSize = maxMessageSize
        self.maxInlineData = maxInlineData
        self.maxScatterEntries = maxScatterEntries
        self.maxQueuePairs = maxQueuePairs
        self.maxQueueDepth = maxQueueDepth
        self.maxCompletionQueueDepth = maxCompletionQueueDepth
        self.maxMemoryRegions = maxMemoryRegions
        self.maxMemoryRegionSize = maxMemoryRegionSize
        self.maxPrivateData = maxPrivateData
        self.atomics = atomics
        self.memoryModel = memoryModel
        self.oneSidedProgress = oneSidedProgress
        self.mtu = mtu
        self.maxOutstandingReads = maxOutstandingReads
        self.onDemandPaging = onDemandPaging
    }
}

/// The sizes of a queue pair, chosen at creation (verbs: `ibv_qp_cap`).
public struct QueuePairLimits: Hashable, Sendable {
    public var sendQueueDepth: Int
    public var receiveQueueDepth: Int
    public var maxSendScatterEntries: Int
    public var maxReceiveScatterEntries: Int
    public var maxInlineData: Int

    public init(
        sendQueueDepth: Int = 128, receiveQueueDepth: Int = 128,
        maxSendScatterEntries: Int = 4, maxReceiveScatterEntries: Int = 4,
        maxInlineData: Int = 64
    ) {
        self.sendQueueDepth = sendQueueDepth
        self.receiveQueueDepth = receiveQueueDepth
        self.maxSendScatterEntries = maxSendScatterEntries
        self.maxReceiveScatterEntries = maxReceiveScatterEntries
        self.maxInlineData = maxInlineData
    }
}

/// Retry behaviour of a reliable connection (verbs: `rnr_retry`,
/// `min_rnr_timer`, `retry_cnt`, `timeout`).
public struct RetryPolicy: Hashable, Sendable {
    /// How often a SEND that found no posted receive is tried again; nil
    /// retries forever (verbs: rnr_retry 7).
    public var receiverNotReadyRetries: Int?
    /// The wait before such a retry. On the verbs backend this becomes the
    /// queue pair's RNR timer, which the device announces to its peer: it is
    /// how long the *peer* waits before sending to us again, so both sides
    /// should use the same policy.
    public var receiverNotReadyDelay: Duration
    /// How long an operation may wait for the peer's acknowledgement or
    /// response before it fails with `transportRetryExceeded`.
    public var responseTimeout: Duration
    /// How often a request whose packet was lost is sent again (verbs:
    /// retry_cnt, 0 to 7). The attempts share `responseTimeout`: each waits
    /// responseTimeout / (transportRetries + 1) before the next.
    public var transportRetries: Int

    public init(
        receiverNotReadyRetries: Int? = 7, receiverNotReadyDelay: Duration = .microseconds(200),
        responseTimeout: Duration = .seconds(10), transportRetries: Int = 7
    ) {
        self.receiverNotReadyRetries = receiverNotReadyRetries
        self.receiverNotReadyDelay = receiverNotReadyDelay
        self.responseTimeout = responseTimeout
        self.transportRetries = transportRetries
    }

    /// The most transport retries a verbs queue pair can be given.
    public static let maxTransportRetries = 7
}

/// The life of a queue pair (verbs: `ibv_qp_state`, simplified to what a
/// connection manager exposes).
public enum QueuePairState: String, Hashable, Sendable {
    /// Created, receives may be posted, not yet connected.
    case initialized
    /// Connected: sends and one-sided operations flow.
    case readyToSend
    /// Failed: everything outstanding completes as flushed.
    case error
}
