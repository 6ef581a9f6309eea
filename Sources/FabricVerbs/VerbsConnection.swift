internal import CVerbs
import FabricCore
import FabricSupport
import Glibc
import Synchronization

/// An rdma_cm event channel with a deadline-bounded wait. A connection's
/// identifier lives on one of these while it is set up; whoever owns the
/// identifier keeps its channel alive, since an identifier must be destroyed
/// before its channel.
final class EventChannel: @unchecked Sendable {  // immutable
    let channel: UnsafeMutablePointer<rdma_event_channel>

    struct Event {
        var kind: rdma_cm_event_type
        var status: Int32
        var id: UnsafeMutablePointer<rdma_cm_id>?
        var privateData: [UInt8]
        var initiatorDepth: UInt8
        var responderResources: UInt8
    }

    init() throws(FabricError) {
        guard let channel = rdma_create_event_channel() else {
            throw FabricError(.unavailable, "rdma_cm is not available: \(VerbsError.text(errno)); \(VerbsProbe.howToCreateDevice)")
        }
        ConnectionEvents.setNonBlocking(channel.pointee.fd)
        self.channel = channel
    }

    deinit { rdma_destroy_event_channel(channel) }

    /// The next event, or nil once `deadline` passed.
    func next(until deadline: ContinuousClock.Instant) throws(FabricError) -> Event? {
        while true {
            var raw: UnsafeMutablePointer<rdma_cm_event>?
            if rdma_get_cm_event(channel, &raw) == 0, let received = raw {
                let conn = received.pointee.param.conn
                var data: [UInt8] = []
                if let bytes = conn.private_data, conn.private_data_len > 0 {
                    data = Array(UnsafeRawBufferPointer(start: bytes, count: Int(conn.private_data_len)))
                }
                let event = Event(
                    kind: received.pointee.event, status: received.pointee.status, id: received.pointee.id,
                    privateData: data, initiatorDepth: conn.initiator_depth, responderResources: conn.responder_resources)
                rdma_ack_cm_event(received)
                return event
            }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else {
                throw VerbsError.system("reading an rdma_cm event")
            }
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return nil }
            var descriptor = pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, max(1, VerbsCompletionQueue.milliseconds(remaining)))
        }
    }
}

/// Moving a queue pair through its states with the attributes rdma_cm
/// negotiated, plus ours: access rights, retry counts, timers.
enum Transitions {
    static let remoteAccess = MemoryAccess([.remoteWrite, .remoteRead, .remoteAtomic])

    private static func move(
        _ qp: UnsafeMutablePointer<ibv_qp>, _ id: UnsafeMutablePointer<rdma_cm_id>, to state: ibv_qp_state,
        _ what: String, adjust: (inout ibv_qp_attr, inout Int32) -> Void
    ) throws(FabricError) {
        var attributes = ibv_qp_attr()
        var mask: Int32 = 0
        attributes.qp_state = state
        guard rdma_init_qp_attr(id, &attributes, &mask) == 0 else {
            throw VerbsError.system("getting the attributes to move a queue pair to \(what)")
        }
        adjust(&attributes, &mask)
        let code = ibv_modify_qp(qp, &attributes, mask)
        guard code == 0 else { throw VerbsError.system("moving a queue pair to \(what)", code) }
    }

    static func toInitialized(_ qp: VerbsQueuePair, _ id: UnsafeMutablePointer<rdma_cm_id>, access: MemoryAccess) throws(FabricError) {
        try move(qp.qp, id, to: IBV_QPS_INIT, "INIT") { attributes, mask in
            attributes.qp_access_flags = access.verbsFlags
            mask |= Int32(IBV_QP_ACCESS_FLAGS.rawValue)
        }
    }

    static func toReadyToReceive(_ qp: VerbsQueuePair, _ id: UnsafeMutablePointer<rdma_cm_id>, access: MemoryAccess?) throws(FabricError) {
        try move(qp.qp, id, to: IBV_QPS_RTR, "RTR") { attributes, mask in
            attributes.min_rnr_timer = receiverNotReadyTimerCode(qp.retry.receiverNotReadyDelay)
            mask |= Int32(IBV_QP_MIN_RNR_TIMER.rawValue)
            if let access {
                attributes.qp_access_flags = access.verbsFlags
                mask |= Int32(IBV_QP_ACCESS_FLAGS.rawValue)
            }
        }
    }

