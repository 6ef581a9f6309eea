import Crypto
import FabricCore
import FabricSupport
import Glibc
import Synchronization

/// The client's half of the handshake (Wire/Handshake.swift).
enum ClientHandshake {
    static func run(fd: Int32, secret: SymmetricKey, privateData: [UInt8], deadline: UInt64, peer: Endpoint) throws(FabricError) -> [UInt8] {
        let nonce = Handshake.freshNonce()
        try send(fd, Handshake.encodeHello(nonce: nonce, privateData: privateData), deadline)
        let challenge = try Handshake.decodeChallenge(try receive(fd, Handshake.challengeSize, deadline))
        if challenge.status == Handshake.ChallengeStatus.unsupportedVersion.rawValue || challenge.version != Handshake.version {
            throw FabricError(.protocolMismatch, "\(peer) speaks wire protocol version \(challenge.version); this library speaks version \(Handshake.version)")
        }
        guard challenge.status == Handshake.ChallengeStatus.proceed.rawValue else {
            throw FabricError(.protocolMismatch, "\(peer) answered the handshake with unknown status \(challenge.status)")
        }
        let expected = Handshake.serverProof(secret: secret, clientNonce: nonce, serverNonce: challenge.nonce)
        guard Handshake.proofMatches(challenge.proof, expected) else {
            throw FabricError(.authenticationFailed, "\(peer) could not prove it knows the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        }
        let proof = Handshake.clientProof(secret: secret, clientNonce: nonce, serverNonce: challenge.nonce, privateData: privateData)
        try send(fd, Handshake.encodeProof(proof), deadline)
        let verdict = try Handshake.decodeVerdictHeader(try receive(fd, Handshake.verdictHeaderSize, deadline))
        let data = verdict.privateDataLength > 0 ? try receive(fd, verdict.privateDataLength, deadline) : []
        switch Handshake.VerdictStatus(rawValue: verdict.status) {
        case .accepted:
            return data
        case .authenticationFailed:
            throw FabricError(.authenticationFailed, "\(peer) refused our proof of the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        case .rejectedByApplication:
            throw FabricError(.connectionFailed, "\(peer) rejected the connection")
        case nil:
            throw FabricError(.protocolMismatch, "\(peer) answered the handshake with unknown status \(verdict.status)")
        }
    }

    static func send(_ fd: Int32, _ bytes: [UInt8], _ deadline: UInt64) throws(FabricError) {
        let outcome = bytes.withUnsafeBytes { raw in
            Result { () throws(FabricError) in try SystemCalls.writeExactly(fd, raw, deadline: deadline) }
        }
        try outcome.get()
    }

    static func receive(_ fd: Int32, _ count: Int, _ deadline: UInt64) throws(FabricError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let outcome = bytes.withUnsafeMutableBytes { raw in
            Result { () throws(FabricError) in try SystemCalls.readExactly(fd, raw, deadline: deadline) }
        }
        try outcome.get()
        return bytes
    }
}

/// A listening endpoint of the software NIC. `next` accepts TCP
/// connections and runs the server's half of the handshake; only peers that
/// prove the job secret become connection requests. Refused attempts are
/// logged and counted.
public final class TCPListener: FabricListener, @unchecked Sendable {  // fd immutable; counters atomic
    public typealias Device = TCPDevice
    public let endpoint: Endpoint
    let fd: Int32
    let device: TCPDevice
    private let closed = Atomic<Bool>(false)
    /// Connection attempts refused during the handshake (wrong secret or
    /// version, garbage, timeouts).
    public let refusedAttempts = Atomic<Int>(0)
    /// How long one peer may take over its half of the handshake.
    public static let handshakeTimeout: UInt64 = 5_000_000_000

    init(fd: Int32, endpoint: Endpoint, device: TCPDevice) {
        self.fd = fd
        self.endpoint = endpoint
        self.device = device
    }

    deinit { close() }

    public func close() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) { SystemCalls.close(fd) }
    }

    public func next(timeout: Duration?) throws(FabricError) -> TCPConnectionRequest? {
        try device.core.checkNotForked()
        let limit = timeout.map { MonotonicClock.now() &+ MonotonicClock.nanoseconds($0) } ?? UInt64.max
        while true {
            guard !closed.load(ordering: .relaxed) else {
                throw FabricError(.invalidState, "the listener on \(endpoint) is closed")
            }
            if let (connection, peer) = try Sockets.accept(fd) {
                let deadline = min(limit == .max ? .max : limit &+ Self.handshakeTimeout, MonotonicClock.now() &+ Self.handshakeTimeout)
                do {
                    return try serverHandshake(connection, peer: peer, deadline: deadline)
                } catch {
                    refusedAttempts.wrappingAdd(1, ordering: .relaxed)
                    device.core.logger.warning("refused a connection", metadata: ["peer": "\(peer)", "reason": "\(error.message)"])
                    SystemCalls.close(connection)
                    continue
                }
            }
            let now = MonotonicClock.now()
            if now >= limit { return nil }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = limit == .max ? Int32(1000) : Int32(min((limit - now) / 1_000_000 + 1, 1000))
            _ = Glibc.poll(&descriptor, 1, milliseconds)
        }
    }

    func serverHandshake(_ connection: Int32, peer: Endpoint, deadline: UInt64) throws(FabricError) -> TCPConnectionRequest {
        let hello = try Handshake.decodeHello(try ClientHandshake.receive(connection, Handshake.helloSize, deadline))
        // The version is answered first: a newer peer may allow more.
        if hello.version != Handshake.version {
            let refusal = Handshake.encodeChallenge(status: .unsupportedVersion, nonce: [UInt8](repeating: 0, count: Handshake.nonceSize), proof: [UInt8](repeating: 0, count: Handshake.macSize))
            try? ClientHandshake.send(connection, refusal, deadline)
            throw FabricError(.protocolMismatch, "the peer speaks wire protocol version \(hello.version); this library speaks version \(Handshake.version)")
        }
        guard hello.privateDataLength <= Handshake.maxPrivateData else {
            throw FabricError(.protocolMismatch, "the peer's private data is \(hello.privateDataLength) bytes; at most \(Handshake.maxPrivateData) are allowed")
        }
        let privateData = hello.privateDataLength > 0 ? try ClientHandshake.receive(connection, hello.privateDataLength, deadline) : []
        let nonce = Handshake.freshNonce()
        let secret = device.core.secret
        let proof = Handshake.serverProof(secret: secret, clientNonce: hello.nonce, serverNonce: nonce)
        try ClientHandshake.send(connection, Handshake.encodeChallenge(status: .proceed, nonce: nonce, proof: proof), deadline)
        let received = try Handshake.decodeProof(try ClientHandshake.receive(connection, Handshake.proofSize, deadline))
        let expected = Handshake.clientProof(secret: secret, clientNonce: hello.nonce, serverNonce: nonce, privateData: privateData)
        guard Handshake.proofMatches(received, expected) else {
            try? ClientHandshake.send(connection, Handshake.encodeVerdict(.authenticationFailed, privateData: []), deadline)
            throw FabricError(.authenticationFailed, "the peer could not prove it knows the job secret")
        }
        return TCPConnectionRequest(fd: connection, peer: peer, privateData: privateData, device: device)
    }
}

/// An authenticated peer waiting for `accept` or `reject`.
public final class TCPConnectionRequest: FabricConnectionRequest, @unchecked Sendable {  // `answered` guards the one use of fd
    public typealias Device = TCPDevice
    public let peer: Endpoint
    public let privateData: [UInt8]
    let fd: Int32
    let device: TCPDevice
    private let answered = Atomic<Bool>(false)

