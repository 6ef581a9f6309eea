import Crypto
import FabricCore
import FabricSupport

/// The server's half of the handshake (Wire/Handshake.swift) as a value
/// with no I/O, like ClientHandshake: the listener moves the bytes
/// (Listener.swift). It ends authenticated, waiting for the verdict the
/// application (or the tie-break) gives.
struct ServerHandshake {
    enum Phase: Equatable {
        case helloPrefix, helloBody(privateLength: Int), proof, authenticated
    }

    private(set) var phase = Phase.helloPrefix
    /// Bytes to send, in order.
    var outbox: [UInt8] = []
    /// What the authenticated client asked for.
    private(set) var tag: UInt64?
    private(set) var clientInstance: UInt64 = 0
    private(set) var privateData: [UInt8] = []

    private let secret: SymmetricKey
    private let instance: UInt64
    private let nonce: [UInt8]
    private var clientNonce: [UInt8] = []

    init(secret: SymmetricKey, instance: UInt64, nonce: [UInt8] = Handshake.freshNonce()) {
        self.secret = secret
        self.instance = instance
        self.nonce = nonce
    }

    var bytesWanted: Int {
        switch phase {
        case .helloPrefix: return Handshake.prefixSize
        case .helloBody(let privateLength): return Handshake.helloBodySize + privateLength
        case .proof: return Handshake.proofSize
        case .authenticated: return 0
        }
    }

    /// Takes exactly `bytesWanted` bytes. Throws why the peer is refused;
    /// what the refusal sends (if anything) is left in `outbox` first.
    mutating func receive(_ bytes: ArraySlice<UInt8>) throws(FabricError) {
        precondition(bytes.count == bytesWanted, "the handshake was handed \(bytes.count) bytes, not \(bytesWanted)")
        switch phase {
        case .helloPrefix:
            let (version, privateLength) = try Handshake.decodePrefix(bytes, what: "handshake")
            // The version is answered first: a newer peer may allow more.
            guard version == Handshake.version else {
                outbox += Handshake.encodeVersionRefusal()
                throw FabricError(.protocolMismatch, "the peer speaks wire protocol version \(version); this library speaks version \(Handshake.version)")
            }
            guard Int(privateLength) <= Handshake.maxPrivateData else {
                throw FabricError(.protocolMismatch, "the peer's private data is \(privateLength) bytes; at most \(Handshake.maxPrivateData) are allowed")
            }
            phase = .helloBody(privateLength: Int(privateLength))
        case .helloBody:
            let hello = try Handshake.decodeHelloBody(bytes.prefix(Handshake.helloBodySize))
            clientNonce = hello.nonce
            tag = hello.tag
            clientInstance = hello.instance
            privateData = Array(bytes.dropFirst(Handshake.helloBodySize))
            outbox += Handshake.encodeChallenge(status: .proceed, nonce: nonce, instance: instance, proof: Handshake.serverProof(secret: secret, context))
            phase = .proof
        case .proof:
            let received = try Handshake.decodeProof(bytes)
            guard Handshake.proofMatches(received, Handshake.clientProof(secret: secret, context, privateData: privateData)) else {
                outbox += Handshake.encodeVerdict(.authenticationFailed, privateData: [])
                throw FabricError(.authenticationFailed, "the peer could not prove it knows the job secret")
            }
            phase = .authenticated
        case .authenticated:
            break
        }
    }

    private var context: Handshake.Context {
        Handshake.Context(clientNonce: clientNonce, serverNonce: nonce, tag: tag, clientInstance: clientInstance, serverInstance: instance)
    }
}
