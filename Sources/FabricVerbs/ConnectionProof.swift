import Crypto
import FabricCore
import FabricSupport
import Glibc
import Synchronization

/// Proof of the job secret in rdma_cm's private data. Only the connect
/// request (56 bytes on RoCE and InfiniBand) and the accept (196 bytes)
/// carry data, so the proof is one message each way:
///
///   request (requester -> acceptor, 44 bytes + up to 12 of the application's)
///     0  "SF", version (1 byte), application data length (1 byte)
///     4  nonce (16 random bytes)
///     20 timestamp (milliseconds since 1970, little endian, 8 bytes)
///     28 MAC: the first 16 bytes of HMAC-SHA256(secret, "fabric-verbs-request" |
///        version | nonce | timestamp | identities | application data)
///     44 application data
///   accept (acceptor -> requester, 36 bytes + up to 56 of the application's)
///     0  "SF", version, application data length
///     4  MAC: HMAC-SHA256(secret, "fabric-verbs-accept" | request nonce |
///        identities | application data)
///     36 application data
///   reject: "SF", version, reason (1 byte), then the application's data.
///
/// The identities are both endpoints' addresses (16-byte IPv6 form and
/// port), so a recorded request cannot be replayed at another server or
/// from another source. The acceptor refuses timestamps outside a window and
/// nonces it saw within it; the requester enables remote access on its
/// queue pair only after the accept's MAC checks.
enum ConnectionProof {
    static let magic: [UInt8] = [0x53, 0x46]
    static let version: UInt8 = 1
    static let nonceSize = 16
    static let requestMACSize = 16
    static let requestHeaderSize = 44
    /// rdma_cm carries 56 bytes in a connect request.
    static let maxRequestUserData = 56 - requestHeaderSize
    static let acceptHeaderSize = 36
    static let maxAcceptUserData = 56
    /// How far a request's clock may be from ours.
    static let window: Int64 = 30_000

    enum RejectReason: UInt8 {
        case authenticationFailed = 1
        case unsupportedVersion = 2
        case rejectedByApplication = 3
        case wrongDevice = 4
    }

    struct Request {
        var nonce: [UInt8]
        var timestamp: Int64
        var userData: [UInt8]
    }

    /// The endpoints of a connection as both sides see them.
    static func identities(requester: [UInt8], acceptor: [UInt8]) -> [UInt8] {
        requester + acceptor
    }

    static func nowMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    static func makeRequest(
        secret: SymmetricKey, identities: [UInt8], userData: [UInt8], timestamp: Int64 = nowMilliseconds()
    ) -> (bytes: [UInt8], nonce: [UInt8]) {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let mac = requestMAC(secret: secret, version: version, nonce: nonce, timestamp: timestamp, identities: identities, userData: userData)
        let bytes = magic + [version, UInt8(userData.count)] + nonce + littleEndian(timestamp) + mac + userData
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
        let length = Int(bytes[3])
        guard length <= maxRequestUserData, requestHeaderSize + length <= bytes.count else {
            throw ProofFailure(.authenticationFailed, "the connect request's private data length \(length) is impossible")
        }
        let nonce = Array(bytes[4..<20])
        let timestamp = readLittleEndian(bytes, 20)
        let userData = Array(bytes[requestHeaderSize..<(requestHeaderSize + length)])
        let expected = requestMAC(secret: secret, version: version, nonce: nonce, timestamp: timestamp, identities: identities, userData: userData)
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
        return Request(nonce: nonce, timestamp: timestamp, userData: userData)
    }

    static func makeAccept(secret: SymmetricKey, requestNonce: [UInt8], identities: [UInt8], userData: [UInt8]) -> [UInt8] {
        magic + [version, UInt8(userData.count)] + acceptMAC(secret: secret, nonce: requestNonce, identities: identities, userData: userData) + userData
    }

    /// Checks an accept's private data; returns the application's data.
    static func checkAccept(_ bytes: [UInt8], secret: SymmetricKey, requestNonce: [UInt8], identities: [UInt8]) throws(FabricError) -> [UInt8] {
        guard bytes.count >= acceptHeaderSize, Array(bytes[0..<2]) == magic, bytes[2] == version else {
            throw FabricError(.authenticationFailed, "the peer accepted without a fabric proof; is it a fabric verbs endpoint of this version?")
        }
        let length = Int(bytes[3])
        guard length <= maxAcceptUserData, acceptHeaderSize + length <= bytes.count else {
            throw FabricError(.authenticationFailed, "the accept's private data length \(length) is impossible")
        }
        let userData = Array(bytes[acceptHeaderSize..<(acceptHeaderSize + length)])
        let expected = acceptMAC(secret: secret, nonce: requestNonce, identities: identities, userData: userData)
        guard ConstantTime.equal(Array(bytes[4..<36]), expected) else {
            throw FabricError(.authenticationFailed, "the peer could not prove it knows the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        }
        return userData
    }

    static func makeReject(_ reason: RejectReason, userData: [UInt8] = []) -> [UInt8] {
        magic + [version, reason.rawValue] + userData.prefix(100)
    }

    /// The reason and application data of a reject, if it is ours.
    static func readReject(_ bytes: [UInt8]) -> (RejectReason?, [UInt8]) {
        guard bytes.count >= 4, Array(bytes[0..<2]) == magic else { return (nil, []) }
        return (RejectReason(rawValue: bytes[3]), Array(bytes[4...]))
    }

    private static func requestMAC(secret: SymmetricKey, version: UInt8, nonce: [UInt8], timestamp: Int64, identities: [UInt8], userData: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("fabric-verbs-request".utf8))
        mac.update(data: [version])
        mac.update(data: nonce)
        mac.update(data: littleEndian(timestamp))
        mac.update(data: identities)
        mac.update(data: [UInt8(userData.count)] + userData)
        return Array(Array(mac.finalize()).prefix(requestMACSize))
    }

    private static func acceptMAC(secret: SymmetricKey, nonce: [UInt8], identities: [UInt8], userData: [UInt8]) -> [UInt8] {
        var mac = HMAC<SHA256>(key: secret)
        mac.update(data: Array("fabric-verbs-accept".utf8))
        mac.update(data: nonce)
        mac.update(data: identities)
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
