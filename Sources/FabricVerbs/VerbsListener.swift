internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// A listening rdma_cm identifier.
public final class VerbsListener: FabricListener, @unchecked Sendable {  // `open` is behind a lock
    public typealias Device = VerbsDevice
    let device: VerbsDevice
    let channel: EventChannel
    /// The listening identifier; nil once closed.
    private let identifier: Mutex<RDMAIdentifier?>
    /// Tagged requests waiting for a connect of ours to learn whom it
    /// reached (the tie-break).
    private let held = Mutex<[VerbsConnectionRequest]>([])
    /// Requests refused because the peer's crossing connect lost the
    /// tie-break (`ConnectOptions.tag`).
    public let crossedRequests = Atomic<Int>(0)
    public let endpoint: Endpoint
    public let address: FabricAddress

    init(device: VerbsDevice, endpoint: Endpoint, backlog: Int) throws(FabricError) {
        self.device = device
        channel = try EventChannel()
        // Destroyed by its owner if set-up fails below.
        let owner = try RDMAIdentifier(on: channel, forkDetection: device.forkDetection)
        let id = owner.id
        do {
            var address = try Addressing.resolve(endpoint, passive: true)
            let bound = withUnsafeMutableBytes(of: &address) { rdma_bind_addr(id, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self)) }
            guard bound == 0 else { throw VerbsError.system("binding \(endpoint) for rdma_cm") }
            if let context = id.pointee.verbs, context != device.context {
                throw FabricError(.invalidArgument, "\(endpoint.host) is an address of RDMA device \(String(cString: ibv_get_device_name(context.pointee.device))), not \(device.name)")
            }
            guard rdma_listen(id, Int32(clamping: backlog)) == 0 else { throw VerbsError.system("listening on \(endpoint)") }
        }
        let bound = Endpoint(host: endpoint.host, port: UInt16(bigEndian: rdma_get_src_port(id)))
        // A wildcard listener is reached through the interface its
        // device's port sits on.
        address = try InterfaceAddresses.listenerAddress(
            backend: device.backendName, wireVersion: device.wireVersion, bound: bound, instance: device.instance,
            interface: VerbsProbe.networkInterface(of: device.name))
        identifier = Mutex(owner)
        self.endpoint = bound
    }

    deinit { close() }

    public func close() {
        // Taken out under the lock, destroyed (by its owner) outside it.
        _ = identifier.withLock { $0.take() }
    }

    public var fileDescriptor: Int32 { channel.fd }

    public func next(timeout: Duration?) throws(FabricError) -> VerbsConnectionRequest? {
        try device.forkDetection.checkNotForked()
        guard identifier.withLock({ $0 != nil }) else { throw FabricError(.invalidState, "the listener on \(endpoint) is closed") }
        let deadline = ContinuousClock.now + (timeout ?? .seconds(365 * 86_400))
        while true {
            if let request = releaseHeld() { return request }
            // A held request waits on another thread's connect: look again soon.
            let holding = !held.withLock { $0.isEmpty }
            let until = holding ? min(deadline, ContinuousClock.now + .milliseconds(1)) : deadline
            guard let event = try channel.next(until: until) else {
                if ContinuousClock.now >= deadline { return nil }
                continue
            }
            guard event.kind == RDMA_CM_EVENT_CONNECT_REQUEST, let requestID = event.id else { continue }
            // Ours from here: a refused request's identifier goes with `owner`.
            let owner = RDMAIdentifier(adopting: requestID, arrivedOn: channel, forkDetection: device.forkDetection)
            let peer = Addressing.endpoint(rdma_get_peer_addr(requestID))
            func refuse(_ reason: ConnectionProof.RejectReason, _ message: String) {
                device.logger.warning("refused a connection from \(peer): \(message)")
                let payload = ConnectionProof.makeReject(reason)
                _ = payload.withUnsafeBytes { rdma_reject(owner.id, $0.baseAddress, UInt8($0.count)) }
            }
            guard requestID.pointee.verbs == device.context else {
                refuse(.wrongDevice, "the request arrived on another RDMA device")
                continue
            }
            let identities = ConnectionProof.identities(
                requester: Addressing.identity(rdma_get_peer_addr(requestID)), acceptor: Addressing.identity(rdma_get_local_addr(requestID)))
            let request: ConnectionProof.Request
            do {
                request = try ConnectionProof.checkRequest(event.privateData, secret: device.secret, identities: identities, replayGuard: device.replayGuard)
            } catch {
                refuse(error.reason, error.message)
                continue
            }
            let pending = VerbsConnectionRequest(
                listener: self, identifier: owner, peer: peer, request: request, identities: identities,
                requesterReadDepth: event.initiatorDepth, requesterResponderResources: event.responderResources)
            if let ready = settle(pending) { return ready }
        }
    }

    /// A tagged request is handed over, refused (its crossing connect lost
    /// the tie-break) or held until a connect of ours knows whom it reached.
    private func settle(_ request: VerbsConnectionRequest) -> VerbsConnectionRequest? {
        guard let tag = request.tag else { return request }
        let decision = device.tags.withLock { tags -> ConnectionTags.IncomingDecision in
            let decision = tags.decide(incomingTag: tag, from: request.requesterInstance)
            if decision == .deliver { request.tagRecord = tags.delivered(incomingTag: tag, from: request.requesterInstance) }
            return decision
        }
        switch decision {
        case .deliver:
            return request
        case .wait:
            held.withLock { $0.append(request) }
            return nil
        case .refuse:
            crossedRequests.wrappingAdd(1, ordering: .relaxed)
            request.refuse(.crossedConnection)
            return nil
        }
    }

    private func releaseHeld() -> VerbsConnectionRequest? {
        let waiting = held.withLock { list -> [VerbsConnectionRequest] in
            defer { list.removeAll() }
            return list
        }
        var ready: VerbsConnectionRequest?
        for request in waiting {
            if ready == nil, let settled = settle(request) { ready = settled }
            else if ready != nil { held.withLock { $0.append(request) } }
        }
        return ready
    }
}