    static func toReadyToSend(_ qp: VerbsQueuePair, _ id: UnsafeMutablePointer<rdma_cm_id>) throws(FabricError) {
        try move(qp.qp, id, to: IBV_QPS_RTS, "RTS") { attributes, mask in
            attributes.timeout = timeoutCode(qp.retry.responseTimeout, attempts: qp.retry.transportRetries + 1)
            attributes.retry_cnt = UInt8(qp.retry.transportRetries)
            attributes.rnr_retry = receiverNotReadyRetryCount(qp.retry)
            mask |= Int32(IBV_QP_TIMEOUT.rawValue | IBV_QP_RETRY_CNT.rawValue | IBV_QP_RNR_RETRY.rawValue)
        }
    }

    /// The connection parameters both sides send: our proof as private
    /// data, read depths, retry counts, and the queue pair we made ourselves.
    static func withParameters(
        privateData: [UInt8], responderResources: UInt8, initiatorDepth: UInt8,
        queuePair: VerbsQueuePair, setup: QueuePairSetup<VerbsDevice>, _ body: (inout rdma_conn_param) -> Int32
    ) -> Int32 {
        privateData.withUnsafeBytes { bytes in
            var parameters = rdma_conn_param()
            parameters.private_data = bytes.baseAddress
            parameters.private_data_len = UInt8(bytes.count)
            parameters.responder_resources = responderResources
            parameters.initiator_depth = initiatorDepth
            parameters.retry_count = UInt8(setup.retry.transportRetries)  // ignored when accepting
            parameters.rnr_retry_count = receiverNotReadyRetryCount(setup.retry)
            parameters.srq = setup.sharedReceiveQueue == nil ? 0 : 1
            parameters.qp_num = queuePair.number.rawValue
            return body(&parameters)
        }
    }

    /// rnr_retry: 7 means forever; otherwise at most 6.
    static func receiverNotReadyRetryCount(_ policy: RetryPolicy) -> UInt8 {
        guard let retries = policy.receiverNotReadyRetries else { return 7 }
        return UInt8(max(0, min(6, retries)))
    }

    /// The InfiniBand RNR timer code whose delay is the smallest at least
    /// `delay` (code 0 is the longest, 655.36 ms).
    static func receiverNotReadyTimerCode(_ delay: Duration) -> UInt8 {
        let microseconds: [Int64] = [
            655_360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560,
            3840, 5120, 7680, 10240, 15360, 20480, 30720, 40960, 61440, 81920, 122_880, 163_840,
            245_760, 327_680, 491_520,
        ]
        let (seconds, attoseconds) = delay.components
        guard seconds < 1000 else { return 0 }
        let wanted = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        for code in 1..<microseconds.count where microseconds[code] >= wanted { return UInt8(code) }
        return 0
    }

    /// The local ACK timeout code: 4.096 us x 2^code per attempt, so that
    /// `attempts` (retry_cnt + 1) fit within `timeout`.
    static func timeoutCode(_ timeout: Duration, attempts: Int = 8) -> UInt8 {
        let nanoseconds = Double(timeout.components.seconds) * 1e9 + Double(timeout.components.attoseconds) / 1e9
        let perAttempt = nanoseconds / Double(max(1, attempts)) / 4096
        guard perAttempt > 2 else { return 1 }
        return UInt8(max(1, min(31, Int(log2(perAttempt)))))
    }
}

