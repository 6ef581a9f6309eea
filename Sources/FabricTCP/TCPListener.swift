import CFabricShims
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// A listening endpoint of the software NIC. It accepts TCP connections and
/// runs the server's half of the handshake for all of them at once, on
/// non-blocking sockets gathered in one epoll set (its `fileDescriptor`):
/// a peer that says nothing, or too little, only runs out its own
/// `handshakeTimeout`. Only peers that prove the job secret become
/// connection requests; refused attempts are logged and counted, and what
/// a refused peer cost is freed at once.
public final class TCPListener: FabricListener, @unchecked Sendable {  // mutable state behind `state`'s lock; the rest immutable or atomic
    public typealias Device = TCPDevice
    public let endpoint: Endpoint
    public let address: FabricAddress
    let fd: Int32
    let device: TCPDevice
    /// The listening socket (token 0) and every handshake in progress
    /// (token: its socket + 1).
    private let poller: EventPoller
    /// Connection attempts refused during the handshake (wrong secret or
    /// version, garbage, timeouts, too many at once).
    public let refusedAttempts = Atomic<Int>(0)
    /// Requests refused because the peer's crossing connect lost the
    /// tie-break (`ConnectOptions.tag`): not attacks, counted apart.
    public let crossedRequests = Atomic<Int>(0)
    /// How long one peer may take over its half of the handshake.
    public static let handshakeTimeout: UInt64 = 5_000_000_000
    /// Handshakes in progress at most; more peers are refused at once (each
    /// costs a socket and a few hundred bytes until its timeout).
    public static let maximumHandshakes = 1024

    private struct Handshaking {
        let fd: Int32
        let peer: Endpoint
        var handshake: ServerHandshake
        var io = HandshakeIO()
        let deadline: UInt64
        /// A reply is stuck in a full socket: watched for room too.
        var watchingWritable = false
    }
    private struct State {
        var handshakes: [Int32: Handshaking] = [:]
        /// Authenticated, waiting for a connect of ours to learn whom it
        /// reached (the tie-break).
        var held: Set<Int32> = []
        var ready: [TCPConnectionRequest] = []
        var closed = false
    }
    private let state = Locked(State())

    init(fd: Int32, endpoint: Endpoint, address: FabricAddress, device: TCPDevice) throws(FabricError) {
        self.fd = fd
        self.endpoint = endpoint
        self.address = address
        self.device = device
        poller = try EventPoller()
        if fd >= 0 { try poller.add(fd, token: 0, events: .epollIn) }
    }

    deinit { close() }

    public var fileDescriptor: Int32 { poller.fd }

    public func close() {
        let abandoned = state.withLock { state -> [Int32] in
            guard !state.closed else { return [] }
            state.closed = true
            if fd >= 0 { SystemCalls.close(fd) }
            defer {
                state.handshakes.removeAll()
                state.held.removeAll()
            }
            return Array(state.handshakes.keys)
        }
        for socket in abandoned { SystemCalls.close(socket) }
    }

