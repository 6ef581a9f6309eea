import Dispatch
import Fabric
import Glibc
import Logging
import PMI

/// One MPI process's runtime: who it is in the job, its fabric device, its
/// connections to the other ranks (made on first use), and the job's end.
///
/// `initialize` reads the environment its launcher gave it (our mpirun,
/// MPICH's Hydra, Slurm's srun, or none: a singleton), agrees on the job
/// secret, opens the fabric device as the fabric chooses it, publishes its
/// address and passes the first fence. Every rank must choose the same
/// backend; one that does not fails its initialisation, naming both hosts,
/// and ends the job.
///
/// Point-to-point messaging is in MPIRuntime+PointToPoint.swift. Every
/// operation may be called from any thread at any time (the provided
/// thread level is `.multiple`).
public final class MPIRuntime: @unchecked Sendable {  // the transport locks its own state; `finalized` and the error handler are set by the application's calls
    public let rank: Int
    public let size: Int
    /// The fabric backend ("tcp" or "verbs") and why it was chosen.
    public let backend: String
    public let backendReason: String
    /// The launcher's protocol ("PMI-2 over PMI_FD", "singleton", ...).
    public let bootstrapProtocol: String
    public let logger: Logger
    /// This rank's fabric address, as published.
    public let address: FabricAddress
    /// Every rank of the job (MPI_COMM_WORLD).
    public let world: Communicator
    /// This rank alone (MPI_COMM_SELF).
    public let selfCommunicator: Communicator

    /// What an error of an MPI operation does (MPI_Comm_set_errhandler on
    /// every communicator): end the job (the default), or be thrown.
    public var errorHandler: ErrorHandler = .abortJob
    /// The thread level this runtime provides (MPI_Init_thread's answer).
    public let providedThreadLevel: ThreadLevel = .multiple

    private let bootstrap: any BootstrapClient
    let transport: PointToPointTransport
    /// The collectives in flight (blocking ones too, while they run).
    let collectives: CollectiveProgress
    /// Which algorithm each collective uses.
    let collectiveSettings: CollectiveSettings
    /// The buffer for buffered sends, while one is attached.
    let attachedBuffer = AttachedBuffer()
    /// The next context this rank would propose for a new communicator.
    let contexts = ContextCounter()
    /// Communicators' names and attributes.
    let attributes = CommunicatorAttributes()
    /// Communicators' Cartesian and graph topologies.
    let topologies = CommunicatorTopologies()
    /// The windows of one-sided communication.
    let windows = WindowTable()
    /// The runtime's own messages (the finalize barrier) travel on a
    /// communicator of their own, so they never match an application's receive.
    let runtimeCommunicator: Communicator
    private let waiting: WaitDescription
    private let diagnostics: DispatchSourceSignal
    private var finalized = false

    /// Keys of the job's key-value space.
    enum Keys {
        static func address(_ rank: Int) -> String { "fabric-address-\(rank)" }
        static let rootHost = "fabric-host-0"
        static let rootBackend = "fabric-backend-0"
        static func diagnostics(_ rank: Int) -> String { "fabric-diagnostics-\(rank)" }
        static let pointToPointSettings = "fabric-p2p-settings-0"
    }

    /// Starts the runtime. `logger`: where the runtime logs (default:
    /// rank-tagged warnings on standard error, `FABRIC_LOG_LEVEL` raises it).
    public static func initialize(environment: [String: String]? = nil, logger: Logger? = nil) throws(MPIError) -> MPIRuntime {
        let environment = environment ?? Fabric.environmentVariables()
        let bootstrap: any BootstrapClient
        do {
            bootstrap = try BootstrapSelection.connect(BootstrapSelection.choose(from: environment))
        } catch {
            throw MPIError(error)
        }
        let logger = logger ?? RankLogHandler.logger(rank: bootstrap.rank, environment: environment)
        do {
            return try MPIRuntime(bootstrap: bootstrap, environment: environment, logger: logger)
        } catch {
            logger.error("MPI initialisation failed: \(error.message)")
            // The other ranks would wait for this one: end the job.
            if bootstrap.size > 1 { bootstrap.abort(exitCode: 1, message: error.message) }
            throw error
        }
    }

