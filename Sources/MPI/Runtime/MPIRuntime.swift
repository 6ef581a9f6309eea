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
/// Not for use from several threads at once (MPI_THREAD_SINGLE).
public final class MPIRuntime {
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

    private let bootstrap: any BootstrapClient
    private let transport: any RuntimeTransport
    private let waiting: WaitDescription
    private let diagnostics: DispatchSourceSignal
    private var finalized = false

    /// Keys of the job's key-value space.
    enum Keys {
        static func address(_ rank: Int) -> String { "fabric-address-\(rank)" }
        static let rootHost = "fabric-host-0"
        static let rootBackend = "fabric-backend-0"
        static func diagnostics(_ rank: Int) -> String { "fabric-diagnostics-\(rank)" }
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
        let waiting = WaitDescription()
        self.waiting = waiting
        let started: (any RuntimeTransport, FabricAddress)
        do {
            switch choice.backend {
            case .tcp:
                started = try Self.start(TCPDevice(secret: secret, logger: logger), bootstrap: bootstrap, waiting: waiting)
            case .verbs:
                started = try Self.start(VerbsDevice(name: nil, secret: secret, logger: logger), bootstrap: bootstrap, waiting: waiting)
            }
        } catch let error as FabricError {
            throw MPIError(error, while: "opening the \(choice.backend.rawValue) fabric device (\(choice.reason))")
        } catch let error as MPIError {
            throw error
        } catch {
            throw MPIError(.invalidState, "\(error)")
        }
        (transport, address) = started
        diagnostics = Self.installDiagnostics(rank: bootstrap.rank, waiting: waiting)
        do {
            if rank == 0 {
                try bootstrap.put(key: Keys.rootHost, value: PMIValueText.encode(Self.hostName()))
                try bootstrap.put(key: Keys.rootBackend, value: PMIValueText.encode("\(backend) (\(backendReason))"))
            }
            try bootstrap.put(key: Keys.address(rank), value: address.description)
            try bootstrap.put(key: Keys.diagnostics(rank), value: "SIGUSR1")
            waiting.begin("the start-up fence (every rank publishing its address)")
            try bootstrap.fence()
            waiting.end()
            try checkSameBackend()
        } catch let error as PMIError {
            transport.close()
            throw MPIError(error)
        } catch let error as MPIError {
            transport.close()
            throw error
        } catch {
            transport.close()
            throw MPIError(.invalidState, "\(error)")
        }
        logger.debug("MPI runtime started", metadata: ["size": "\(size)", "backend": "\(backend)", "bootstrap": "\(bootstrapProtocol)"])
    }

    /// Opens the listener and the connection table on `device` (the
    /// backend's generics stay inside).
    private static func start<D: FabricDevice>(
        _ device: D, bootstrap: any BootstrapClient, waiting: WaitDescription
    ) throws(MPIError) -> (any RuntimeTransport, FabricAddress) {
        let listener: D.Listener
        do { listener = try device.listen(on: Endpoint(host: "0.0.0.0", port: 0), backlog: 1024) } catch {
            throw MPIError(error, while: "listening for the other ranks")
        }
        let expectedBackend = device.backendName
        let connections = try PeerConnections(
            rank: bootstrap.rank, size: bootstrap.size, device: device, listener: listener, waiting: waiting
        ) { (peer: Int) throws(MPIError) -> FabricAddress in
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
        return (connections, listener.address)
    }

    /// Every rank compares its backend with rank 0's: if all match rank 0
    /// they all match, and each rank reads one value, not one per rank.
    private func checkSameBackend() throws(MPIError) {
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
    public var connectionCount: Int { transport.connectionCount }

    /// Sends an internal message of the runtime (at most 4 KiB) to `rank`,
    /// connecting to it first if this is the first use. Returns once the
    /// peer's queue pair has taken it.
    public func sendRuntimeMessage(_ bytes: [UInt8], to rank: Int) throws(MPIError) {
        try checkOpen()
        try transport.send(bytes, to: rank)
    }

    /// The next internal message from `rank`, waiting for it.
    public func receiveRuntimeMessage(from rank: Int) throws(MPIError) -> [UInt8] {
        try checkOpen()
        return try transport.receive(from: rank)
    }

    // MARK: - The end

    /// Waits for every rank (a barrier along the ring: a token goes round
    /// twice, the first time gathering, the second releasing), then closes
    /// the connections and says goodbye to the launcher.
    public func finalize() throws(MPIError) {
        try checkOpen()
        if size > 1 {
            let next = (rank + 1) % size
            let previous = (rank + size - 1) % size
            defer { waiting.end() }
            for round in 0..<2 {
                let token: [UInt8] = [0x46, UInt8(round)]
                waiting.begin("the finalize barrier (round \(round + 1) of 2)")
                if rank == 0 {
                    try transport.send(token, to: next)
                    _ = try transport.receive(from: previous)
                } else {
                    _ = try transport.receive(from: previous)
                    try transport.send(token, to: next)
                }
            }
        }
        finalized = true
        transport.close()
        diagnostics.cancel()
        do { try bootstrap.finalize() } catch { throw MPIError(error) }
    }

    /// Ends the whole job: the launcher is asked to stop every rank with
    /// `exitCode`; this process exits with it in any case.
    public func abort(exitCode: Int32, message: String) -> Never {
        logger.error("aborting the job: \(message)")
        bootstrap.abort(exitCode: exitCode, message: message)
        exit(exitCode)
    }

    private func checkOpen() throws(MPIError) {
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
