import Dispatch
import Glibc
import FabricCore
import Synchronization

/// This rank's connections to the others, made lazily: a peer is
/// connected on first use, by whichever side needs it first (or both at
/// once: the pair's tag makes the fabric keep one queue pair). Incoming
/// connections are accepted by a thread of the runtime that serves the
/// listener, so a rank that computes outside MPI still answers a peer's
/// first message.
///
/// Each connection is a `PeerChannel`, findable by its queue pair's number
/// from the connect's or accept's `prepare` on (before the peer can send),
/// so that no completion finds its owner missing, even on a queue pair
/// whose connect has not returned yet. Its frames land in the shared
/// receive queue of the setup.
final class PeerConnections<Device: FabricDevice>: @unchecked Sendable {  // the tables are behind Mutexes; the rest is set in init
    let rank: Int
    let size: Int
    let device: Device
    private let listener: Device.Listener
    /// Reads a rank's fabric address (from the job's key-value space);
    /// called by the engine's caller only.
    private let addressOf: (Int) throws(MPIError) -> FabricAddress
    /// Makes the channel for a new queue pair.
    private let makeChannel: (Int) throws(FabricError) -> PeerChannel<Device>
    private let setup: QueuePairSetup<Device>
    /// Connected peers by rank.
    private let byRank = Mutex<[Int: PeerChannel<Device>]>([:])
    /// Every channel whose queue pair exists, by queue pair number.
    private let byQueuePair = Mutex<[QueuePairNumber: PeerChannel<Device>]>([:])
    private let stopping = Atomic<Bool>(false)
    private let acceptorDone = DispatchSemaphore(value: 0)
    let waiting: WaitDescription
    private let connectTimeout: Duration

    init(
        rank: Int, size: Int, device: Device, listener: Device.Listener, setup: QueuePairSetup<Device>,
        waiting: WaitDescription, connectTimeout: Duration = .seconds(30),
        makeChannel: @escaping (Int) throws(FabricError) -> PeerChannel<Device>,
        addressOf: @escaping (Int) throws(MPIError) -> FabricAddress
    ) {
        self.rank = rank
        self.size = size
        self.device = device
        self.listener = listener
        self.setup = setup
        self.addressOf = addressOf
        self.makeChannel = makeChannel
        self.waiting = waiting
        self.connectTimeout = connectTimeout
        let acceptor = DispatchQueue(label: "mpi.runtime.accept.rank-\(rank)")
        acceptor.async { [self] in
            acceptLoop()
            acceptorDone.signal()
        }
    }

    var connectionCount: Int { byRank.withLock { $0.count } }

    /// The channel of queue pair `number`, if it is one of ours.
    func channel(ofQueuePair number: QueuePairNumber) -> PeerChannel<Device>? {
        byQueuePair.withLock { $0[number] }
    }

    /// The channel to `peer` if it is connected.
    func existingChannel(to peer: Int) -> PeerChannel<Device>? {
        byRank.withLock { $0[peer] }
    }

    /// The channel to `peer`, connecting on first use.
    func channel(to peer: Int) throws(MPIError) -> PeerChannel<Device> {
        guard (0..<size).contains(peer), peer != rank else {
            throw MPIError(.invalidRank, "rank \(peer) is not another rank of this job of \(size)")
        }
        if let known = existingChannel(to: peer) { return known }
        let address = try addressOf(peer)
        waiting.set("the connection to rank \(peer) (\(address))")
        defer { waiting.clear() }
        let made: PeerChannel<Device>
        do { made = try makeChannel(peer) } catch {
            throw MPIError(error, while: "preparing the connection to rank \(peer)")
        }
        let options = ConnectOptions(timeout: connectTimeout, tag: PairTag(rank, peer).value)
        do {
            _ = try device.connect(to: address, setup, options: options) { (queuePair) throws(FabricError) in
                try adopt(queuePair, for: made)
            }
            byRank.withLock { $0[peer] = made }
            return made
        } catch where error.kind == .crossedConnection {
            // The peer connected to us at the same moment and its connect
            // won: our listener's thread is accepting it.
            discard(made)
            let deadline = ContinuousClock.now + connectTimeout
            while ContinuousClock.now < deadline {
                if let known = existingChannel(to: peer) { return known }
                sleepBriefly()
            }
            throw MPIError(.fabric(.timedOut), "rank \(peer)'s connection, which won the tie-break over ours, did not arrive within \(connectTimeout)")
        } catch {
            discard(made)
            throw MPIError(error, while: "connecting to rank \(peer) at \(address)")
        }
    }

    /// `prepare` of a new queue pair: its channel becomes findable.
    private func adopt(_ queuePair: Device.QueuePair, for channel: PeerChannel<Device>) throws(FabricError) {
        channel.queuePair = queuePair
        byQueuePair.withLock { $0[queuePair.number] = channel }
    }

    /// A queue pair that did not become the peer's connection.
    private func discard(_ channel: PeerChannel<Device>) {
        if let queuePair = channel.queuePair {
            byQueuePair.withLock { $0[queuePair.number] = nil }
            queuePair.disconnect()
        }
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
            let made: PeerChannel<Device>
            do { made = try makeChannel(peer) } catch {
                request.reject(privateData: [])
                continue
            }
            do {
                _ = try request.accept(setup, privateData: []) { (queuePair) throws(FabricError) in
                    try adopt(queuePair, for: made)
                }
                byRank.withLock { $0[peer] = made }
            } catch {
                // The requester sees its connect fail and reports it.
                discard(made)
            }
        }
    }

    /// Stops accepting and disconnects every peer.
    func close() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        acceptorDone.wait()
        listener.close()
        let all = byRank.withLock { table in
            let values = Array(table.values)
            table.removeAll()
            return values
        }
        for channel in all { channel.queuePair.disconnect() }
        byQueuePair.withLock { $0.removeAll() }
    }

    private func sleepBriefly() {
        var request = timespec(tv_sec: 0, tv_nsec: 1_000_000)
        nanosleep(&request, nil)
    }
}
