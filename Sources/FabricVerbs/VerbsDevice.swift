internal import CVerbs
import Crypto
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization
import Logging

/// An RDMA device through libibverbs and librdmacm: the fabric API on a real
/// card or on soft-RoCE (rxe). The data path is the provider's: posting
/// writes a work request to the device's queue, polling reads its
/// completion queue; this layer adds only the bookkeeping the API promises
/// (work request ids, selective signalling, statuses).
public final class VerbsDevice: FabricDevice, @unchecked Sendable {  // immutable after init
    public typealias ProtectionDomain = VerbsProtectionDomain
    public typealias MemoryRegion = VerbsMemoryRegion
    public typealias CompletionQueue = VerbsCompletionQueue
    public typealias SharedReceiveQueue = VerbsSharedReceiveQueue
    public typealias QueuePair = VerbsQueuePair
    public typealias ConnectionRequest = VerbsConnectionRequest
    public typealias Listener = VerbsListener
    public typealias ConnectAttempt = VerbsConnectAttempt

    public let backendName = "verbs"
    public var wireVersion: Int { Int(ConnectionProof.version) }
    /// 32 bits: a tagged connect request carries it in 4 bytes.
    public let instance: UInt64
    /// Tagged connections and connects, for the tie-break of crossing
    /// connects (FabricSupport/ConnectionTags.swift).
    let tags: Mutex<ConnectionTags>
    public let name: String
    public let capabilities: DeviceCapabilities
    /// Where the job secret came from.
    public let secretSource: JobSecret.Source

    /// Owned by librdmacm, which opens every device once per process and
    /// hands the same context to every connection identifier on it: objects
    /// made here can be used with its connections. Never closed by us.
    let context: UnsafeMutablePointer<ibv_context>
    /// Keeps librdmacm's reference on the context (see DeviceOpening).
    private let deviceList: UnsafeMutablePointer<UnsafeMutablePointer<ibv_context>?>
    /// How many RDMA READs and atomics one queue pair may have outstanding.
    let readDepth: UInt8
    let secret: SymmetricKey
    let replayGuard = ReplayGuard()
    let logger: Logger
    let forkDetection = ForkDetection()
    /// Established connections and the thread that follows their events.
    let events: ConnectionEvents

    /// Opens the RDMA device `name` (nil: the first with an active port).
    public convenience init(name: String? = nil, logger: Logger = Logger(label: "fabric.verbs")) throws(FabricError) {
        try self.init(name: name, secret: nil, logger: logger)
    }

    /// Opens a device with an explicit job secret (at least 16 bytes).
    public init(name: String? = nil, secret explicitSecret: [UInt8]?, logger: Logger = Logger(label: "fabric.verbs")) throws(FabricError) {
        self.logger = logger
        let instance = UInt64(UInt32.random(in: 1...UInt32.max))
        self.instance = instance
        tags = Mutex(ConnectionTags(ownInstance: instance))
        DescriptorLimit.raiseToMaximum(logger: logger)
        if let explicitSecret {
            guard explicitSecret.count >= 16 else {
                throw FabricError(.invalidArgument, "the job secret must be at least 16 bytes; got \(explicitSecret.count)")
            }
            (secret, secretSource) = (SymmetricKey(data: explicitSecret), .explicit)
        } else {
            (secret, secretSource) = try JobSecret.load()
        }
        ForkSafety.prepare(logger: logger)
        let chosen = try DeviceOpening.open(named: name)
        context = chosen.context
        deviceList = chosen.list
        self.name = chosen.name
        do {
            (capabilities, readDepth) = try DeviceOpening.capabilities(of: context, name: chosen.name)
            events = try ConnectionEvents(context: context, logger: logger)
        } catch {
            rdma_free_devices(chosen.list)
            throw error
        }
    }

    deinit {
        guard !forkDetection.isForkedChild else { return }
        events.stop()
        rdma_free_devices(deviceList)
    }

    public func allocateProtectionDomain() throws(FabricError) -> VerbsProtectionDomain {
        try forkDetection.checkNotForked()
        guard let pd = ibv_alloc_pd(context) else {
            throw VerbsError.system("allocating a protection domain on \(name)")
        }
        return VerbsProtectionDomain(device: self, pd: pd)
    }