/// The requester's side of rdma_cm connection set-up.
enum ActiveConnection {
    static func connect(
        device: VerbsDevice, to endpoint: Endpoint, setup: QueuePairSetup<VerbsDevice>, options: ConnectOptions,
        prepare: (VerbsQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> (queuePair: VerbsQueuePair, privateData: [UInt8]) {
        guard options.privateData.count <= ConnectionProof.maxRequestUserData else {
            throw FabricError(.invalidArgument, "private data of \(options.privateData.count) bytes; the verbs backend carries at most \(ConnectionProof.maxRequestUserData) in a connect request")
        }
        try device.validate(setup)
        let deadline = ContinuousClock.now + options.timeout
        let milliseconds = max(1, VerbsCompletionQueue.milliseconds(options.timeout))
        let channel = try EventChannel()
        var created: UnsafeMutablePointer<rdma_cm_id>?
        guard rdma_create_id(channel.channel, &created, nil, RDMA_PS_TCP) == 0, let id = created else {
            throw VerbsError.system("creating an rdma_cm identifier")
        }
        // The identifier is destroyed here until a queue pair owns it.
        var queuePair: VerbsQueuePair?
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
            try expect(RDMA_CM_EVENT_ADDR_RESOLVED, on: channel, until: deadline, endpoint: endpoint, step: "address resolution")
            guard id.pointee.verbs == device.context else {
                let other = id.pointee.verbs.map { String(cString: ibv_get_device_name($0.pointee.device)) } ?? "no device"
                throw FabricError(.connectionFailed, "\(endpoint) is reached through \(other), not \(device.name); open that device or choose a local address on \(device.name)")
            }
            guard rdma_resolve_route(id, milliseconds) == 0 else { throw VerbsError.system("resolving the route to \(endpoint)") }
            try expect(RDMA_CM_EVENT_ROUTE_RESOLVED, on: channel, until: deadline, endpoint: endpoint, step: "route resolution")

            let qp = try VerbsQueuePair(device: device, setup: setup, id: id, channel: channel)
            queuePair = qp
            // No remote access until the acceptor has proved itself.
            try Transitions.toInitialized(qp, id, access: [])
            try prepare(qp)

            let identities = ConnectionProof.identities(
                requester: Addressing.identity(rdma_get_local_addr(id)), acceptor: Addressing.identity(rdma_get_peer_addr(id)))
            let (request, nonce) = ConnectionProof.makeRequest(secret: device.secret, identities: identities, userData: options.privateData)
            let connected = Transitions.withParameters(
                privateData: request, responderResources: device.readDepth, initiatorDepth: device.readDepth, queuePair: qp, setup: setup
            ) { rdma_connect(id, &$0) }
            guard connected == 0 else { throw VerbsError.system("sending the connect request to \(endpoint)") }

            guard let answer = try channel.next(until: deadline) else {
                throw FabricError(.connectionFailed, "\(endpoint) did not answer the connect request within \(options.timeout); \(crossBackendHint)")
            }
            switch answer.kind {
            case RDMA_CM_EVENT_CONNECT_RESPONSE:
                break
            case RDMA_CM_EVENT_REJECTED:
                throw rejection(answer, endpoint: endpoint)
            default:
                throw FabricError(.connectionFailed, "connecting to \(endpoint) failed: \(eventName(answer.kind)) (status \(answer.status)); \(crossBackendHint)")
            }
            let userData: [UInt8]
            do {
                userData = try ConnectionProof.checkAccept(answer.privateData, secret: device.secret, requestNonce: nonce, identities: identities)
            } catch {
                _ = rdma_reject(id, nil, 0)
                throw error
            }
            // The acceptor proved itself: remote access from here on.
            try Transitions.toReadyToReceive(qp, id, access: Transitions.remoteAccess)
            try Transitions.toReadyToSend(qp, id)
            guard rdma_establish(id) == 0 else { throw VerbsError.system("completing the connection to \(endpoint)") }
            // Followed before its events move, so that none is missed; from
            // here the queue pair disconnects when it goes.
            qp.established()
            guard rdma_migrate_id(id, device.events.channel) == 0 else { throw VerbsError.system("handing the connection to the device's event thread") }
            return (qp, userData)
        } catch {
            if queuePair == nil { rdma_destroy_id(id) }
            throw error
        }
    }

    static let crossBackendHint = "is the peer listening with the verbs backend on an RDMA device that reaches this one? Both sides must use the same backend (the FABRIC_BACKEND variable)"

    private static func expect(
        _ kind: rdma_cm_event_type, on channel: EventChannel, until deadline: ContinuousClock.Instant,
        endpoint: Endpoint, step: String
    ) throws(FabricError) {
        guard let event = try channel.next(until: deadline) else {
            throw FabricError(.connectionFailed, "\(step) for \(endpoint) timed out; \(crossBackendHint)")
        }
        guard event.kind == kind else {
            throw FabricError(.connectionFailed, "\(step) for \(endpoint) failed: \(eventName(event.kind)) (\(VerbsError.text(-event.status))); no RDMA device reaches that address, or it is not a local RDMA network address")
        }
    }

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

/// A listening rdma_cm identifier.
public final class VerbsListener: FabricListener, @unchecked Sendable {  // `open` is behind a lock
    public typealias Device = VerbsDevice
    let device: VerbsDevice
    let channel: EventChannel
    private let id: UnsafeMutablePointer<rdma_cm_id>
    private let open = Mutex(true)
    public let endpoint: Endpoint

    init(device: VerbsDevice, endpoint: Endpoint, backlog: Int) throws(FabricError) {
        self.device = device
        channel = try EventChannel()
        var created: UnsafeMutablePointer<rdma_cm_id>?
        guard rdma_create_id(channel.channel, &created, nil, RDMA_PS_TCP) == 0, let id = created else {
            throw VerbsError.system("creating an rdma_cm identifier")
        }
        do throws(FabricError) {
            var address = try Addressing.resolve(endpoint, passive: true)
            let bound = withUnsafeMutableBytes(of: &address) { rdma_bind_addr(id, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self)) }
            guard bound == 0 else { throw VerbsError.system("binding \(endpoint) for rdma_cm") }
            if let context = id.pointee.verbs, context != device.context {
                throw FabricError(.invalidArgument, "\(endpoint.host) is an address of RDMA device \(String(cString: ibv_get_device_name(context.pointee.device))), not \(device.name)")
            }
            guard rdma_listen(id, Int32(clamping: backlog)) == 0 else { throw VerbsError.system("listening on \(endpoint)") }
        } catch {
            rdma_destroy_id(id)
            throw error
        }
        self.id = id
        self.endpoint = Endpoint(host: endpoint.host, port: UInt16(bigEndian: rdma_get_src_port(id)))
    }

    deinit { close() }

    public func close() {
        let wasOpen = open.withLock { value in
            defer { value = false }
            return value
        }
        if wasOpen && !device.forkDetection.isForkedChild { rdma_destroy_id(id) }
    }

    public func next(timeout: Duration?) throws(FabricError) -> VerbsConnectionRequest? {
        try device.forkDetection.checkNotForked()
        guard open.withLock({ $0 }) else { throw FabricError(.invalidState, "the listener on \(endpoint) is closed") }
        let deadline = ContinuousClock.now + (timeout ?? .seconds(365 * 86_400))
        while true {
            guard let event = try channel.next(until: deadline) else { return nil }
            guard event.kind == RDMA_CM_EVENT_CONNECT_REQUEST, let requestID = event.id else { continue }
            let peer = Addressing.endpoint(rdma_get_peer_addr(requestID))
            func refuse(_ reason: ConnectionProof.RejectReason, _ message: String) {
                device.logger.warning("refused a connection from \(peer): \(message)")
                let payload = ConnectionProof.makeReject(reason)
                _ = payload.withUnsafeBytes { rdma_reject(requestID, $0.baseAddress, UInt8($0.count)) }
                rdma_destroy_id(requestID)
            }
            guard requestID.pointee.verbs == device.context else {
                refuse(.wrongDevice, "the request arrived on another RDMA device")
                continue
            }
            let identities = ConnectionProof.identities(
                requester: Addressing.identity(rdma_get_peer_addr(requestID)), acceptor: Addressing.identity(rdma_get_local_addr(requestID)))
            do {
                let request = try ConnectionProof.checkRequest(event.privateData, secret: device.secret, identities: identities, replayGuard: device.replayGuard)
                return VerbsConnectionRequest(
                    listener: self, id: requestID, peer: peer, request: request, identities: identities,
                    requesterReadDepth: event.initiatorDepth, requesterResponderResources: event.responderResources)
            } catch {
                refuse(error.reason, error.message)
            }
        }
    }
}

/// An authenticated connect request waiting for the application.
public final class VerbsConnectionRequest: FabricConnectionRequest, @unchecked Sendable {  // `pending` is behind a lock
    public typealias Device = VerbsDevice
    let listener: VerbsListener
    let id: UnsafeMutablePointer<rdma_cm_id>
    public let peer: Endpoint
    public let privateData: [UInt8]
    let nonce: [UInt8]
    let identities: [UInt8]
    let requesterReadDepth: UInt8
    let requesterResponderResources: UInt8
    /// True until the identifier is accepted (owned by a queue pair) or
    /// rejected (destroyed).
    private let pending = Mutex(true)
    /// The channel the identifier moved to, kept while the request owns it.
    private let ownChannel = Mutex<EventChannel?>(nil)

