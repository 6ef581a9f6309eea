import Dispatch
import Glibc
import FabricCore
import Synchronization

/// What the runtime needs of its connections, whichever device they run
/// on: the facade holds it as an existential, the device's generics stay
/// inside.
protocol RuntimeTransport: AnyObject {
    /// Queue pairs this rank has, made by its connects and its listener.
    var connectionCount: Int { get }
    /// Sends a runtime message (at most `RuntimeMessageSlots.slotSize`
    /// bytes), connecting first if this is the first use of `rank`.
    func send(_ bytes: [UInt8], to rank: Int) throws(MPIError)
    /// The next runtime message from `rank`, waiting for it.
    func receive(from rank: Int) throws(MPIError) -> [UInt8]
    /// Disconnects every peer and stops accepting.
    func close()
}

/// This rank's connections to the others, made lazily: a peer is
/// connected on first use, by whichever side needs it first (or both at
/// once: the pair's tag makes the fabric keep one queue pair). Incoming
/// connections are accepted by a thread of the runtime that serves the
/// listener, so a rank that computes outside MPI still answers a peer's
/// first message.
///
/// The calling thread (the application's) sends, receives and polls the
/// completion queue; the accepting thread only accepts, posts a new
/// peer's receives and adds it to the table.
final class PeerConnections<Device: FabricDevice>: RuntimeTransport, @unchecked Sendable {  // the table is behind a Mutex; mailboxes, sendSlot and waiting belong to the application's thread
    let rank: Int
    let size: Int
    let device: Device
    private let domain: Device.ProtectionDomain
    private let completions: Device.CompletionQueue
    private let listener: Device.Listener
    /// Reads a rank's fabric address (from the job's key-value space);
    /// called on the application's thread only.
    private let addressOf: (Int) throws(MPIError) -> FabricAddress
    /// Connected peers by rank.
    private let peers = Mutex<[Int: Peer]>([:])
    /// Every set of receive slots posted on a queue pair, by identifier:
    /// filled when the queue pair exists and before the peer can send
    /// (in `prepare`), so that no receive completion finds its owner
    /// missing, even on a queue pair whose connect has not returned yet.
    private let slotOwners = Mutex<[UInt32: Peer]>([:])
    private let nextSlotsIdentifier = Atomic<UInt32>(1)
    private let stopping = Atomic<Bool>(false)
    private let acceptorDone = DispatchSemaphore(value: 0)
    private var mailboxes: [Int: [[UInt8]]] = [:]
    /// Peers whose connection ended (a peer that finalized disconnects):
    /// an error only for a receive that still waits on it.
    private var endedPeers: [Int: String] = [:]
    private let sendSlot: RuntimeMessageSlots<Device>
    private var nextSendID: UInt64 = 1
    /// What the application's thread waits for, for diagnostics.
    let waiting: WaitDescription
    private let connectTimeout: Duration

    /// One peer: its queue pair and the receive slots posted on it. The
    /// queue pair is set once, by `prepare`, before the entry is published
    /// in the tables (whose locks order the store before any reader).
    final class Peer: @unchecked Sendable {  // queuePair is written once before publication; queue pairs are thread-safe
        let rank: Int
        let slots: RuntimeMessageSlots<Device>
        var queuePair: Device.QueuePair!

        init(rank: Int, slots: RuntimeMessageSlots<Device>) {
            self.rank = rank
            self.slots = slots
        }
    }

    /// Receive slots for a new queue pair to `rank`.
    private func newPeer(_ rank: Int) throws(FabricError) -> Peer {
        let identifier = nextSlotsIdentifier.wrappingAdd(1, ordering: .relaxed).oldValue
        return Peer(rank: rank, slots: try RuntimeMessageSlots(device: device, domain: domain, count: RuntimeMessageSlots<Device>.receiveCount, identifier: identifier))
    }

    /// `prepare` of a new queue pair: its receives are posted, and its
    /// completions will find their owner.
    private func adopt(_ queuePair: Device.QueuePair, for peer: Peer) throws(FabricError) {
        peer.queuePair = queuePair
        slotOwners.withLock { $0[peer.slots.identifier] = peer }
        try peer.slots.postAll(on: queuePair, peer: peer.rank)
    }