    public func registerMemory(
        _ address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess, in domain: VerbsProtectionDomain
    ) throws(FabricError) -> VerbsMemoryRegion {
        try forkDetection.checkNotForked()
        guard domain.device === self else {
            throw FabricError(.invalidArgument, "the protection domain belongs to another device")
        }
        guard length > 0 else { throw FabricError(.invalidArgument, "cannot register 0 bytes") }
        guard length <= capabilities.maxMemoryRegionSize else {
            throw FabricError(.invalidArgument, "cannot register \(length) bytes; \(name) allows \(capabilities.maxMemoryRegionSize)")
        }
        if !access.isDisjoint(with: [.remoteWrite, .remoteAtomic]) && !access.contains(.localWrite) {
            throw FabricError(.invalidArgument, "access \(access): remote-write and remote-atomic need local write as well")
        }
        guard let mr = ibv_reg_mr(domain.pd, address, length, Int32(bitPattern: access.verbsFlags)) else {
            throw VerbsError.registration(length: length, code: errno)
        }
        return VerbsMemoryRegion(domain: domain, mr: mr, access: access)
    }

    public func createCompletionQueue(capacity: Int) throws(FabricError) -> VerbsCompletionQueue {
        try forkDetection.checkNotForked()
        guard capacity > 0, capacity <= capabilities.maxCompletionQueueDepth else {
            throw FabricError(.invalidArgument, "completion queue capacity \(capacity): must be 1...\(capabilities.maxCompletionQueueDepth) on \(name)")
        }
        return try VerbsCompletionQueue(device: self, capacity: capacity)
    }

    public func createSharedReceiveQueue(
        in domain: VerbsProtectionDomain, capacity: Int, maxScatterEntries: Int
    ) throws(FabricError) -> VerbsSharedReceiveQueue {
        try forkDetection.checkNotForked()
        guard domain.device === self else {
            throw FabricError(.invalidArgument, "the protection domain belongs to another device")
        }
        guard capacity > 0, capacity <= capabilities.maxQueueDepth else {
            throw FabricError(.invalidArgument, "shared receive queue capacity \(capacity): must be 1...\(capabilities.maxQueueDepth)")
        }
        guard maxScatterEntries > 0, maxScatterEntries <= capabilities.maxScatterEntries else {
            throw FabricError(.invalidArgument, "maxScatterEntries \(maxScatterEntries): must be 1...\(capabilities.maxScatterEntries)")
        }
        return try VerbsSharedReceiveQueue(domain: domain, capacity: capacity, maxScatterEntries: maxScatterEntries)
    }

