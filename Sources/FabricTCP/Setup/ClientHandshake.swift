import Crypto
import FabricCore
import FabricSupport

/// The client's half of the handshake (Wire/Handshake.swift) as a value
/// with no I/O: it says how many bytes it wants next, takes exactly those,
/// and leaves what to send in `outbox`. The connect attempt moves the bytes
/// (ConnectAttempt.swift); tests drive it against the server's half in
/// memory. It never asks for a byte past the VERDICT: frames may follow
/// at once.
struct ClientHandshake {
    enum Phase: Equatable {
        case challengePrefix, challengeBody, verdictHeader, verdictData(status: UInt16, length: Int), finished
    }

    private(set) var phase = Phase.challengePrefix
    /// Bytes to send, in order.
    var outbox: [UInt8]
    /// The server's device instance, once its CHALLENGE proved it.
    private(set) var serverInstance: UInt64?
    /// The server's private data, once accepted.
    private(set) var acceptedData: [UInt8]?

    private let secret: SymmetricKey
    private let nonce: [UInt8]
    private let tag: UInt64?
    private let instance: UInt64
    private let privateData: [UInt8]
    private let peer: String
    private var serverNonce: [UInt8] = []

    init(secret: SymmetricKey, tag: UInt64?, instance: UInt64, privateData: [UInt8], peer: String, nonce: [UInt8] = Handshake.freshNonce()) {
        self.secret = secret
        self.nonce = nonce
        self.tag = tag
        self.instance = instance
        self.privateData = privateData
        self.peer = peer
        outbox = Handshake.encodeHello(nonce: nonce, tag: tag, instance: instance, privateData: privateData)
    }

    /// How many bytes `receive` takes next (0 when finished).
    var bytesWanted: Int {
        switch phase {
        case .challengePrefix, .verdictHeader: return Handshake.prefixSize
        case .challengeBody: return Handshake.challengeBodySize
        case .verdictData(_, let length): return length
        case .finished: return 0
        }
    }

    /// Takes exactly `bytesWanted` bytes. Throws what went wrong, naming
    /// the peer; a server that refused says why.
    mutating func receive(_ bytes: ArraySlice<UInt8>) throws(FabricError) {
        precondition(bytes.count == bytesWanted, "the handshake was handed \(bytes.count) bytes, not \(bytesWanted)")
        switch phase {
        case .challengePrefix:
            let (version, status) = try Handshake.decodePrefix(bytes, what: "handshake")
            if status == Handshake.ChallengeStatus.unsupportedVersion.rawValue || version != Handshake.version {
                throw FabricError(.protocolMismatch, "\(peer) speaks wire protocol version \(version); this library speaks version \(Handshake.version)")
            }
            guard status == Handshake.ChallengeStatus.proceed.rawValue else {
                throw FabricError(.protocolMismatch, "\(peer) answered the handshake with unknown status \(status)")
            }
            phase = .challengeBody
        case .challengeBody:
            let challenge = Handshake.decodeChallengeBody(bytes)
            serverNonce = challenge.nonce
            let context = Handshake.Context(clientNonce: nonce, serverNonce: challenge.nonce, tag: tag, clientInstance: instance, serverInstance: challenge.instance)
            guard Handshake.proofMatches(challenge.proof, Handshake.serverProof(secret: secret, context)) else {
                throw FabricError(.authenticationFailed, "\(peer) could not prove it knows the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
            }
            serverInstance = challenge.instance
            outbox += Handshake.encodeProof(Handshake.clientProof(secret: secret, context, privateData: privateData))
            phase = .verdictHeader
        case .verdictHeader:
            let (status, length) = try Handshake.decodeVerdictHeader(bytes)
            phase = .verdictData(status: status, length: length)
            if length == 0 { try conclude(status: status, data: []) }
        case .verdictData(let status, _):
            try conclude(status: status, data: Array(bytes))
        case .finished:
            break
        }
    }

    private mutating func conclude(status: UInt16, data: [UInt8]) throws(FabricError) {
        phase = .finished
        switch Handshake.VerdictStatus(rawValue: status) {
        case .accepted:
            acceptedData = data
        case .authenticationFailed:
            throw FabricError(.authenticationFailed, "\(peer) refused our proof of the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        case .rejectedByApplication:
            throw FabricError(.connectionFailed, "\(peer) rejected the connection")
        case .crossedConnection:
            throw FabricError(.crossedConnection, "\(peer) was connecting to us with the same tag \(tag.map { String($0) } ?? "") at the same time, and its connection won the tie-break; use the queue pair its connection request gives")
        case nil:
            throw FabricError(.protocolMismatch, "\(peer) answered the handshake with unknown status \(status)")
        }
    }
}
