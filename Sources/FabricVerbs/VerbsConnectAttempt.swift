internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc

/// A connect of the verbs backend in progress: rdma_cm's steps (address
/// and route resolution, the connect request carrying our proof, the
/// acceptor's answer) on an event channel of its own, each taken by
/// `advance` when its event is there. Not Sendable: it belongs to the
/// thread that drives it.
public final class VerbsConnectAttempt: FabricConnectAttempt {
    public typealias QueuePair = VerbsQueuePair
    let device: VerbsDevice
    let endpoint: Endpoint
    let setup: QueuePairSetup<VerbsDevice>
    let options: ConnectOptions
    private let prepare: ((VerbsQueuePair) throws(FabricError) -> Void)?
    private let deadline: ContinuousClock.Instant
    private let milliseconds: Int32
    private let channel: EventChannel
    /// The attempt's rdma_cm identifier (the queue pair holds it too once
    /// made); let go when the attempt fails.
    private var identifier: RDMAIdentifier?
    private enum Phase { case resolvingAddress, resolvingRoute, awaitingAnswer, connected, failed }
    private var phase = Phase.resolvingAddress
    private var failure: FabricError?
    private var queuePair: VerbsQueuePair?
    private var nonce: [UInt8] = []
    private var identities: [UInt8] = []
    /// The attempt's entry in the device's tie-break table, if tagged.
    private var tagRecord: ConnectionTags.RecordID?
    private var result: (queuePair: VerbsQueuePair, privateData: [UInt8])?

    init(
        device: VerbsDevice, endpoint: Endpoint, setup: QueuePairSetup<VerbsDevice>, options: ConnectOptions,
        prepare: ((VerbsQueuePair) throws(FabricError) -> Void)?
    ) throws(FabricError) {
        // The acceptor's only answer is its decision, so a listener cannot
        // wait to learn whom a connect of its own reached: a tagged connect
        // must say it up front.
        if options.tag != nil && options.expectedInstance == nil {
            throw FabricError(.invalidArgument, "a tagged connect on the verbs backend must name the peer's device instance (connect to its fabric address, or set ConnectOptions.expectedInstance)")
        }
        if options.tag != nil && !options.privateData.isEmpty {
            throw FabricError(.invalidArgument, "a tagged connect carries no private data on the verbs backend (the tag takes the connect request's 12 bytes of application data)")
        }
        guard options.privateData.count <= ConnectionProof.maxRequestUserData else {
            throw FabricError(.invalidArgument, "private data of \(options.privateData.count) bytes; the verbs backend carries at most \(ConnectionProof.maxRequestUserData) in a connect request")
        }
        try device.validate(setup)
        self.device = device
        self.endpoint = endpoint
        self.setup = setup
        self.options = options
        self.prepare = prepare
        deadline = ContinuousClock.now + options.timeout
        milliseconds = max(1, VerbsCompletionQueue.milliseconds(options.timeout))
        channel = try EventChannel()
        let identifier = try RDMAIdentifier(on: channel, forkDetection: device.forkDetection)
        self.identifier = identifier
        let id = identifier.id
        if let tag = options.tag { tagRecord = device.tags.withLock { $0.beginOutgoing(tag: tag, peer: options.expectedInstance) } }
        do throws(FabricError) {
            var destination = try Addressing.resolve(endpoint)
            var source = try options.localAddress.map { (text) throws(FabricError) in try Addressing.local(text) }
            let resolved: Int32 = withUnsafeMutableBytes(of: &destination) { destinationBytes in
                let destinationAddress = destinationBytes.baseAddress!.assumingMemoryBound(to: sockaddr.self)
                if source != nil {
                    return withUnsafeMutableBytes(of: &source!) { sourceBytes in
                        rdma_resolve_addr(id, sourceBytes.baseAddress!.assumingMemoryBound(to: sockaddr.self), destinationAddress, milliseconds)
                    }
                }
                return rdma_resolve_addr(id, nil, destinationAddress, milliseconds)
            }
            guard resolved == 0 else { throw VerbsError.system("resolving \(endpoint) to an RDMA device") }
        } catch {
            fail(error)
            throw error
        }
    }

    deinit {
        if result == nil { fail(FabricError(.connectionFailed, "abandoned")) }
    }

    public var fileDescriptor: Int32 { channel.fd }
    public var waitsToWrite: Bool { false }

