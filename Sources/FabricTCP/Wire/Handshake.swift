/// The connection handshake of the software NIC: protocol version, mutual
/// proof of the job secret by HMAC over fresh nonces (the secret never
/// crosses the wire), and rdma_cm-style private data. docs/wire-protocol.md
/// specifies the messages; this file is their one implementation.
///
///   client -> server  HELLO      magic, version, private-data length, nonce C, private data
///   server -> client  CHALLENGE  magic, version, status, nonce S,
///                                HMAC(secret, "server" | nonce C | nonce S)
///   client -> server  PROOF      magic, HMAC(secret, "client" | nonce C | nonce S | private data)
///   server -> client  VERDICT    magic, status, private-data length, private data
///
/// Frames (FrameHeader.swift) follow an accepted VERDICT.
import Crypto
import FabricCore
import FabricSupport

enum Handshake {
    static let magic: [UInt8] = Array("SWFB".utf8)
    static let version: UInt16 = 1
    static let nonceSize = 32
    static let macSize = 32
    /// rdma_cm carries 56 bytes in a connect request; we allow the same, so
    /// that applications written against one backend fit the other.
    static let maxPrivateData = 56

    static let helloSize = 8 + nonceSize
    static let challengeSize = 8 + nonceSize + macSize
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
    }

    static func freshNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    static func serverProof(secret: SymmetricKey, clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("server".utf8))
        mac.update(data: clientNonce)
        mac.update(data: serverNonce)
        return Array(mac.finalize())
    }

    static func clientProof(secret: SymmetricKey, clientNonce: [UInt8], serverNonce: [UInt8], privateData: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("client".utf8))
        mac.update(data: clientNonce)
        mac.update(data: serverNonce)
        mac.update(data: privateData)
        return Array(mac.finalize())
    }

    /// Constant-time comparison of a received MAC with the expected one.
    static func proofMatches(_ received: [UInt8], _ expected: [UInt8]) -> Bool {
        ConstantTime.equal(received, expected)
    }

    // MARK: Encoding

    static func encodeHello(version: UInt16 = version, nonce: [UInt8], privateData: [UInt8]) -> [UInt8] {
        var bytes = magic
        bytes += le16(version)
        bytes += le16(UInt16(privateData.count))
        bytes += nonce
        bytes += privateData
        return bytes
    }

    static func encodeChallenge(status: ChallengeStatus, nonce: [UInt8], proof: [UInt8]) -> [UInt8] {
        magic + le16(version) + le16(status.rawValue) + nonce + proof
    }

    static func encodeProof(_ proof: [UInt8]) -> [UInt8] { magic + proof }

    static func encodeVerdict(_ status: VerdictStatus, privateData: [UInt8]) -> [UInt8] {
        magic + le16(status.rawValue) + le16(UInt16(privateData.count)) + privateData
    }

    // MARK: Decoding (all lengths and values checked)

    struct Hello {
        var version: UInt16
        var privateDataLength: Int
        var nonce: [UInt8]
    }

    static func decodeHello(_ bytes: [UInt8]) throws(FabricError) -> Hello {
        guard bytes.count == helloSize, Array(bytes[0..<4]) == magic else {
            throw FabricError(.protocolMismatch, "the peer is not a fabric tcp endpoint (bad handshake magic)")
        }
        // The private-data limit is checked by the caller after the version:
        // a peer of another version gets a version refusal, whatever it sent.
        let length = Int(read16(bytes, 6))
        return Hello(version: read16(bytes, 4), privateDataLength: length, nonce: Array(bytes[8..<(8 + nonceSize)]))
    }

    struct Challenge {
        var version: UInt16
        var status: UInt16
        var nonce: [UInt8]
        var proof: [UInt8]
    }

    static func decodeChallenge(_ bytes: [UInt8]) throws(FabricError) -> Challenge {
        guard bytes.count == challengeSize, Array(bytes[0..<4]) == magic else {
            throw FabricError(.protocolMismatch, "the peer is not a fabric tcp endpoint (bad handshake magic); is it a verbs endpoint or another service?")
        }
        return Challenge(
            version: read16(bytes, 4), status: read16(bytes, 6),
            nonce: Array(bytes[8..<(8 + nonceSize)]),
            proof: Array(bytes[(8 + nonceSize)..<(8 + nonceSize + macSize)]))
    }

    static func decodeProof(_ bytes: [UInt8]) throws(FabricError) -> [UInt8] {
        guard bytes.count == proofSize, Array(bytes[0..<4]) == magic else {
            throw FabricError(.protocolMismatch, "malformed handshake proof")
        }
        return Array(bytes[4...])
    }

    static func decodeVerdictHeader(_ bytes: [UInt8]) throws(FabricError) -> (status: UInt16, privateDataLength: Int) {
        guard bytes.count == verdictHeaderSize, Array(bytes[0..<4]) == magic else {
            throw FabricError(.protocolMismatch, "malformed handshake verdict")
        }
        let length = Int(read16(bytes, 6))
        guard length <= maxPrivateData else {
            throw FabricError(.protocolMismatch, "the peer's private data is \(length) bytes; at most \(maxPrivateData) are allowed")
        }
        return (read16(bytes, 4), length)
    }

    private static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
    private static func read16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | (UInt16(bytes[offset + 1]) << 8)
    }
}
