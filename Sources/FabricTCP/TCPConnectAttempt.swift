import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc

/// A connect of the software NIC in progress: a non-blocking TCP connect
/// to each of the peer's resolved addresses in turn, then the client's
/// half of the handshake, moved on by `advance` whenever its socket is
/// ready. Not Sendable: it belongs to the thread that drives it.
public final class TCPConnectAttempt: FabricConnectAttempt {
    public typealias QueuePair = TCPQueuePair
    let device: TCPDevice
    let endpoint: Endpoint
    let setup: QueuePairSetup<TCPDevice>
    let options: ConnectOptions
    private let prepare: ((TCPQueuePair) throws(FabricError) -> Void)?
    private let deadline: UInt64
    private var candidates: [ResolvedAddress]
    private var socket: Int32 = -1
    private enum Phase { case connecting, handshaking, connected, failed }
    private var phase = Phase.connecting
    private var failure: FabricError?
    private var handshake: ClientHandshake
    private var io = HandshakeIO()
    /// The attempt's entry in the device's tie-break table, if tagged.
    private var tagRecord: ConnectionTags.RecordID?
    private var result: (queuePair: TCPQueuePair, privateData: [UInt8])?
    /// Why the previous address failed, for the error if all do.
    private var lastFailure: FabricError?

    init(
        device: TCPDevice, endpoint: Endpoint, setup: QueuePairSetup<TCPDevice>, options: ConnectOptions,
        prepare: ((TCPQueuePair) throws(FabricError) -> Void)?
    ) throws(FabricError) {
        self.device = device
        self.endpoint = endpoint
        self.setup = setup
        self.options = options
        self.prepare = prepare
        deadline = MonotonicClock.now() &+ MonotonicClock.nanoseconds(options.timeout)
        candidates = try ResolvedAddress.resolve(host: endpoint.host, port: endpoint.port, passive: false)
        handshake = ClientHandshake(
            secret: device.core.secret, tag: options.tag, instance: device.core.instance, privateData: options.privateData,
            peer: endpoint.description)
        if let tag = options.tag {
            tagRecord = device.core.tags.withLock { $0.beginOutgoing(tag: tag, peer: options.expectedInstance) }
        }
        do throws(FabricError) {
            try startNextCandidate()
        } catch {
            fail(error)
            throw error
        }
    }

    deinit {
        if result == nil {
            if socket >= 0 { SystemCalls.close(socket) }
            device.core.forgetTag(tagRecord)
        }
    }

    public var fileDescriptor: Int32 { socket }

    public var waitsToWrite: Bool { phase == .connecting || !handshake.outbox.isEmpty }

    public func advance() throws(FabricError) -> (queuePair: TCPQueuePair, privateData: [UInt8])? {
        try advance(prepare: prepare ?? { _ in })
    }

    /// `advance` with the `prepare` of a blocking connect, which need not
    /// escape.
    func advance(prepare: (TCPQueuePair) throws(FabricError) -> Void) throws(FabricError) -> (queuePair: TCPQueuePair, privateData: [UInt8])? {
        if let result { return result }
        if let failure { throw failure }
        do throws(FabricError) {
            try device.core.checkNotForked()
            if MonotonicClock.now() >= deadline {
                throw FabricError(.timedOut, "connecting to \(endpoint) timed out after \(options.timeout)")
            }
            if phase == .connecting {
                switch Sockets.connectOutcome(socket, describing: endpoint) {
                case nil:
                    return nil
                case .failure(let error)?:
                    lastFailure = error
                    SystemCalls.close(socket)
                    socket = -1
                    try startNextCandidate()
                    return nil
                case .success?:
                    phase = .handshaking
                }
            }
            while true {
                guard try HandshakeIO.flush(socket, &handshake.outbox) else { return nil }
                if handshake.phase == .finished { break }
                guard let message = try io.read(socket, wanted: handshake.bytesWanted) else { return nil }
                let knewServer = handshake.serverInstance != nil
                try handshake.receive(message[...])
                if !knewServer, let server = handshake.serverInstance { try reached(server) }
            }
            return try complete(prepare: prepare)
        } catch {
            fail(error)
            throw error
        }
    }

    /// The CHALLENGE proved which device answered.
    private func reached(_ server: UInt64) throws(FabricError) {
        if let expected = options.expectedInstance, expected != server {
            throw FabricError(.unexpectedPeer, "\(endpoint) is now device \(FabricAddress.instanceText(server)), not device \(FabricAddress.instanceText(expected)) that the address named (a stale address?)")
        }
        guard let tagRecord else { return }
        let decision = device.core.tags.withLock { $0.outgoing(tagRecord, reached: server) }
        if decision == .yield {
            throw FabricError(.crossedConnection, "\(endpoint)'s device already asked us for a connection with tag \(options.tag ?? 0), and it was handed to the application; use that one")
        }
    }

    private func complete(prepare: (TCPQueuePair) throws(FabricError) -> Void) throws(FabricError) -> (queuePair: TCPQueuePair, privateData: [UInt8]) {
        let accepted = handshake.acceptedData ?? []
        let queuePair = TCPQueuePair(engine: QueuePairEngine(
            socket: socket, number: device.core.makeQueuePairNumber(), device: device.core, setup: setup, tagRecord: tagRecord))
        // The engine owns the socket and the tag record from here.
        socket = -1
        let record = tagRecord
        tagRecord = nil
        try prepare(queuePair)
        queuePair.engine.activate()
        if let record { device.core.tags.withLock { $0.outgoingConnected(record) } }
        phase = .connected
        device.core.logger.debug("connected", metadata: ["peer": "\(endpoint)", "qp": "\(queuePair.number)"])
        let connected = (queuePair, accepted)
        result = connected
        return connected
    }

    private func startNextCandidate() throws(FabricError) {
        guard !candidates.isEmpty else {
            throw lastFailure ?? FabricError(.connectionFailed, "no address to connect to for \(endpoint)")
        }
        let next = candidates.removeFirst()
        do {
            socket = try Sockets.startConnect(to: next, localAddress: options.localAddress, describing: endpoint)
        } catch {
            guard error.kind == .connectionFailed else { throw error }
            lastFailure = error
            try startNextCandidate()
        }
    }

    private func fail(_ error: FabricError) {
        phase = .failed
        failure = error
        if socket >= 0 {
            SystemCalls.close(socket)
            socket = -1
        }
        device.core.forgetTag(tagRecord)
        tagRecord = nil
    }

    /// Sleeps until the socket is ready for the attempt's next step or the
    /// deadline passes (the blocking connect's wait).
    func waitForProgress() {
        let now = MonotonicClock.now()
        guard socket >= 0, now < deadline else { return }
        _ = SystemCalls.poll(socket, events: waitsToWrite ? Int16(POLLOUT) : Int16(POLLIN), milliseconds: Int32(min((deadline - now) / 1_000_000 + 1, 1000)))
    }
}