    public func advance() throws(FabricError) -> (queuePair: VerbsQueuePair, privateData: [UInt8])? {
        try advance(prepare: prepare ?? { _ in })
    }

    /// `advance` with the `prepare` of a blocking connect, which need not
    /// escape.
    func advance(prepare: (VerbsQueuePair) throws(FabricError) -> Void) throws(FabricError) -> (queuePair: VerbsQueuePair, privateData: [UInt8])? {
        if let result { return result }
        if let failure { throw failure }
        do throws(FabricError) {
            try device.forkDetection.checkNotForked()
            while let event = try channel.poll() {
                if let connected = try handle(event, prepare: prepare) { return connected }
            }
            if ContinuousClock.now >= deadline { throw timeout() }
            return nil
        } catch {
            fail(error)
            throw error
        }
    }

    private func handle(_ event: EventChannel.Event, prepare: (VerbsQueuePair) throws(FabricError) -> Void) throws(FabricError) -> (queuePair: VerbsQueuePair, privateData: [UInt8])? {
        guard let identifier else { return nil }
        let id = identifier.id
        switch phase {
        case .resolvingAddress:
            try expect(event, RDMA_CM_EVENT_ADDR_RESOLVED, step: "address resolution")
            guard id.pointee.verbs == device.context else {
                let other = id.pointee.verbs.map { String(cString: ibv_get_device_name($0.pointee.device)) } ?? "no device"
                throw FabricError(.connectionFailed, "\(endpoint) is reached through \(other), not \(device.name); open that device or choose a local address on \(device.name)")
            }
            guard rdma_resolve_route(id, milliseconds) == 0 else { throw VerbsError.system("resolving the route to \(endpoint)") }
            phase = .resolvingRoute
        case .resolvingRoute:
            try expect(event, RDMA_CM_EVENT_ROUTE_RESOLVED, step: "route resolution")
            let qp = try VerbsQueuePair(device: device, setup: setup, identifier: identifier)
            queuePair = qp
            // No remote access until the acceptor has proved itself.
            try Transitions.toInitialized(qp, id, access: [])
            try prepare(qp)
            identities = ConnectionProof.identities(
                requester: Addressing.identity(rdma_get_local_addr(id)), acceptor: Addressing.identity(rdma_get_peer_addr(id)))
            let tag = options.tag.map { (tag: $0, instance: device.instance) }
            let (request, nonce) = ConnectionProof.makeRequest(secret: device.secret, identities: identities, userData: options.privateData, tag: tag)
            self.nonce = nonce
            let connected = Transitions.withParameters(
                privateData: request, responderResources: device.readDepth, initiatorDepth: device.readDepth, queuePair: qp, setup: setup
            ) { rdma_connect(id, &$0) }
            guard connected == 0 else { throw VerbsError.system("sending the connect request to \(endpoint)") }
            phase = .awaitingAnswer
        case .awaitingAnswer:
            switch event.kind {
            case RDMA_CM_EVENT_CONNECT_RESPONSE:
                break
            case RDMA_CM_EVENT_REJECTED:
                throw ActiveConnection.rejection(event, endpoint: endpoint)
            default:
                throw FabricError(.connectionFailed, "connecting to \(endpoint) failed: \(ActiveConnection.eventName(event.kind)) (status \(event.status)); \(ActiveConnection.crossBackendHint)")
            }
            let accepted: (userData: [UInt8], instance: UInt64)
            do {
                accepted = try ConnectionProof.checkAccept(event.privateData, secret: device.secret, requestNonce: nonce, identities: identities)
                try reached(accepted.instance)
            } catch {
                _ = rdma_reject(id, nil, 0)
                throw error
            }
            guard let qp = queuePair else { throw FabricError(.invalidState, "the connect to \(endpoint) lost its queue pair") }
            // The acceptor proved itself: remote access from here on.
            do throws(FabricError) {
                try Transitions.toReadyToReceive(qp, id, access: Transitions.remoteAccess)
                try Transitions.toReadyToSend(qp, id)
            } catch {
                // rdma_cm refuses the attributes once the acceptor has closed
                // the connection again.
                throw FabricError(.connectionFailed, "\(endpoint) accepted, then closed the connection before it was established (\(error.message))")
            }
            guard rdma_establish(id) == 0 else { throw VerbsError.system("completing the connection to \(endpoint)") }
            // Followed before its events move, so that none is missed; from
            // here the queue pair disconnects when it goes.
            qp.established()
            guard identifier.migrate(to: device.events.channel, keptAliveBy: device.events) else {
                throw VerbsError.system("handing the connection to the device's event thread")
            }
            if let record = tagRecord {
                qp.tagRecord = record
                device.tags.withLock { $0.outgoingConnected(record) }
                tagRecord = nil
            }
            phase = .connected
            let connected = (qp, accepted.userData)
            result = connected
            return connected
        case .connected, .failed:
            break
        }
        return nil
    }