    public func connect(
        to endpoint: Endpoint, _ setup: QueuePairSetup<VerbsDevice>, options: ConnectOptions,
        prepare: (VerbsQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> (queuePair: VerbsQueuePair, privateData: [UInt8]) {
        try forkDetection.checkNotForked()
        let attempt = try VerbsConnectAttempt(device: self, endpoint: endpoint, setup: setup, options: options, prepare: nil)
        while true {
            if let connected = try attempt.advance(prepare: prepare) { return connected }
            attempt.waitForProgress()
        }
    }

    public func startConnect(
        to endpoint: Endpoint, _ setup: QueuePairSetup<VerbsDevice>, options: ConnectOptions,
        prepare: @escaping (VerbsQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> VerbsConnectAttempt {
        try forkDetection.checkNotForked()
        return try VerbsConnectAttempt(device: self, endpoint: endpoint, setup: setup, options: options, prepare: prepare)
    }

    public func listen(on endpoint: Endpoint, backlog: Int) throws(FabricError) -> VerbsListener {
        try forkDetection.checkNotForked()
        return try VerbsListener(device: self, endpoint: endpoint, backlog: backlog)
    }

    public func pollAsyncEvent() -> AsyncEvent? {
        events.nextEvent()
    }

    /// Checks the objects of a queue pair setup before anything is created.
    func validate(_ setup: QueuePairSetup<VerbsDevice>) throws(FabricError) {
        guard setup.protectionDomain.device === self, setup.sendCompletionQueue.device === self,
              setup.receiveCompletionQueue.device === self, setup.sharedReceiveQueue.map({ $0.domain.device === self }) ?? true
        else {
            throw FabricError(.invalidArgument, "the queue pair setup mixes objects of different devices")
        }
        let limits = setup.limits
        guard limits.sendQueueDepth > 0, limits.sendQueueDepth <= capabilities.maxQueueDepth else {
            throw FabricError(.invalidArgument, "send queue depth \(limits.sendQueueDepth): must be 1...\(capabilities.maxQueueDepth) on \(name)")
        }
        guard setup.sharedReceiveQueue != nil || (limits.receiveQueueDepth > 0 && limits.receiveQueueDepth <= capabilities.maxQueueDepth) else {
            throw FabricError(.invalidArgument, "receive queue depth \(limits.receiveQueueDepth): must be 1...\(capabilities.maxQueueDepth) on \(name)")
        }
        for (label, value) in [("maxSendScatterEntries", limits.maxSendScatterEntries), ("maxReceiveScatterEntries", limits.maxReceiveScatterEntries)] {
            guard value > 0, value <= capabilities.maxScatterEntries else {
                throw FabricError(.invalidArgument, "\(label) \(value): must be 1...\(capabilities.maxScatterEntries) on \(name)")
            }
        }
        guard limits.maxInlineData >= 0, limits.maxInlineData <= capabilities.maxInlineData else {
            throw FabricError(.invalidArgument, "maxInlineData \(limits.maxInlineData): must be 0...\(capabilities.maxInlineData) on \(name)")
        }
        guard (0...RetryPolicy.maxTransportRetries).contains(setup.retry.transportRetries) else {
            throw FabricError(.invalidArgument, "transport retries \(setup.retry.transportRetries): must be 0...\(RetryPolicy.maxTransportRetries) (verbs retry_cnt)")
        }
    }
}

extension MemoryAccess {
    /// The verbs access flags of these rights.
    var verbsFlags: UInt32 {
        var flags: UInt32 = 0
        if contains(.localWrite) { flags |= IBV_ACCESS_LOCAL_WRITE.rawValue }
        if contains(.remoteWrite) { flags |= IBV_ACCESS_REMOTE_WRITE.rawValue }
        if contains(.remoteRead) { flags |= IBV_ACCESS_REMOTE_READ.rawValue }
        if contains(.remoteAtomic) { flags |= IBV_ACCESS_REMOTE_ATOMIC.rawValue }
        return flags
    }
}

/// Errors of the verbs backend, with what to do about them.
enum VerbsError {
    static func text(_ code: Int32) -> String { SystemCalls.errorText(code) }

    static func system(_ what: String, _ code: Int32 = errno) -> FabricError {
        FabricError(.system(errno: code), "\(what): \(text(code))")
    }

    /// A failed registration: nearly always the locked-memory limit.
    static func registration(length: Int, code: Int32) -> FabricError {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit)
        let current = limit.rlim_cur == rlim_t.max ? "unlimited" : "\(limit.rlim_cur / 1024) KiB"
        switch code {
        case ENOMEM, EAGAIN, EPERM:
            return FabricError(.limitExceeded, "registering \(length) bytes failed: \(text(code)); the locked-memory limit (ulimit -l) is \(current): raise it (ulimit -l unlimited, memlock in /etc/security/limits.conf, or --ulimit memlock=-1 for a container)")
        case EFAULT:
            return FabricError(.invalidArgument, "registering \(length) bytes failed: the range is not mapped in this process")
        default:
            return system("registering \(length) bytes", code)
        }
    }
}

/// ibv_fork_init, unless the kernel already copies pinned pages at fork.
enum ForkSafety {
    private static let done: Void = {
        if ibv_is_fork_initialized() == IBV_FORK_DISABLED {
            _ = ibv_fork_init()
        }
    }()

    static func prepare(logger: Logger) {
        _ = done
        if ibv_is_fork_initialized() == IBV_FORK_DISABLED {
            logger.warning("libibverbs fork protection could not be enabled before the first registration; a child process that touches registered pages may corrupt transfers (set RDMAV_FORK_SAFE=1 in the environment)")
        }
    }
}
