import Crypto
import FabricCore
@testable import FabricVerbs
import Testing

/// The job-secret proof carried in rdma_cm private data, checked without a
/// device (the conformance suite checks it end to end on rxe).
@Suite("verbs connection proof")
struct ConnectionProofTests {
    let secret = SymmetricKey(data: Array("a-job-secret-of-some-length".utf8))
    let identities = ConnectionProof.identities(requester: [UInt8](repeating: 1, count: 18), acceptor: [UInt8](repeating: 2, count: 18))

    @Test("a request fits rdma_cm's 56 bytes and is accepted once")
    func requestRoundTrip() throws {
        let guardTable = ReplayGuard()
        let (bytes, nonce) = ConnectionProof.makeRequest(secret: secret, identities: identities, userData: Array(1...12))
        #expect(bytes.count == 56)
        let request = try ConnectionProof.checkRequest(bytes, secret: secret, identities: identities, replayGuard: guardTable)
        #expect(request.userData == Array(1...12) && request.nonce == nonce)
        // The same request again is a replay.
        #expect(throws: ProofFailure.self) {
            _ = try ConnectionProof.checkRequest(bytes, secret: secret, identities: identities, replayGuard: guardTable)
        }
    }

    @Test("a wrong secret, other endpoints, a changed byte or another version are refused with the reason")
    func refusals() {
        let (bytes, _) = ConnectionProof.makeRequest(secret: secret, identities: identities, userData: [7])
        func reason(_ data: [UInt8], secret: SymmetricKey? = nil, identities: [UInt8]? = nil) -> ConnectionProof.RejectReason? {
            do {
                _ = try ConnectionProof.checkRequest(data, secret: secret ?? self.secret, identities: identities ?? self.identities, replayGuard: ReplayGuard())
                return nil
            } catch {
                return error.reason
            }
        }
        #expect(reason(bytes, secret: SymmetricKey(data: Array("another-secret-entirely".utf8))) == .authenticationFailed)
        #expect(reason(bytes, identities: ConnectionProof.identities(requester: [UInt8](repeating: 3, count: 18), acceptor: [UInt8](repeating: 2, count: 18))) == .authenticationFailed)
        var changed = bytes
        changed[44] ^= 1  // the application's data
        #expect(reason(changed) == .authenticationFailed)
        var otherVersion = bytes
        otherVersion[2] = 9
        #expect(reason(otherVersion) == .unsupportedVersion)
        #expect(reason(Array(bytes.prefix(20))) == .authenticationFailed)
        // A well-made request from a minute ago is stale (a recording).
        let (stale, _) = ConnectionProof.makeRequest(secret: secret, identities: identities, userData: [], timestamp: ConnectionProof.nowMilliseconds() - 60_000)
        #expect(reason(stale) == .authenticationFailed)
        #expect(reason([UInt8](repeating: 0, count: 56)) == .authenticationFailed)
    }

    @Test("a tagged request carries the tag and the requester's instance in its 12 bytes, under the MAC")
    func taggedRequest() throws {
        let (bytes, _) = ConnectionProof.makeRequest(secret: secret, identities: identities, userData: [], tag: (tag: 0x0102_0304_0506_0708, instance: 0xAABB_CCDD))
        #expect(bytes.count == 56)
        let request = try ConnectionProof.checkRequest(bytes, secret: secret, identities: identities, replayGuard: ReplayGuard())
        #expect(request.tag == 0x0102_0304_0506_0708 && request.requesterInstance == 0xAABB_CCDD && request.userData.isEmpty)
        var changed = bytes
        changed[50] ^= 1  // inside the tag
        #expect(throws: ProofFailure.self) {
            _ = try ConnectionProof.checkRequest(changed, secret: secret, identities: identities, replayGuard: ReplayGuard())
        }
        let plain = try ConnectionProof.checkRequest(
            ConnectionProof.makeRequest(secret: secret, identities: identities, userData: [9]).bytes, secret: secret, identities: identities,
            replayGuard: ReplayGuard())
        #expect(plain.tag == nil && plain.userData == [9])
    }

    @Test("the accept proves the acceptor knows the secret for this very request")
    func acceptProof() throws {
        let (_, nonce) = ConnectionProof.makeRequest(secret: secret, identities: identities, userData: [])
        let accept = ConnectionProof.makeAccept(secret: secret, requestNonce: nonce, identities: identities, instance: 0x1234_5678, userData: [4, 5])
        let checked = try ConnectionProof.checkAccept(accept, secret: secret, requestNonce: nonce, identities: identities)
        #expect(checked.userData == [4, 5] && checked.instance == 0x1234_5678)
        // The acceptor's instance is covered by the MAC.
        var changed = accept
        changed[36] ^= 1
        #expect(throws: FabricError.self) {
            _ = try ConnectionProof.checkAccept(changed, secret: secret, requestNonce: nonce, identities: identities)
        }
        let otherNonce = [UInt8](repeating: 0, count: 16)
        #expect(throws: FabricError.self) {
            _ = try ConnectionProof.checkAccept(accept, secret: secret, requestNonce: otherNonce, identities: identities)
        }
        #expect(throws: FabricError.self) {
            _ = try ConnectionProof.checkAccept(accept, secret: SymmetricKey(data: Array("another-secret-entirely".utf8)), requestNonce: nonce, identities: identities)
        }
    }

    @Test("retry and timer settings map to the verbs encodings")
    func encodings() {
        #expect(Transitions.receiverNotReadyTimerCode(.microseconds(200)) == 9)  // 0.24 ms, the first at least 0.2
        #expect(Transitions.receiverNotReadyTimerCode(.seconds(2)) == 0)  // the longest, 655 ms
        #expect(Transitions.receiverNotReadyRetryCount(RetryPolicy(receiverNotReadyRetries: nil)) == 7)
        #expect(Transitions.receiverNotReadyRetryCount(RetryPolicy(receiverNotReadyRetries: 100)) == 6)
        // 8 attempts of 4.096 us x 2^code stay within the response timeout.
        let code = Transitions.timeoutCode(.seconds(10))
        #expect(8 * 4.096e-6 * Double(1 << Int(code)) <= 10)
        #expect(8 * 4.096e-6 * Double(1 << (Int(code) + 1)) > 10)
    }
}
