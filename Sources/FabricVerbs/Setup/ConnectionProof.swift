import Crypto
import FabricCore
import FabricSupport
import Glibc
import Synchronization

/// Proof of the job secret in rdma_cm's private data. Only the connect
/// request (56 bytes on RoCE and InfiniBand) and the accept (196 bytes)
/// carry data, so the proof is one message each way:
///
///   request (requester -> acceptor, 44 bytes + 12 more)
///     0  "SF", version (1 byte), application data length (1 byte; bit 7
///        set: the connection is tagged, and the 12 bytes are the tag, 8
///        bytes, and the requester's device instance, 4 bytes)
///     4  nonce (16 random bytes)
///     20 timestamp (milliseconds since 1970, little endian, 8 bytes)
///     28 MAC: the first 16 bytes of HMAC-SHA256(secret, "fabric-verbs-request" |
///        version | nonce | timestamp | identities | application data)
///     44 application data, or tag and instance
///   accept (acceptor -> requester, 40 bytes + up to 56 of the application's)
///     0  "SF", version, application data length
///     4  MAC: HMAC-SHA256(secret, "fabric-verbs-accept" | request nonce |
///        identities | acceptor instance | application data)
///     36 the acceptor's device instance (4 bytes)
///     40 application data
///   reject: "SF", version, reason (1 byte), then the application's data.
///
/// The identities are both endpoints' addresses (16-byte IPv6 form and
/// port), so a recorded request cannot be replayed at another server or
/// from another source. The acceptor refuses timestamps outside a window and
/// nonces it saw within it; the requester enables remote access on its
/// queue pair only after the accept's MAC checks.
enum ConnectionProof {
    static let magic: [UInt8] = [0x53, 0x46]
    /// Version 2 added the tag and the device instances.
    static let version: UInt8 = 2
    /// The length byte's flag for a tagged request.
    static let taggedFlag: UInt8 = 0x80
    static let nonceSize = 16
    static let requestMACSize = 16
    static let requestHeaderSize = 44
    /// rdma_cm carries 56 bytes in a connect request.
    static let maxRequestUserData = 56 - requestHeaderSize
    static let acceptHeaderSize = 40
    static let maxAcceptUserData = 56
    /// How far a request's clock may be from ours.
    static let window: Int64 = 30_000

    enum RejectReason: UInt8 {
        case authenticationFailed = 1
        case unsupportedVersion = 2
        case rejectedByApplication = 3
        case wrongDevice = 4
        /// The connects crossed and the acceptor's own one won the tie-break.
        case crossedConnection = 5
    }

    struct Request {
        var nonce: [UInt8]
        var timestamp: Int64
        var userData: [UInt8]
        /// The connection tag and the requester's instance, if tagged.
        var tag: UInt64?
        var requesterInstance: UInt64 = 0
    }

    /// The endpoints of a connection as both sides see them.
    static func identities(requester: [UInt8], acceptor: [UInt8]) -> [UInt8] {
        requester + acceptor
    }

    static func nowMilliseconds() -> Int64 {
        SystemCalls.wallClockMilliseconds()
    }

    /// A request; with `tag`, its 12 bytes carry the tag and the
    /// requester's instance (the low 32 bits: verbs instances are 32-bit).
    static func makeRequest(
        secret: SymmetricKey, identities: [UInt8], userData: [UInt8], tag: (tag: UInt64, instance: UInt64)? = nil,
        timestamp: Int64 = nowMilliseconds()
    ) -> (bytes: [UInt8], nonce: [UInt8]) {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let lengthByte: UInt8
        let trailing: [UInt8]
        if let tag {
            lengthByte = taggedFlag
            trailing = littleEndian(Int64(bitPattern: tag.tag)) + littleEndian(Int64(tag.instance)).prefix(4)
        } else {
            lengthByte = UInt8(userData.count)
            trailing = userData
        }
        let mac = requestMAC(secret: secret, version: version, nonce: nonce, timestamp: timestamp, identities: identities, lengthByte: lengthByte, trailing: trailing)
        let bytes = magic + [version, lengthByte] + nonce + littleEndian(timestamp) + mac + trailing
        return (bytes, nonce)
    }