    /// The accept proved which device answered.
    private func reached(_ acceptor: UInt64) throws(FabricError) {
        if let expected = options.expectedInstance, expected != acceptor {
            throw FabricError(.unexpectedPeer, "\(endpoint) is now device \(FabricAddress.instanceText(acceptor)), not device \(FabricAddress.instanceText(expected)) that the address named (a stale address?)")
        }
        guard let tagRecord else { return }
        if device.tags.withLock({ $0.outgoing(tagRecord, reached: acceptor) }) == .yield {
            throw FabricError(.crossedConnection, "\(endpoint)'s device already asked us for a connection with tag \(options.tag ?? 0), and it was handed to the application; use that one")
        }
    }

    private func expect(_ event: EventChannel.Event, _ kind: rdma_cm_event_type, step: String) throws(FabricError) {
        guard event.kind == kind else {
            throw FabricError(.connectionFailed, "\(step) for \(endpoint) failed: \(ActiveConnection.eventName(event.kind)) (\(VerbsError.text(-event.status))); no RDMA device reaches that address, or it is not a local RDMA network address")
        }
    }

    private func timeout() -> FabricError {
        switch phase {
        case .resolvingAddress, .resolvingRoute:
            return FabricError(.connectionFailed, "\(phase == .resolvingAddress ? "address" : "route") resolution for \(endpoint) timed out; \(ActiveConnection.crossBackendHint)")
        default:
            return FabricError(.connectionFailed, "\(endpoint) did not answer the connect request within \(options.timeout); \(ActiveConnection.crossBackendHint)")
        }
    }

    private func fail(_ error: FabricError) {
        guard phase != .failed else { return }
        phase = .failed
        failure = error
        // The queue pair (if made) goes first, then the identifier with the
        // last of its holders.
        queuePair = nil
        identifier = nil
        if let tagRecord { device.tags.withLock { $0.remove(tagRecord) } }
        tagRecord = nil
    }

    /// Sleeps until the event channel has an event or the deadline passes.
    func waitForProgress() {
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { return }
        _ = SystemCalls.waitForInput(channel.fd, milliseconds: max(1, min(1000, VerbsCompletionQueue.milliseconds(remaining))))
    }
}

/// What the requester's side shares: errors and names.
enum ActiveConnection {
    static let crossBackendHint = "is the peer listening with the verbs backend on an RDMA device that reaches this one? Both sides must use the same backend (the FABRIC_BACKEND variable)"

    static func rejection(_ event: EventChannel.Event, endpoint: Endpoint) -> FabricError {
        let (reason, data) = ConnectionProof.readReject(event.privateData)
        switch reason {
        case .authenticationFailed:
            return FabricError(.authenticationFailed, "\(endpoint) refused our proof of the job secret; are both sides started with the same \(JobSecret.environmentVariable) (or key file)?")
        case .unsupportedVersion:
            return FabricError(.protocolMismatch, "\(endpoint) speaks another version of the verbs connection proof")
        case .rejectedByApplication:
            return FabricError(.connectionFailed, "\(endpoint) rejected the connection (private data: \(data.prefix(56).map { String($0) }.joined(separator: " ")))")
        case .wrongDevice:
            return FabricError(.connectionFailed, "\(endpoint) received the request on another RDMA device than the one it listens with")
        case .crossedConnection:
            return FabricError(.crossedConnection, "\(endpoint) was connecting to us with the same tag at the same time, and its connection won the tie-break; use the queue pair its connection request gives")
        case nil:
            // IB CM reject reason 8: nobody listens on that service id.
            if event.status == 8 {
                return FabricError(.connectionFailed, "nothing listens at \(endpoint) through rdma_cm; \(crossBackendHint)")
            }
            return FabricError(.connectionFailed, "\(endpoint) rejected the connection (rdma_cm status \(event.status)); \(crossBackendHint)")
        }
    }

    static func eventName(_ kind: rdma_cm_event_type) -> String {
        String(cString: rdma_event_str(kind))
    }
}