    init(fd: Int32, peer: Endpoint, privateData: [UInt8], device: TCPDevice) {
        self.fd = fd
        self.peer = peer
        self.privateData = privateData
        self.device = device
    }

    deinit {
        if !answered.load(ordering: .relaxed) { SystemCalls.close(fd) }
    }

    public func accept(
        _ setup: QueuePairSetup<TCPDevice>, privateData: [UInt8],
        prepare: (TCPQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> TCPQueuePair {
        try device.core.checkNotForked()
        try device.validate(setup)
        try device.checkQueuePairLimit()
        guard privateData.count <= Handshake.maxPrivateData else {
            throw FabricError(.invalidArgument, "private data of \(privateData.count) bytes; at most \(Handshake.maxPrivateData) are allowed")
        }
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else {
            throw FabricError(.invalidState, "the connection request from \(peer) was already answered")
        }
        let queuePair = TCPQueuePair(engine: QueuePairEngine(socket: fd, number: device.core.makeQueuePairNumber(), device: device.core, setup: setup))
        try prepare(queuePair)
        // The peer may send as soon as it reads the verdict: the queue pair
        // is live first.
        queuePair.engine.activate()
        let deadline = MonotonicClock.now() &+ TCPListener.handshakeTimeout
        do {
            try ClientHandshake.send(fd, Handshake.encodeVerdict(.accepted, privateData: privateData), deadline)
        } catch {
            queuePair.disconnect()
            throw error
        }
        return queuePair
    }

    public func reject(privateData: [UInt8]) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let deadline = MonotonicClock.now() &+ 1_000_000_000
        try? ClientHandshake.send(fd, Handshake.encodeVerdict(.rejectedByApplication, privateData: Array(privateData.prefix(Handshake.maxPrivateData))), deadline)
        SystemCalls.close(fd)
    }
}