    /// Checks a connect request's private data. Throws an error naming what
    /// was wrong; the caller rejects with the matching reason.
    static func checkRequest(
        _ bytes: [UInt8], secret: SymmetricKey, identities: [UInt8], replayGuard: ReplayGuard
    ) throws(ProofFailure) -> Request {
        guard bytes.count >= requestHeaderSize, Array(bytes[0..<2]) == magic else {
            throw ProofFailure(.authenticationFailed, "the connect request carries no fabric proof (is the peer a fabric verbs endpoint?)")
        }
        guard bytes[2] == version else {
            throw ProofFailure(.unsupportedVersion, "the peer speaks proof version \(bytes[2]); this build speaks \(version)")
        }
        let lengthByte = bytes[3]
        let tagged = lengthByte == taggedFlag
        let length = tagged ? maxRequestUserData : Int(lengthByte)
        guard length <= maxRequestUserData, requestHeaderSize + length <= bytes.count else {
            throw ProofFailure(.authenticationFailed, "the connect request's private data length \(length) is impossible")
        }
        let nonce = Array(bytes[4..<20])
        let timestamp = readLittleEndian(bytes, 20)
        let trailing = Array(bytes[requestHeaderSize..<(requestHeaderSize + length)])
        let expected = requestMAC(secret: secret, version: version, nonce: nonce, timestamp: timestamp, identities: identities, lengthByte: lengthByte, trailing: trailing)
        guard ConstantTime.equal(Array(bytes[28..<44]), expected) else {
            throw ProofFailure(.authenticationFailed, "the peer could not prove it knows the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        }
        let skew = nowMilliseconds() - timestamp
        guard abs(skew) <= window else {
            throw ProofFailure(.authenticationFailed, "the connect request is \(skew) ms old (a replay, or clocks more than \(window / 1000) s apart)")
        }
        guard replayGuard.admit(nonce, timestamp: timestamp) else {
            throw ProofFailure(.authenticationFailed, "the connect request was seen before (a replayed handshake)")
        }
        guard tagged else { return Request(nonce: nonce, timestamp: timestamp, userData: trailing) }
        let tag = UInt64(bitPattern: readLittleEndian(trailing, 0))
        let instance = UInt64(UInt32(trailing[8]) | UInt32(trailing[9]) << 8 | UInt32(trailing[10]) << 16 | UInt32(trailing[11]) << 24)
        return Request(nonce: nonce, timestamp: timestamp, userData: [], tag: tag, requesterInstance: instance)
    }

    static func makeAccept(secret: SymmetricKey, requestNonce: [UInt8], identities: [UInt8], instance: UInt64, userData: [UInt8]) -> [UInt8] {
        let instanceBytes = Array(littleEndian(Int64(instance)).prefix(4))
        return magic + [version, UInt8(userData.count)]
            + acceptMAC(secret: secret, nonce: requestNonce, identities: identities, instance: instanceBytes, userData: userData)
            + instanceBytes + userData
    }

    /// Checks an accept's private data; returns the application's data and
    /// the acceptor's device instance.
    static func checkAccept(
        _ bytes: [UInt8], secret: SymmetricKey, requestNonce: [UInt8], identities: [UInt8]
    ) throws(FabricError) -> (userData: [UInt8], instance: UInt64) {
        guard bytes.count >= acceptHeaderSize, Array(bytes[0..<2]) == magic, bytes[2] == version else {
            throw FabricError(.authenticationFailed, "the peer accepted without a fabric proof; is it a fabric verbs endpoint of this version?")
        }
        let length = Int(bytes[3])
        guard length <= maxAcceptUserData, acceptHeaderSize + length <= bytes.count else {
            throw FabricError(.authenticationFailed, "the accept's private data length \(length) is impossible")
        }
        let instanceBytes = Array(bytes[36..<40])
        let userData = Array(bytes[acceptHeaderSize..<(acceptHeaderSize + length)])
        let expected = acceptMAC(secret: secret, nonce: requestNonce, identities: identities, instance: instanceBytes, userData: userData)
        guard ConstantTime.equal(Array(bytes[4..<36]), expected) else {
            throw FabricError(.authenticationFailed, "the peer could not prove it knows the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        }
        let instance = UInt64(UInt32(instanceBytes[0]) | UInt32(instanceBytes[1]) << 8 | UInt32(instanceBytes[2]) << 16 | UInt32(instanceBytes[3]) << 24)
        return (userData, instance)
    }

    static func makeReject(_ reason: RejectReason, userData: [UInt8] = []) -> [UInt8] {
        magic + [version, reason.rawValue] + userData.prefix(100)
    }

    /// The reason and application data of a reject, if it is ours.
    static func readReject(_ bytes: [UInt8]) -> (RejectReason?, [UInt8]) {
        guard bytes.count >= 4, Array(bytes[0..<2]) == magic else { return (nil, []) }
        return (RejectReason(rawValue: bytes[3]), Array(bytes[4...]))
    }

    private static func requestMAC(
        secret: SymmetricKey, version: UInt8, nonce: [UInt8], timestamp: Int64, identities: [UInt8], lengthByte: UInt8, trailing: [UInt8]
    ) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("fabric-verbs-request".utf8))
        mac.update(data: [version])
        mac.update(data: nonce)
        mac.update(data: littleEndian(timestamp))
        mac.update(data: identities)
        mac.update(data: [lengthByte] + trailing)
        return Array(Array(mac.finalize()).prefix(requestMACSize))
    }

    private static func acceptMAC(secret: SymmetricKey, nonce: [UInt8], identities: [UInt8], instance: [UInt8], userData: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("fabric-verbs-accept".utf8))
        mac.update(data: nonce)
        mac.update(data: identities)
        mac.update(data: instance)
        mac.update(data: [UInt8(userData.count)] + userData)
        return Array(mac.finalize())
    }

    private static func littleEndian(_ value: Int64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: value) >> (8 * $0)) }
    }

    private static func readLittleEndian(_ bytes: [UInt8], _ offset: Int) -> Int64 {
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[offset + index]) << (8 * index) }
        return Int64(bitPattern: value)
    }
}

/// Why a connect request was refused.
struct ProofFailure: Error {
    var reason: ConnectionProof.RejectReason
    var message: String
    init(_ reason: ConnectionProof.RejectReason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

/// The nonces of connect requests seen within the timestamp window: a
/// request whose nonce is here is a replay. Bounded: when full, new
/// requests are refused until old ones leave the window.
final class ReplayGuard: Sendable {
    static let capacity = 65_536
    private let seen = Mutex<[[UInt8]: Int64]>([:])

    /// Records the nonce; false if it was seen before or the table is full.
    func admit(_ nonce: [UInt8], timestamp: Int64) -> Bool {
        let now = ConnectionProof.nowMilliseconds()
        return seen.withLock { table in
            if table.count >= Self.capacity / 2 {
                table = table.filter { now - $0.value <= 2 * ConnectionProof.window }
            }
            guard table.count < Self.capacity, table[nonce] == nil else { return false }
            table[nonce] = timestamp
            return true
        }
    }
}
