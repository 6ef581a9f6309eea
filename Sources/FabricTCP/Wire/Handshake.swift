/// The connection handshake of the software NIC: protocol version, mutual
/// proof of the job secret by HMAC over fresh nonces (the secret never
/// crosses the wire), the connection tag and both devices' identities (for
/// the tie-break of crossing connects), and rdma_cm-style private data.
/// docs/wire-protocol.md section 2 specifies the messages; this file is
/// their one encoding, ClientHandshake.swift and ServerHandshake.swift the
/// two sides' procedures.
///
///   client -> server  HELLO      magic, version, private-data length, nonce C, flags,
///                                connection tag, client instance, private data
///   server -> client  CHALLENGE  magic, version, status, nonce S, server instance,
///                                HMAC(secret, "server" | C | S | tag | instances)
///   client -> server  PROOF      magic, HMAC(secret, "client" | C | S | tag | instances | private data)
///   server -> client  VERDICT    magic, status, private-data length, private data
///
/// Frames (FrameHeader.swift) follow an accepted VERDICT.
import Crypto
import FabricCore
import FabricSupport

enum Handshake {
    static let magic: [UInt8] = Array("SWFB".utf8)
    /// Version 2 added the connection tag and the instances.
    static let version: UInt16 = 2
    static let nonceSize = 32
    static let macSize = 32
    /// rdma_cm carries 56 bytes in a connect request; we allow the same, so
    /// that applications written against one backend fit the other.
    static let maxPrivateData = 56

    /// Magic, version and a 16-bit field: what each side reads first, so a
    /// peer of another version is recognised before the rest is awaited.
    static let prefixSize = 8
    /// HELLO after the prefix: nonce, flags, tag, instance (then private data).
    static let helloBodySize = nonceSize + 24
    /// HELLO flag: the connection carries a tag.
    static let tagged: UInt64 = 1
    /// CHALLENGE after the prefix: nonce, instance, proof.
    static let challengeBodySize = nonceSize + 8 + macSize
    static let proofSize = 4 + macSize
    static let verdictHeaderSize = 8

    enum ChallengeStatus: UInt16 {
        case proceed = 0
        case unsupportedVersion = 1
    }

    enum VerdictStatus: UInt16 {
        case accepted = 0
        case authenticationFailed = 2
        case rejectedByApplication = 3
        /// The connects crossed and the server's own connect for this tag
        /// (to this client's device) won the tie-break.
        case crossedConnection = 4
    }

    /// What both proofs cover besides the nonces.
    struct Context: Equatable {
        var clientNonce: [UInt8]
        var serverNonce: [UInt8]
        var tag: UInt64?
        var clientInstance: UInt64
        var serverInstance: UInt64
    }