    /// A queue pair that did not become the peer's connection.
    private func discard(_ peer: Peer) {
        slotOwners.withLock { $0[peer.slots.identifier] = nil }
        peer.queuePair?.disconnect()
        peer.slots.close()
    }

    init(
        rank: Int, size: Int, device: Device, listener: Device.Listener, waiting: WaitDescription,
        connectTimeout: Duration = .seconds(30), addressOf: @escaping (Int) throws(MPIError) -> FabricAddress
    ) throws(MPIError) {
        self.rank = rank
        self.size = size
        self.device = device
        self.listener = listener
        self.addressOf = addressOf
        self.waiting = waiting
        self.connectTimeout = connectTimeout
        do {
            domain = try device.allocateProtectionDomain()
            completions = try device.createCompletionQueue(capacity: 4096)
            sendSlot = try RuntimeMessageSlots(device: device, domain: domain, count: 1, identifier: 0)
        } catch {
            throw MPIError(error, while: "setting up the runtime's connections")
        }
        let acceptor = DispatchQueue(label: "mpi.runtime.accept.rank-\(rank)")
        acceptor.async { [self] in
            acceptLoop()
            acceptorDone.signal()
        }
    }

    var connectionCount: Int { peers.withLock { $0.count } }

    // MARK: - Connections

    /// The queue pair to `peer`, connecting on first use.
    private func connection(to peer: Int) throws(MPIError) -> Peer {
        guard (0..<size).contains(peer), peer != rank else {
            throw MPIError(.invalidRank, "rank \(peer) is not another rank of this job of \(size)")
        }
        if let known = peers.withLock({ $0[peer] }) { return known }
        let address = try addressOf(peer)
        waiting.set("the connection to rank \(peer) (\(address))")
        defer { waiting.clear() }
        let made: Peer
        do { made = try newPeer(peer) } catch {
            throw MPIError(error, while: "registering receive slots for rank \(peer)")
        }
        let options = ConnectOptions(timeout: connectTimeout, tag: PairTag(rank, peer).value)
        do {
            _ = try device.connect(to: address, setup(), options: options) { (queuePair) throws(FabricError) in
                try adopt(queuePair, for: made)
            }
            peers.withLock { $0[peer] = made }
            return made
        } catch where error.kind == .crossedConnection {
            // The peer connected to us at the same moment and its connect
            // won: our listener's thread is accepting it.
            discard(made)
            let deadline = ContinuousClock.now + connectTimeout
            while ContinuousClock.now < deadline {
                if let known = peers.withLock({ $0[peer] }) { return known }
                sleepBriefly()
            }
            throw MPIError(.fabric(.timedOut), "rank \(peer)'s connection, which won the tie-break over ours, did not arrive within \(connectTimeout)")
        } catch {
            discard(made)
            throw MPIError(error, while: "connecting to rank \(peer) at \(address)")
        }
    }

    private func setup() -> QueuePairSetup<Device> {
        // Runtime messages are few and each is awaited: a peer that has not
        // yet reposted a slot is waited for, never failed.
        QueuePairSetup(
            protectionDomain: domain, sendCompletionQueue: completions, receiveCompletionQueue: completions,
            limits: QueuePairLimits(sendQueueDepth: 16, receiveQueueDepth: RuntimeMessageSlots<Device>.receiveCount + 1),
            retry: RetryPolicy(receiverNotReadyRetries: nil))
    }

    private func acceptLoop() {
        while !stopping.load(ordering: .relaxed) {
            let request: Device.ConnectionRequest?
            do { request = try listener.next(timeout: .milliseconds(100)) } catch {
                // A listener that keeps failing (out of descriptors) is
                // asked again, not spun on.
                sleepBriefly()
                continue
            }
            guard let request else { continue }
            guard let tag = request.tag, let pair = PairTag(tag, size: size), let peer = pair.peer(of: rank) else {
                request.reject(privateData: [])
                continue
            }
            let made: Peer
            do { made = try newPeer(peer) } catch {
                request.reject(privateData: [])
                continue
            }
            do {
                _ = try request.accept(setup(), privateData: []) { (queuePair) throws(FabricError) in
                    try adopt(queuePair, for: made)
                }
                peers.withLock { $0[peer] = made }
            } catch {
                // The requester sees its connect fail and reports it.
                discard(made)
            }
        }
    }

    // MARK: - Messages