    /// Rank 0 says which backend the job uses (FABRIC_LOG_LEVEL=info shows
    /// it). Falling back to tcp where RDMA device files exist is a warning
    /// every rank gives: the user most likely meant the card to be used (a
    /// container given /dev/infiniband without the rights to use it, say).
    private static func logChoice(_ choice: BackendChoice, rank: Int, logger: Logger) {
        if choice.backend == .tcp && !choice.forced && access("/dev/infiniband", F_OK) == 0 {
            logger.warning("RDMA device files exist, but the verbs backend cannot be used: \(choice.reason)")
        } else if rank == 0 {
            logger.info("fabric backend: \(choice.backend.rawValue) (\(choice.reason))")
        }
    }

    private init(bootstrap: any BootstrapClient, environment: [String: String], logger: Logger) throws(MPIError) {
        self.bootstrap = bootstrap
        self.logger = logger
        rank = bootstrap.rank
        size = bootstrap.size
        world = .world(rank: bootstrap.rank, size: bootstrap.size)
        selfCommunicator = .only(bootstrap.rank)
        bootstrapProtocol = bootstrap.protocolName
        let (secret, _) = try JobSecretExchange.obtain(bootstrap: bootstrap, environment: environment)
        let choice: BackendChoice
        do { choice = try Fabric.choose(environment: environment) } catch { throw MPIError(error, while: "choosing the fabric backend") }
        backend = choice.backend.rawValue
        backendReason = choice.reason
        Self.logChoice(choice, rank: bootstrap.rank, logger: logger)
        let waiting = WaitDescription()
        self.waiting = waiting
        runtimeCommunicator = Communicator(context: 2, internalContext: 2, rank: bootstrap.rank, worldRanks: Array(0..<bootstrap.size))
        let opened: OpenedDevice
        do {
            switch choice.backend {
            case .tcp:
                opened = try Self.open(TCPDevice(secret: secret, logger: logger), bootstrap: bootstrap, waiting: waiting)
            case .verbs:
                opened = try Self.open(VerbsDevice(name: nil, secret: secret, logger: logger), bootstrap: bootstrap, waiting: waiting)
            }
        } catch let error as FabricError {
            throw MPIError(error, while: "opening the \(choice.backend.rawValue) fabric device (\(choice.reason))")
        } catch let error as MPIError {
            throw error
        } catch {
            throw MPIError(.invalidState, "\(error)")
        }
        address = opened.address
        diagnostics = Self.installDiagnostics(rank: bootstrap.rank, waiting: waiting)
        collectiveSettings = try CollectiveSettings.fromEnvironment(environment)
        var settings = try PointToPointSettings.choose(capabilities: opened.capabilities, environment: environment)
        do {
            if rank == 0 {
                try bootstrap.put(key: Keys.rootHost, value: PMIValueText.encode(Self.hostName()))
                try bootstrap.put(key: Keys.rootBackend, value: PMIValueText.encode("\(backend) (\(backendReason))"))
                try bootstrap.put(key: Keys.pointToPointSettings, value: settings.published)
            }
            try bootstrap.put(key: Keys.address(rank), value: address.description)
            try bootstrap.put(key: Keys.diagnostics(rank), value: "SIGUSR1")
            waiting.begin("the start-up fence (every rank publishing its address)")
            try bootstrap.fence()
            waiting.end()
            try Self.checkSameBackend(rank: rank, backend: backend, reason: backendReason, bootstrap: bootstrap)
            if rank != 0 {
                // Slot sizes and credits must agree on both ends of every
                // connection: rank 0's are the job's.
                try settings.adopt(published: bootstrap.get(key: Keys.pointToPointSettings))
            }
        } catch let error as PMIError {
            opened.close()
            throw MPIError(error)
        } catch let error as MPIError {
            opened.close()
            throw error
        } catch {
            opened.close()
            throw MPIError(.invalidState, "\(error)")
        }
        // The listener accepts from here on: peers that passed the fence
        // and connected first waited in its backlog.
        transport = try opened.start(settings)
        collectives = CollectiveProgress(transport: transport)
        for communicator in [world, world.internalCommunicator, selfCommunicator, runtimeCommunicator] { transport.register(communicator) }
        logger.debug("MPI runtime started", metadata: ["size": "\(size)", "backend": "\(backend)", "bootstrap": "\(bootstrapProtocol)"])
    }

