internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// An authenticated connect request waiting for the application.
public final class VerbsConnectionRequest: FabricConnectionRequest, @unchecked Sendable {  // `pending` is behind a lock
    public typealias Device = VerbsDevice
    let listener: VerbsListener
    /// The request's identifier until it is answered: accepting hands it to
    /// the queue pair, rejecting lets it go (destroyed by its owner).
    private let pending: Mutex<RDMAIdentifier?>
    public let peer: Endpoint
    public let privateData: [UInt8]
    let nonce: [UInt8]
    let identities: [UInt8]
    let requesterReadDepth: UInt8
    let requesterResponderResources: UInt8
    /// The connection tag and the requester's device instance, if tagged.
    public let tag: UInt64?
    let requesterInstance: UInt64
    /// The request's entry in the device's tie-break table once handed to
    /// the application: the queue pair takes it over, a rejection drops it.
    private let tagEntry = Mutex<ConnectionTags.RecordID?>(nil)
    var tagRecord: ConnectionTags.RecordID? {
        get { tagEntry.withLock { $0 } }
        set { tagEntry.withLock { $0 = newValue } }
    }

    init(
        listener: VerbsListener, identifier: RDMAIdentifier, peer: Endpoint, request: ConnectionProof.Request,
        identities: [UInt8], requesterReadDepth: UInt8, requesterResponderResources: UInt8
    ) {
        self.listener = listener
        pending = Mutex(identifier)
        self.peer = peer
        privateData = request.userData
        nonce = request.nonce
        self.identities = identities
        self.requesterReadDepth = requesterReadDepth
        self.requesterResponderResources = requesterResponderResources
        tag = request.tag
        requesterInstance = request.requesterInstance
    }

    deinit {
        if pending.withLock({ $0 != nil }) { reject(privateData: []) }
    }

    public func accept(
        _ setup: QueuePairSetup<VerbsDevice>, privateData: [UInt8],
        prepare: (VerbsQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> VerbsQueuePair {
        let device = listener.device
        try device.forkDetection.checkNotForked()
        guard privateData.count <= ConnectionProof.maxAcceptUserData else {
            throw FabricError(.invalidArgument, "private data of \(privateData.count) bytes; the verbs backend carries at most \(ConnectionProof.maxAcceptUserData) in an accept")
        }
        // Claim the request first: a concurrent accept or reject finds it taken.
        guard let identifier = pending.withLock({ $0.take() }) else {
            throw FabricError(.invalidState, "the connection request from \(peer) was already accepted or rejected")
        }
        var queuePair: VerbsQueuePair?
        var acceptSent = false
        do throws(FabricError) {
            // Events of this connection go to its own channel from now on,
            // so that waiting for it does not consume the listener's requests.
            let channel = try EventChannel()
            guard identifier.migrate(to: channel.channel, keptAliveBy: channel) else {
                throw VerbsError.system("moving the connection to its own event channel")
            }
            let qp = try VerbsQueuePair(device: device, setup: setup, identifier: identifier)
            queuePair = qp
            // The requester proved itself already: remote access at once.
            try Transitions.toInitialized(qp, identifier.id, access: Transitions.remoteAccess)
            try prepare(qp)
            try Transitions.toReadyToReceive(qp, identifier.id, access: nil)
            try Transitions.toReadyToSend(qp, identifier.id)
            let answer = ConnectionProof.makeAccept(
                secret: device.secret, requestNonce: nonce, identities: identities, instance: device.instance, userData: privateData)
            let accepted = Transitions.withParameters(
                privateData: answer, responderResources: min(device.readDepth, requesterReadDepth),
                initiatorDepth: min(device.readDepth, requesterResponderResources), queuePair: qp, setup: setup
            ) { rdma_accept(identifier.id, &$0) }
            guard accepted == 0 else { throw VerbsError.system("accepting the connection from \(peer)") }
            acceptSent = true
            // No wait for the requester's confirmation (ESTABLISHED): a
            // thread that accepts may be the one that must drive the
            // requester's attempt, or another process may be accepting ours
            // at the same moment. The device's event thread follows the
            // connection from here: a requester that refuses our accept or
            // never confirms moves the queue pair to the error state. A
            // request sent before the requester reached RTR is lost once and
            // sent again by the card after its ACK timeout.
            // Followed before its events move, so that none is missed.
            qp.established()
            qp.tagRecord = tagRecord
            tagRecord = nil
            guard identifier.migrate(to: device.events.channel, keptAliveBy: device.events) else {
                throw VerbsError.system("handing the connection to the device's event thread")
            }
            return qp
        } catch {
            // Tell the requester rather than leave it to its timeout, with
            // the queue pair (if made) still there. The identifier then goes
            // with its last holder: this frame or that queue pair.
            withExtendedLifetime(queuePair) {
                if acceptSent {
                    rdma_disconnect(identifier.id)
                } else {
                    let payload = ConnectionProof.makeReject(.rejectedByApplication)
                    _ = payload.withUnsafeBytes { rdma_reject(identifier.id, $0.baseAddress, UInt8($0.count)) }
                }
            }
            dropTagRecord()
            throw error
        }
    }

    public func reject(privateData: [UInt8]) {
        refuse(.rejectedByApplication, userData: privateData)
    }

    /// Rejects with `reason` (the application's rejection, or a lost
    /// tie-break) unless already answered.
    func refuse(_ reason: ConnectionProof.RejectReason, userData: [UInt8] = []) {
        // Taken out of `pending`: destroyed (by its owner) when this returns.
        guard let identifier = pending.withLock({ $0.take() }), !listener.device.forkDetection.isForkedChild else { return }
        let payload = ConnectionProof.makeReject(reason, userData: userData)
        _ = payload.withUnsafeBytes { rdma_reject(identifier.id, $0.baseAddress, UInt8($0.count)) }
        dropTagRecord()
    }

    private func dropTagRecord() {
        if let record = tagRecord {
            listener.device.tags.withLock { $0.remove(record) }
            tagRecord = nil
        }
    }
}
