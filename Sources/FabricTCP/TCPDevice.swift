import CFabricShims
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Logging

/// The software NIC: the fabric API over ordinary TCP sockets, with a
/// card's semantics (keys checked, data placed straight into registered
/// memory, one-sided operations served by the device's progress thread).
public final class TCPDevice: FabricDevice, @unchecked Sendable {  // immutable; shared state lives in the core
    public typealias ProtectionDomain = TCPProtectionDomain
    public typealias MemoryRegion = TCPMemoryRegion
    public typealias CompletionQueue = TCPCompletionQueue
    public typealias SharedReceiveQueue = TCPSharedReceiveQueue
    public typealias QueuePair = TCPQueuePair
    public typealias ConnectionRequest = TCPConnectionRequest
    public typealias Listener = TCPListener
    public typealias ConnectAttempt = TCPConnectAttempt

    public static let deviceName = "tcp0"

    /// What the software NIC offers with no profile chosen.
    public static var defaultCapabilities: DeviceCapabilities { DeviceProfile.softwareNIC.capabilities }

    let core: TCPDeviceCore
    public let backendName = "tcp"
    public var wireVersion: Int { Int(Handshake.version) }
    public var instance: UInt64 { core.instance }
    public var name: String { core.name }
    public var capabilities: DeviceCapabilities { core.capabilities }
    /// Where the job secret came from.
    public var secretSource: JobSecret.Source { core.secretSource }
    /// The card this device behaves like (docs/emulation.md).
    public let profile: DeviceProfile
    /// The link each of its queue pairs sits on (docs/emulation.md).
    public var link: LinkShape { core.link }
    /// The faults it injects (docs/emulation.md).
    public var faults: FaultScript { core.faults }

    /// Opens the software NIC with `profile`, `link` and `faults`, or for
    /// each one left nil what the environment says (FABRIC_TCP_PROFILE,
    /// FABRIC_TCP_LINK, FABRIC_TCP_FAULTS; by default the software NIC's own
    /// profile, an unshaped link, no faults). Fails if no job secret can be
    /// had (the environment variable is malformed, or the key file is
    /// unusable) or a setting is unknown or malformed.
    public convenience init(
        profile: DeviceProfile? = nil, link: LinkShape? = nil, faults: FaultScript? = nil,
        logger: Logger = Logger(label: "fabric.tcp")
    ) throws(FabricError) {
        try self.init(explicitSecret: nil, profile: profile, link: link, faults: faults, logger: logger)
    }

    /// Opens the software NIC with an explicit job secret (at least 16
    /// bytes), for programs that get it from somewhere else than the
    /// environment or the key file.
    public convenience init(
        secret: [UInt8], profile: DeviceProfile? = nil, link: LinkShape? = nil, faults: FaultScript? = nil,
        logger: Logger = Logger(label: "fabric.tcp")
    ) throws(FabricError) {
        guard secret.count >= 16 else {
            throw FabricError(.invalidArgument, "the job secret must be at least 16 bytes; got \(secret.count)")
        }
        try self.init(explicitSecret: secret, profile: profile, link: link, faults: faults, logger: logger)
    }

    /// What the caller chose, else what the environment says (read once).
    /// `spinBelow` (tests choose it; otherwise FABRIC_TCP_SPIN_BELOW or
    /// `TCPDeviceCore.defaultSpinThreshold`): see `TCPDeviceCore.spinBelow`.
    init(
        explicitSecret: [UInt8]?, profile: DeviceProfile?, link: LinkShape?, faults: FaultScript?,
        spinBelow: Duration? = nil, logger: Logger
    ) throws(FabricError) {
        let environment = profile == nil || link == nil || faults == nil || spinBelow == nil ? ProcessEnvironment.variables() : [:]
        if let profile {
            self.profile = profile
        } else {
            self.profile = try DeviceProfile.fromEnvironment(environment)
        }
        let chosenLink: LinkShape
        if let link {
            try link.validate()
            chosenLink = link
        } else {
            chosenLink = try LinkShape.fromEnvironment(environment)
        }
        let chosenFaults = if let faults { faults } else { try FaultScript.fromEnvironment(environment) }
        let chosenSpin = if let spinBelow { spinBelow } else { try TCPDeviceCore.spinThreshold(from: environment) }
        core = try TCPDeviceCore(
            name: Self.deviceName, profile: self.profile, link: chosenLink, faults: chosenFaults,
            spinBelow: chosenSpin.wholeNanoseconds, secret: explicitSecret, logger: logger)
    }