    /// A device with its listener open, before point-to-point starts on it
    /// (the device's generics stay inside the closures).
    private struct OpenedDevice {
        var address: FabricAddress
        var capabilities: DeviceCapabilities
        var start: (PointToPointSettings) throws(MPIError) -> PointToPointTransport
        var close: () -> Void
    }

    /// Opens the listener on `device`; `start` makes the point-to-point
    /// engine (and its connection table) once the job's settings are known.
    private static func open<D: FabricDevice>(
        _ device: D, bootstrap: any BootstrapClient, waiting: WaitDescription
    ) throws(MPIError) -> OpenedDevice {
        let listener: D.Listener
        do { listener = try device.listen(on: Endpoint(host: "0.0.0.0", port: 0), backlog: 1024) } catch {
            throw MPIError(error, while: "listening for the other ranks")
        }
        let expectedBackend = device.backendName
        let addressOf = { (peer: Int) throws(MPIError) -> FabricAddress in
            let text: String
            do throws(PMIError) { text = try bootstrap.get(key: Keys.address(peer)) } catch { throw MPIError(error) }
            let address: FabricAddress
            do throws(FabricError) { address = try FabricAddress(parsing: text) } catch {
                throw MPIError(.peerFailed, "rank \(peer) published '\(text)' as its fabric address: \(error.message)")
            }
            guard address.backend == expectedBackend else {
                throw MPIError(.mismatchedBackends, "rank \(peer) uses the \(address.backend) backend, this rank \(expectedBackend)")
            }
            return address
        }
        return OpenedDevice(
            address: listener.address, capabilities: device.capabilities,
            start: { (settings) throws(MPIError) -> PointToPointTransport in
                PointToPointTransport(try PointToPointEngine(
                    rank: bootstrap.rank, size: bootstrap.size, device: device, listener: listener, settings: settings,
                    waiting: waiting, addressOf: addressOf))
            },
            close: { listener.close() })
    }

    /// Every rank compares its backend with rank 0's: if all match rank 0
    /// they all match, and each rank reads one value, not one per rank.
    private static func checkSameBackend(rank: Int, backend: String, reason backendReason: String, bootstrap: any BootstrapClient) throws(MPIError) {
        guard rank != 0 else { return }
        do {
            let root = try FabricAddress(parsing: bootstrap.get(key: Keys.address(0)))
            guard root.backend == backend else {
                let rootHost = PMIValueText.decode(try bootstrap.get(key: Keys.rootHost)) ?? "?"
                let rootBackend = PMIValueText.decode(try bootstrap.get(key: Keys.rootBackend)) ?? root.backend
                throw MPIError(.mismatchedBackends, "rank \(rank) on \(Self.hostName()) chose the \(backend) backend (\(backendReason)), but rank 0 on \(rootHost) chose \(rootBackend): every rank of a job must use one backend (set FABRIC_BACKEND the same for all, or give every host the same RDMA devices)")
            }
        } catch let error as PMIError {
            throw MPIError(error)
        } catch let error as FabricError {
            throw MPIError(.peerFailed, "rank 0's fabric address: \(error.message)")
        } catch let error as MPIError {
            throw error
        } catch {
            throw MPIError(.invalidState, "\(error)")
        }
    }

    // MARK: - Runtime messages

    /// Queue pairs this rank has to other ranks (each made on first use).
    public var connectionCount: Int { transport.connectionCount() }

    /// The largest runtime message.
    public static let runtimeMessageLimit = 4096

    /// Sends an internal message of the runtime (at most 4 KiB) to `rank`,
    /// connecting to it first if this is the first use, on the runtime's
    /// own communicator. Returns once the message has left.
    public func sendRuntimeMessage(_ bytes: [UInt8], to rank: Int) throws(MPIError) {
        try checkOpen()
        guard bytes.count <= Self.runtimeMessageLimit else {
            throw MPIError(.messageTooLong, "a runtime message of \(bytes.count) bytes; at most \(Self.runtimeMessageLimit)")
        }
        try checkOtherRank(rank)
        waiting.set("the send of a runtime message to rank \(rank)")
        defer { waiting.clear() }
        let request = try withBytes(of: bytes) { (buffer) throws(MPIError) -> Request in
            try transport.startSend(SendBuffer(buffer), rank, 0, runtimeCommunicator, false)
        }
        let status = try complete(request)
        if let error = status.error { throw error }
    }