    func send(_ bytes: [UInt8], to peer: Int) throws(MPIError) {
        guard bytes.count <= RuntimeMessageSlots<Device>.slotSize else {
            throw MPIError(.messageTooLong, "a runtime message of \(bytes.count) bytes; at most \(RuntimeMessageSlots<Device>.slotSize)")
        }
        let target = try connection(to: peer)
        let id = nextSendID
        nextSendID += 1
        let element: ScatterGatherElement
        do { element = try sendSlot.fill(0, with: bytes) } catch {
            throw MPIError(error, while: "sending a runtime message to rank \(peer)")
        }
        while true {
            let posted: PostResult
            do { posted = try target.queuePair.postSend(SendWorkRequest(id: id, operation: .send, local: .single(element))) } catch {
                throw MPIError(error, while: "sending a runtime message to rank \(peer)")
            }
            if posted == .posted { break }
            try pollOnce()
        }
        waiting.set("the send of a runtime message to rank \(peer) to complete")
        defer { waiting.clear() }
        // The slot is reused by the next send: wait for this one.
        var sent = false
        try poll(until: { sent }) { (completion) throws(MPIError) in
            guard completion.workRequestID == id else { return }
            guard completion.isSuccess else {
                throw MPIError(.peerFailed, "the runtime message to rank \(peer) failed: \(completion)")
            }
            sent = true
        }
    }

    func receive(from peer: Int) throws(MPIError) -> [UInt8] {
        guard (0..<size).contains(peer), peer != rank else {
            throw MPIError(.invalidRank, "rank \(peer) is not another rank of this job of \(size)")
        }
        if var queued = mailboxes[peer], !queued.isEmpty {
            let message = queued.removeFirst()
            mailboxes[peer] = queued
            return message
        }
        waiting.set("a runtime message from rank \(peer)")
        defer { waiting.clear() }
        try poll(until: { () throws(MPIError) -> Bool in
            if mailboxes[peer]?.isEmpty == false { return true }
            if let why = endedPeers[peer] {
                throw MPIError(.peerFailed, "the connection to rank \(peer) ended before its message arrived: \(why)")
            }
            return false
        })
        return mailboxes[peer]!.removeFirst()
    }

    /// Polls the completion queue until `satisfied` says so, filing
    /// receive completions in their sender's mailbox and handing every
    /// completion to `inspect`.
    private func poll(
        until satisfied: () throws(MPIError) -> Bool, inspect: (Completion) throws(MPIError) -> Void = { _ in }
    ) throws(MPIError) {
        while try !satisfied() {
            let completion: Completion?
            do { completion = try completions.next(timeout: .milliseconds(100)) } catch {
                throw MPIError(error, while: "waiting for the runtime's completions")
            }
            guard let completion else { continue }
            try file(completion)
            try inspect(completion)
        }
    }

    private func pollOnce() throws(MPIError) {
        if let completion = completions.poll() { try file(completion) }
    }

    /// A receive completion goes to its sender's mailbox and its slot is
    /// posted again.
    private func file(_ completion: Completion) throws(MPIError) {
        guard completion.opcode == .receive || completion.opcode == .receiveWithImmediate || !completion.isSuccess,
            let (identifier, slot) = RuntimeMessageSlots<Device>.decode(completion.workRequestID)
        else { return }
        // A queue pair that lost a tie-break or was discarded: its flushed
        // receives belong to nobody.
        guard let owner = slotOwners.withLock({ $0[identifier] }) else { return }
        let peer = owner.rank
        guard completion.isSuccess else {
            if endedPeers[peer] == nil { endedPeers[peer] = "\(completion)" }
            return
        }
        mailboxes[peer, default: []].append(owner.slots.contents(slot, length: Int(completion.byteLength)))
        do { try owner.slots.post(slot, on: owner.queuePair, peer: peer) } catch {
            throw MPIError(error, while: "posting a receive slot again for rank \(peer)")
        }
    }

    func close() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        acceptorDone.wait()
        listener.close()
        let all = peers.withLock { table in
            let values = Array(table.values)
            table.removeAll()
            return values
        }
        for peer in all { peer.queuePair.disconnect() }
        slotOwners.withLock { $0.removeAll() }
        for peer in all { peer.slots.close() }
        sendSlot.close()
    }

    private func sleepBriefly() {
        var request = timespec(tv_sec: 0, tv_nsec: 1_000_000)
        nanosleep(&request, nil)
    }
}