    deinit {
        core.stop()
    }

    /// The device's counters: totals over every queue pair it had, and each
    /// live one (also published for `fabric-info --counters`).
    public var counters: DeviceCounters { core.counterSnapshot() }

    /// Payload bytes the NIC copied rather than placed (small payloads read
    /// together with their header); docs/architecture.md, "Receiving", says when.
    public var copiedPayloadBytes: Int { core.copiedBytes.load(ordering: .relaxed) }

    public func allocateProtectionDomain() throws(FabricError) -> TCPProtectionDomain {
        try core.checkNotForked()
        return TCPProtectionDomain(device: core)
    }

    public func registerMemory(
        _ address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess, in domain: TCPProtectionDomain
    ) throws(FabricError) -> TCPMemoryRegion {
        try core.checkNotForked()
        guard domain.device === core else {
            throw FabricError(.invalidArgument, "the protection domain belongs to another device")
        }
        guard length > 0 else {
            throw FabricError(.invalidArgument, "cannot register 0 bytes")
        }
        guard length <= capabilities.maxMemoryRegionSize else {
            throw FabricError(.invalidArgument, "cannot register \(length) bytes; the device allows \(capabilities.maxMemoryRegionSize)")
        }
        guard UInt(bitPattern: address).addingReportingOverflow(UInt(length)).overflow == false else {
            throw FabricError(.invalidArgument, "the range at \(address) of \(length) bytes wraps around the address space")
        }
        if (access.contains(.remoteWrite) || access.contains(.remoteAtomic)) && !access.contains(.localWrite) {
            throw FabricError(.invalidArgument, "remote write and remote atomic access need local write access too (as on verbs)")
        }
        guard core.regions.count < capabilities.maxMemoryRegions else {
            throw FabricError(.limitExceeded, "the device has \(capabilities.maxMemoryRegions) memory regions registered already")
        }
        guard fabric_range_is_mapped(address, length) == 1 else {
            throw FabricError(.invalidArgument, "the range at \(address) of \(length) bytes is not mapped memory")
        }
        return TCPMemoryRegion(address: address, length: length, access: access, domain: domain, table: core.regions)
    }

    public func createCompletionQueue(capacity: Int) throws(FabricError) -> TCPCompletionQueue {
        try core.checkNotForked()
        guard capacity > 0, capacity <= capabilities.maxCompletionQueueDepth else {
            throw FabricError(.invalidArgument, "completion queue capacity \(capacity) is outside 1...\(capabilities.maxCompletionQueueDepth)")
        }
        return try TCPCompletionQueue(device: core, capacity: capacity)
    }

    public func createSharedReceiveQueue(in domain: TCPProtectionDomain, capacity: Int, maxScatterEntries: Int) throws(FabricError) -> TCPSharedReceiveQueue {
        try core.checkNotForked()
        guard capacity > 0, capacity <= capabilities.maxQueueDepth else {
            throw FabricError(.invalidArgument, "shared receive queue capacity \(capacity) is outside 1...\(capabilities.maxQueueDepth)")
        }
        guard maxScatterEntries > 0, maxScatterEntries <= capabilities.maxScatterEntries else {
            throw FabricError(.invalidArgument, "\(maxScatterEntries) scatter entries is outside 1...\(capabilities.maxScatterEntries)")
        }
        return TCPSharedReceiveQueue(domain: domain, table: core.regions, capacity: capacity, maxElements: maxScatterEntries)
    }