    /// The next internal message from `rank`, waiting for it.
    public func receiveRuntimeMessage(from rank: Int) throws(MPIError) -> [UInt8] {
        try checkOpen()
        try checkOtherRank(rank)
        waiting.set("a runtime message from rank \(rank)")
        defer { waiting.clear() }
        var message = [UInt8](repeating: 0, count: Self.runtimeMessageLimit)
        let status = try withMutableBytes(of: &message) { (buffer) throws(MPIError) -> MessageStatus in
            let request = try transport.startReceive(ReceiveBuffer(buffer), MessageSource(rank), 0, runtimeCommunicator)
            return try complete(request)
        }
        if let error = status.error { throw error }
        message.removeSubrange(status.count...)
        return message
    }


    // MARK: - The end

    /// Completes this rank's sends, waits for every rank (a barrier along
    /// the ring: a token goes round twice, the first time gathering, the
    /// second releasing), then closes the connections and says goodbye to
    /// the launcher. No message sent before finalize is lost: a rank closes
    /// only once its own sends have landed and every rank has passed the
    /// barrier.
    public func finalize() throws(MPIError) {
        try checkOpen()
        // A barrier that cannot complete (a rank's connection is broken) is
        // reported after the end: the connections close and the launcher
        // hears this rank finalize either way.
        var failure: MPIError?
        do throws(MPIError) {
            try transport.drain()
            if size > 1 { try ringBarrier() }
            try transport.drain()
        } catch {
            failure = error
        }
        finalized = true
        transport.close()
        diagnostics.cancel()
        do { try bootstrap.finalize() } catch { throw MPIError(error) }
        if let failure { throw failure }
    }

    /// A token goes round the ring twice, the first time gathering, the
    /// second releasing.
    private func ringBarrier() throws(MPIError) {
        let next = (rank + 1) % size
        let previous = (rank + size - 1) % size
        defer { waiting.end() }
        for round in 0..<2 {
            let token: [UInt8] = [0x46, UInt8(round)]
            waiting.begin("the finalize barrier (round \(round + 1) of 2)")
            if rank == 0 {
                try sendRuntimeMessage(token, to: next)
                _ = try receiveRuntimeMessage(from: previous)
            } else {
                _ = try receiveRuntimeMessage(from: previous)
                try sendRuntimeMessage(token, to: next)
            }
        }
    }

    /// Ends the whole job: the launcher is asked to stop every rank with
    /// `exitCode`; this process exits with it in any case.
    public func abort(exitCode: Int32, message: String) -> Never {
        logger.error("aborting the job: \(message)")
        bootstrap.abort(exitCode: exitCode, message: message)
        exit(exitCode)
    }

    /// Runtime messages go between two different ranks of the job.
    private func checkOtherRank(_ rank: Int) throws(MPIError) {
        guard rank != self.rank, (0..<size).contains(rank) else {
            throw MPIError(.invalidRank, "rank \(rank) is not another rank of this job of \(size)")
        }
    }

    func checkOpen() throws(MPIError) {
        guard !finalized else { throw MPIError(.invalidState, "the MPI runtime of rank \(rank) is finalized") }
    }

    // MARK: - Helpers

    /// On SIGUSR1 the rank says what it is waiting for (mpirun sends it on
    /// --timeout, or when it gets SIGUSR1 itself).
    private static func installDiagnostics(rank: Int, waiting: WaitDescription) -> DispatchSourceSignal {
        signal(SIGUSR1, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: DispatchQueue(label: "mpi.diagnostics"))
        source.setEventHandler {
            let line = Array("[rank \(rank)] waiting for: \(waiting.current ?? "nothing (running outside MPI)")\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
        source.resume()
        return source
    }

    static func hostName() -> String {
        var name = [UInt8](repeating: 0, count: 256)
        gethostname(&name, name.count)
        return String(decoding: name.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