    public func next(timeout: Duration?) throws(FabricError) -> TCPConnectionRequest? {
        try device.core.checkNotForked()
        let limit = timeout.map { MonotonicClock.now() &+ MonotonicClock.nanoseconds($0) } ?? UInt64.max
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: 64)
        defer { events.deallocate() }
        while true {
            let (request, wake) = try drive(events)
            if let request { return request }
            let now = MonotonicClock.now()
            if now >= limit { return nil }
            let until = min(limit, wake)
            // A handshake's deadline may have passed since `drive` looked.
            let milliseconds = until == .max ? Int32(1000) : until <= now ? 0 : Int32(min((until - now) / 1_000_000 + 1, 1000))
            _ = SystemCalls.poll(poller.fd, events: Int16(POLLIN), milliseconds: milliseconds)
        }
    }

    /// One look at everything: new peers, handshakes with input or room,
    /// held requests, timeouts. Returns a request if one is ready, and when
    /// to look again at the latest.
    private func drive(_ events: UnsafeMutablePointer<epoll_event>) throws(FabricError) -> (TCPConnectionRequest?, UInt64) {
        try state.withLock { (state) throws(FabricError) -> (TCPConnectionRequest?, UInt64) in
            guard !state.closed else {
                throw FabricError(.invalidState, "the listener on \(endpoint) is closed")
            }
            let now = MonotonicClock.now()
            let count = poller.wait(events, capacity: 64, timeoutMilliseconds: 0)
            for index in 0..<count {
                let token = events[index].data.u64
                if token == 0 {
                    acceptWaiting(&state, now: now)
                } else {
                    step(Int32(truncatingIfNeeded: token &- 1), &state)
                }
            }
            for socket in Array(state.held) { decide(socket, &state) }
            var wake = UInt64.max
            for (socket, handshaking) in Array(state.handshakes) {
                if handshaking.deadline <= now {
                    refuse(socket, &state, "did not finish its handshake within \(Self.handshakeTimeout / 1_000_000_000) s")
                } else {
                    wake = min(wake, handshaking.deadline)
                }
            }
            // A held request waits on another thread's connect: look again soon.
            if !state.held.isEmpty { wake = min(wake, now &+ 1_000_000) }
            return (state.ready.isEmpty ? nil : state.ready.removeFirst(), wake)
        }
    }

    private func acceptWaiting(_ state: inout State, now: UInt64) {
        while true {
            let accepted: (fd: Int32, peer: Endpoint)?
            do { accepted = try Sockets.accept(fd) } catch {
                device.core.logger.warning("accepting a connection failed", metadata: ["listener": "\(endpoint)", "reason": "\(error.message)"])
                return
            }
            guard let (socket, peer) = accepted else { return }
            guard state.handshakes.count < Self.maximumHandshakes else {
                refusedAttempts.wrappingAdd(1, ordering: .relaxed)
                device.core.logger.warning("refused a connection", metadata: ["peer": "\(peer)", "reason": "\(Self.maximumHandshakes) handshakes are in progress already"])
                SystemCalls.close(socket)
                continue
            }
            SystemCalls.setNonBlocking(socket)
            do { try poller.add(socket, token: UInt64(socket) + 1, events: .epollIn | .epollRDHup) } catch {
                SystemCalls.close(socket)
                continue
            }
            state.handshakes[socket] = Handshaking(
                fd: socket, peer: peer, handshake: ServerHandshake(secret: device.core.secret, instance: device.core.instance),
                deadline: now &+ Self.handshakeTimeout)
            // The HELLO may be there already.
            step(socket, &state)
        }
    }

    /// Moves one handshake as far as its input allows.
    private func step(_ socket: Int32, _ state: inout State) {
        guard var handshaking = state.handshakes[socket], !state.held.contains(socket) else { return }
        do {
            while true {
                let flushed = try HandshakeIO.flush(socket, &handshaking.handshake.outbox)
                if flushed == handshaking.watchingWritable {
                    handshaking.watchingWritable = !flushed
                    poller.modify(socket, token: UInt64(socket) + 1, events: flushed ? .epollIn | .epollRDHup : .epollIn | .epollOut | .epollRDHup)
                }
                guard flushed else { break }
                if handshaking.handshake.phase == .authenticated {
                    state.handshakes[socket] = handshaking
                    decide(socket, &state)
                    return
                }
                guard let message = try handshaking.io.read(socket, wanted: handshaking.handshake.bytesWanted) else { break }
                try handshaking.handshake.receive(message[...])
            }
            state.handshakes[socket] = handshaking
        } catch {
            // What the refusal says (a version refusal, a verdict) goes out
            // if the socket takes it now; the peer learns no more.
            _ = try? HandshakeIO.flush(socket, &handshaking.handshake.outbox)
            // A tagged client that leaves after our challenge is how a
            // crossing connect gives way (it learned our instance and found
            // the other connection): routine for MPI jobs, not a warning.
            let gaveWay = error.kind == .connectionFailed && handshaking.handshake.phase == .proof && handshaking.handshake.tag != nil
            refuse(socket, &state, error.message, quietly: gaveWay)
        }
    }

    /// An authenticated peer: hand it to the application, refuse it (its
    /// crossing connect lost the tie-break), or hold it until ours knows.
    private func decide(_ socket: Int32, _ state: inout State) {
        guard let handshaking = state.handshakes[socket] else { return }
        let handshake = handshaking.handshake
        var record: ConnectionTags.RecordID?
        if let tag = handshake.tag {
            let decision = device.core.tags.withLock { tags -> ConnectionTags.IncomingDecision in
                let decision = tags.decide(incomingTag: tag, from: handshake.clientInstance)
                if decision == .deliver { record = tags.delivered(incomingTag: tag, from: handshake.clientInstance) }
                return decision
            }
            switch decision {
            case .deliver:
                break
            case .wait:
                state.held.insert(socket)
                return
            case .refuse:
                var verdict = Handshake.encodeVerdict(.crossedConnection, privateData: [])
                _ = try? HandshakeIO.flush(socket, &verdict)
                crossedRequests.wrappingAdd(1, ordering: .relaxed)
                device.core.logger.debug("crossing connect refused", metadata: ["peer": "\(handshaking.peer)", "tag": "\(tag)"])
                forget(socket, &state)
                SystemCalls.close(socket)
                return
            }
        }
        forget(socket, &state)
        state.ready.append(TCPConnectionRequest(
            fd: socket, peer: handshaking.peer, privateData: handshake.privateData, tag: handshake.tag, device: device, tagRecord: record))
    }

    private func refuse(_ socket: Int32, _ state: inout State, _ reason: String, quietly: Bool = false) {
        guard let handshaking = state.handshakes[socket] else { return }
        refusedAttempts.wrappingAdd(1, ordering: .relaxed)
        if quietly {
            device.core.logger.debug("a tagged connect gave way after the challenge", metadata: ["peer": "\(handshaking.peer)", "reason": "\(reason)"])
        } else {
            device.core.logger.warning("refused a connection", metadata: ["peer": "\(handshaking.peer)", "reason": "\(reason)"])
        }
        forget(socket, &state)
        SystemCalls.close(socket)
    }

    private func forget(_ socket: Int32, _ state: inout State) {
        poller.remove(socket)
        state.handshakes[socket] = nil
        state.held.remove(socket)
    }
}