    /// The profile's queue pair limit (verbs: ENOMEM from ibv_create_qp).
    func checkQueuePairLimit() throws(FabricError) {
        let live = core.queuePairCount
        guard live < capabilities.maxQueuePairs else {
            throw FabricError(.limitExceeded, "the device has \(live) queue pairs; its profile '\(profile.name)' allows \(capabilities.maxQueuePairs)")
        }
    }

    func validate(_ setup: QueuePairSetup<TCPDevice>) throws(FabricError) {
        let limits = setup.limits
        let caps = capabilities
        func check(_ value: Int, _ range: ClosedRange<Int>, _ what: String) throws(FabricError) {
            guard range.contains(value) else {
                throw FabricError(.invalidArgument, "\(what) \(value) is outside \(range.lowerBound)...\(range.upperBound)")
            }
        }
        try check(limits.sendQueueDepth, 1...caps.maxQueueDepth, "send queue depth")
        try check(limits.receiveQueueDepth, 1...caps.maxQueueDepth, "receive queue depth")
        try check(limits.maxSendScatterEntries, 0...caps.maxScatterEntries, "send scatter entries")
        try check(limits.maxReceiveScatterEntries, 0...caps.maxScatterEntries, "receive scatter entries")
        try check(limits.maxInlineData, 0...caps.maxInlineData, "inline data size")
        try check(setup.retry.transportRetries, 0...RetryPolicy.maxTransportRetries, "transport retries")
        guard setup.protectionDomain.device === core, setup.sendCompletionQueue.device === core,
              setup.receiveCompletionQueue.device === core
        else {
            throw FabricError(.invalidArgument, "the protection domain and completion queues must belong to this device")
        }
        if let shared = setup.sharedReceiveQueue, shared.domain !== setup.protectionDomain {
            throw FabricError(.invalidArgument, "the shared receive queue belongs to another protection domain")
        }
    }

    public func connect(
        to endpoint: Endpoint, _ setup: QueuePairSetup<TCPDevice>, options: ConnectOptions,
        prepare: (TCPQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> (queuePair: TCPQueuePair, privateData: [UInt8]) {
        let attempt = try makeAttempt(to: endpoint, setup, options: options, prepare: nil)
        while true {
            if let connected = try attempt.advance(prepare: prepare) { return connected }
            attempt.waitForProgress()
        }
    }

    public func startConnect(
        to endpoint: Endpoint, _ setup: QueuePairSetup<TCPDevice>, options: ConnectOptions,
        prepare: @escaping (TCPQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> TCPConnectAttempt {
        try makeAttempt(to: endpoint, setup, options: options, prepare: prepare)
    }

    private func makeAttempt(
        to endpoint: Endpoint, _ setup: QueuePairSetup<TCPDevice>, options: ConnectOptions,
        prepare: ((TCPQueuePair) throws(FabricError) -> Void)?
    ) throws(FabricError) -> TCPConnectAttempt {
        try core.checkNotForked()
        try validate(setup)
        try checkQueuePairLimit()
        guard options.privateData.count <= Handshake.maxPrivateData else {
            throw FabricError(.invalidArgument, "private data of \(options.privateData.count) bytes; at most \(Handshake.maxPrivateData) are allowed")
        }
        return try TCPConnectAttempt(device: self, endpoint: endpoint, setup: setup, options: options, prepare: prepare)
    }

    public func listen(on endpoint: Endpoint, backlog: Int = 128) throws(FabricError) -> TCPListener {
        try core.checkNotForked()
        let (fd, bound) = try Sockets.listen(on: endpoint, backlog: backlog)
        let address: FabricAddress
        do {
            address = try InterfaceAddresses.listenerAddress(backend: backendName, wireVersion: wireVersion, bound: bound, instance: instance)
        } catch {
            SystemCalls.close(fd)
            throw error
        }
        do {
            return try TCPListener(fd: fd, endpoint: bound, address: address, device: self)
        } catch {
            SystemCalls.close(fd)
            throw error
        }
    }

    public func pollAsyncEvent() -> AsyncEvent? { core.pollEvent() }
}