    static func freshNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    static func serverProof(secret: SymmetricKey, _ context: Context) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("server".utf8))
        update(&mac, context)
        return Array(mac.finalize())
    }

    static func clientProof(secret: SymmetricKey, _ context: Context, privateData: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("client".utf8))
        update(&mac, context)
        mac.update(data: privateData)
        return Array(mac.finalize())
    }

    private static func update(_ mac: inout HMAC<SHA256>, _ context: Context) {
        mac.update(data: context.clientNonce)
        mac.update(data: context.serverNonce)
        mac.update(data: le64(context.tag == nil ? 0 : tagged))
        mac.update(data: le64(context.tag ?? 0))
        mac.update(data: le64(context.clientInstance))
        mac.update(data: le64(context.serverInstance))
    }

    /// Constant-time comparison of a received MAC with the expected one.
    static func proofMatches(_ received: [UInt8], _ expected: [UInt8]) -> Bool {
        ConstantTime.equal(received, expected)
    }

    // MARK: Encoding

    static func encodeHello(version: UInt16 = version, nonce: [UInt8], tag: UInt64?, instance: UInt64, privateData: [UInt8]) -> [UInt8] {
        magic + le16(version) + le16(UInt16(privateData.count)) + nonce + le64(tag == nil ? 0 : tagged) + le64(tag ?? 0)
            + le64(instance) + privateData
    }

    static func encodeChallenge(status: ChallengeStatus, nonce: [UInt8], instance: UInt64, proof: [UInt8]) -> [UInt8] {
        magic + le16(version) + le16(status.rawValue) + nonce + le64(instance) + proof
    }

    /// The refusal of a peer of another version: the prefix alone says it.
    static func encodeVersionRefusal() -> [UInt8] {
        encodeChallenge(status: .unsupportedVersion, nonce: [UInt8](repeating: 0, count: nonceSize), instance: 0, proof: [UInt8](repeating: 0, count: macSize))
    }

    static func encodeProof(_ proof: [UInt8]) -> [UInt8] { magic + proof }

    static func encodeVerdict(_ status: VerdictStatus, privateData: [UInt8]) -> [UInt8] {
        magic + le16(status.rawValue) + le16(UInt16(privateData.count)) + privateData
    }

    // MARK: Decoding (all lengths and values checked)

    /// Magic, version and the field after it, of a HELLO or CHALLENGE.
    static func decodePrefix(_ bytes: ArraySlice<UInt8>, what: String) throws(FabricError) -> (version: UInt16, field: UInt16) {
        guard bytes.count == prefixSize, Array(bytes.prefix(4)) == magic else {
            throw FabricError(.protocolMismatch, "the peer is not a fabric tcp endpoint (bad \(what) magic); is it a verbs endpoint or another service?")
        }
        return (read16(bytes, 4), read16(bytes, 6))
    }

    struct HelloBody {
        var nonce: [UInt8]
        var tag: UInt64?
        var instance: UInt64
    }

    /// Unknown flags are refused: they would change what the peer means.
    static func decodeHelloBody(_ bytes: ArraySlice<UInt8>) throws(FabricError) -> HelloBody {
        let start = bytes.startIndex
        let flags = read64(bytes, nonceSize)
        guard flags & ~tagged == 0 else {
            throw FabricError(.protocolMismatch, "the peer's HELLO has unknown flags \(flags)")
        }
        return HelloBody(
            nonce: Array(bytes[start..<(start + nonceSize)]), tag: flags & tagged != 0 ? read64(bytes, nonceSize + 8) : nil,
            instance: read64(bytes, nonceSize + 16))
    }

    struct ChallengeBody {
        var nonce: [UInt8]
        var instance: UInt64
        var proof: [UInt8]
    }

    static func decodeChallengeBody(_ bytes: ArraySlice<UInt8>) -> ChallengeBody {
        let start = bytes.startIndex
        return ChallengeBody(
            nonce: Array(bytes[start..<(start + nonceSize)]), instance: read64(bytes, nonceSize),
            proof: Array(bytes[(start + nonceSize + 8)..<(start + challengeBodySize)]))
    }

    static func decodeProof(_ bytes: ArraySlice<UInt8>) throws(FabricError) -> [UInt8] {
        guard bytes.count == proofSize, Array(bytes.prefix(4)) == magic else {
            throw FabricError(.protocolMismatch, "malformed handshake proof")
        }
        return Array(bytes.dropFirst(4))
    }

    static func decodeVerdictHeader(_ bytes: ArraySlice<UInt8>) throws(FabricError) -> (status: UInt16, privateDataLength: Int) {
        guard bytes.count == verdictHeaderSize, Array(bytes.prefix(4)) == magic else {
            throw FabricError(.protocolMismatch, "malformed handshake verdict")
        }
        let length = Int(read16(bytes, 6))
        guard length <= maxPrivateData else {
            throw FabricError(.protocolMismatch, "the peer's private data is \(length) bytes; at most \(maxPrivateData) are allowed")
        }
        return (read16(bytes, 4), length)
    }

    private static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
    private static func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    private static func read16(_ bytes: ArraySlice<UInt8>, _ offset: Int) -> UInt16 {
        let start = bytes.startIndex + offset
        return UInt16(bytes[start]) | (UInt16(bytes[start + 1]) << 8)
    }
    private static func read64(_ bytes: ArraySlice<UInt8>, _ offset: Int) -> UInt64 {
        let start = bytes.startIndex + offset
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[start + index]) << (8 * index) }
        return value
    }
}