    init(
        listener: VerbsListener, id: UnsafeMutablePointer<rdma_cm_id>, peer: Endpoint, request: ConnectionProof.Request,
        identities: [UInt8], requesterReadDepth: UInt8, requesterResponderResources: UInt8
    ) {
        self.listener = listener
        self.id = id
        self.peer = peer
        privateData = request.userData
        nonce = request.nonce
        self.identities = identities
        self.requesterReadDepth = requesterReadDepth
        self.requesterResponderResources = requesterResponderResources
    }

    deinit {
        if pending.withLock({ $0 }) { reject(privateData: []) }
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
        let claimed = pending.withLock { value in
            defer { value = false }
            return value
        }
        guard claimed else {
            throw FabricError(.invalidState, "the connection request from \(peer) was already accepted or rejected")
        }
        var queuePair: VerbsQueuePair?
        var acceptSent = false
        do throws(FabricError) {
            // Events of this connection go to its own channel from now on,
            // so that waiting for it does not consume the listener's requests.
            let channel = try EventChannel()
            guard rdma_migrate_id(id, channel.channel) == 0 else { throw VerbsError.system("moving the connection to its own event channel") }
            ownChannel.withLock { $0 = channel }
            let qp = try VerbsQueuePair(device: device, setup: setup, id: id, channel: channel)
            queuePair = qp
            // The requester proved itself already: remote access at once.
            try Transitions.toInitialized(qp, id, access: Transitions.remoteAccess)
            try prepare(qp)
            try Transitions.toReadyToReceive(qp, id, access: nil)
            try Transitions.toReadyToSend(qp, id)
            let answer = ConnectionProof.makeAccept(secret: device.secret, requestNonce: nonce, identities: identities, userData: privateData)
            let accepted = Transitions.withParameters(
                privateData: answer, responderResources: min(device.readDepth, requesterReadDepth),
                initiatorDepth: min(device.readDepth, requesterResponderResources), queuePair: qp, setup: setup
            ) { rdma_accept(id, &$0) }
            guard accepted == 0 else { throw VerbsError.system("accepting the connection from \(peer)") }
            acceptSent = true
            // The requester enables remote access before it confirms; wait
            // for that, so that our first one-sided operation finds it enabled.
            let deadline = ContinuousClock.now + Self.confirmationTimeout
            guard let event = try channel.next(until: deadline) else {
                throw FabricError(.connectionFailed, "\(peer) did not confirm the connection within \(Self.confirmationTimeout)")
            }
            switch event.kind {
            case RDMA_CM_EVENT_ESTABLISHED:
                break
            case RDMA_CM_EVENT_REJECTED:
                throw FabricError(.authenticationFailed, "\(peer) refused the accept; it may have refused our proof of the job secret (are both sides started with the same \(JobSecret.environmentVariable)?)")
            default:
                throw FabricError(.connectionFailed, "\(peer) did not complete the connection: \(ActiveConnection.eventName(event.kind))")
            }
            // Followed before its events move, so that none is missed.
            qp.established()
            guard rdma_migrate_id(id, device.events.channel) == 0 else { throw VerbsError.system("handing the connection to the device's event thread") }
            return qp
        } catch {
            // Tell the requester rather than leave it to its timeout.
            if acceptSent {
                rdma_disconnect(id)
            } else {
                let payload = ConnectionProof.makeReject(.rejectedByApplication)
                _ = payload.withUnsafeBytes { rdma_reject(id, $0.baseAddress, UInt8($0.count)) }
            }
            // A queue pair owns the identifier once it exists.
            if queuePair == nil { rdma_destroy_id(id) }
            throw error
        }
    }

    /// How long an accepted requester has to confirm.
    static let confirmationTimeout: Duration = .seconds(10)

    public func reject(privateData: [UInt8]) {
        let wasPending = pending.withLock { value in
            defer { value = false }
            return value
        }
        guard wasPending, !listener.device.forkDetection.isForkedChild else { return }
        let payload = ConnectionProof.makeReject(.rejectedByApplication, userData: privateData)
        _ = payload.withUnsafeBytes { rdma_reject(id, $0.baseAddress, UInt8($0.count)) }
        rdma_destroy_id(id)
    }
}
