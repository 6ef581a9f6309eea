import FabricCore
import Glibc

/// The protocol's sizes: where eager ends and rendezvous begins, the
/// credits of each connection and the receive slots they share, how a
/// rendezvous payload is cut, how a blocked call waits. The
/// defaults come from the device's capabilities; each can be overridden
/// by an environment variable (listed by mpiinfo). Rank 0's values are the
/// job's: every rank must agree on the slot size and the credits.
struct PointToPointSettings: Equatable, Sendable {
    /// The largest message sent eagerly (header and payload in one frame).
    var eagerLimit: Int
    /// Eager frames a sender may have unread at one receiver (its credits).
    var eagerSlots: Int
    /// Receive slots of the process, shared by all its connections (one
    /// shared receive queue): eager frames and header-only frames
    /// (rendezvous requests, answers, credits) land in them. Header-only
    /// frames are handled as they arrive and their slot posted again at
    /// once; unexpected eager messages are copied out of theirs once half
    /// the slots are held, so frames always find room.
    var sharedSlots: Int
    /// Bytes of one RDMA READ of a rendezvous payload.
    var rendezvousChunk: Int
    /// Chunks' worth of READ bytes in flight per connection: bounds how
    /// long a small message waits behind a large one.
    var readsInFlight: Int
    /// Frames gathered per connection before they are posted as one list
    /// (also posted at every wait, test or probe): 1 posts each at once.
    var sendBatch: Int
    /// Registered bounce slots for outgoing eager messages (process-wide).
    var sendSlots: Int
    /// Bytes of unexpected eager messages copied out of their slots.
    var unexpectedMemoryLimit: Int
    /// How long a blocked call polls before it sleeps on the completion queue.
    var spinBeforeSleep: Duration
    /// Whether a blocked call yields the processor between polls (after the
    /// first 20 µs): when this host runs more ranks than this rank has
    /// cores, so that the rank it waits for gets to run.
    var yieldWhileWaiting: Bool

    /// Bytes of one slot: the header and the largest eager payload.
    var slotSize: Int { (MessageHeader.size + eagerLimit + 63) & ~63 }

    static let variables: [(name: String, meaning: String, unsetMeans: String)] = [
        ("FABRIC_MPI_EAGER_LIMIT", "bytes up to which a message is sent eagerly (above: zero-copy rendezvous); rank 0's value is the job's", "4 transfer units of the device, 4-64 KiB (16 KiB on tcp)"),
        ("FABRIC_MPI_EAGER_SLOTS", "eager messages a rank may have unread at one peer (credits per connection); rank 0's value is the job's", "64"),
        ("FABRIC_MPI_SHARED_SLOTS", "receive slots of a rank, shared by all its connections (each holds one eager message)", "512"),
        ("FABRIC_MPI_RENDEZVOUS_CHUNK", "bytes per RDMA READ of a rendezvous payload", "128 transfer units, at least 128 KiB (512 KiB on tcp)"),
        ("FABRIC_MPI_READS_IN_FLIGHT", "rendezvous chunks' worth of READ bytes in flight per connection", "2"),
        ("FABRIC_MPI_SEND_BATCH", "frames a connection gathers before posting them as one list (they also leave at every wait, test or probe); 1: each at once", "16"),
        ("FABRIC_MPI_UNEXPECTED_LIMIT", "bytes of unexpected eager messages held outside the receive slots", "64 MiB"),
        ("FABRIC_MPI_SPIN_US", "microseconds a blocked call polls before sleeping on the completion queue", "1000"),
        ("FABRIC_MPI_YIELD", "1: a blocked call yields the processor between polls; 0: it does not", "1 when this host runs more ranks (MPI_LOCALNRANKS) than the rank has cores"),
    ]

    /// The defaults for `capabilities`, then the environment's overrides.
    static func choose(capabilities: DeviceCapabilities, environment: [String: String]) throws(MPIError) -> PointToPointSettings {
        // Eager up to four transfer units: one frame on the wire stays cheap
        // to copy; above it the copy costs more than a READ round trip.
        let eager = min(max(4 * capabilities.mtu, 4096), 65536)
        // A chunk of 128 transfer units keeps the link busy; two in flight
        // keep it busy across the READ round trip, and a small message
        // waits behind at most two chunks.
        var settings = PointToPointSettings(
            eagerLimit: eager, eagerSlots: 64, sharedSlots: 512,
            rendezvousChunk: min(max(128 * capabilities.mtu, 131072), capabilities.maxMessageSize),
            readsInFlight: max(1, min(2, capabilities.maxOutstandingReads)),
            sendBatch: 16, sendSlots: 64, unexpectedMemoryLimit: 64 << 20, spinBeforeSleep: .milliseconds(1),
            yieldWhileWaiting: Self.localRanks(environment) > Self.usableCores())
        func read(_ name: String, _ range: ClosedRange<Int>) throws(MPIError) -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw MPIError(.invalidArgument, "\(name)=\(text): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        if let value = try read("FABRIC_MPI_EAGER_LIMIT", 0...(1 << 20)) { settings.eagerLimit = value }
        if let value = try read("FABRIC_MPI_EAGER_SLOTS", 1...4096) { settings.eagerSlots = value }
        if let value = try read("FABRIC_MPI_SHARED_SLOTS", 16...min(65536, capabilities.maxQueueDepth)) { settings.sharedSlots = value }
        if let value = try read("FABRIC_MPI_RENDEZVOUS_CHUNK", 4096...min(capabilities.maxMessageSize, WorkRequestID.readLengthLimit)) { settings.rendezvousChunk = value }
        if let value = try read("FABRIC_MPI_READS_IN_FLIGHT", 1...max(1, capabilities.maxOutstandingReads)) { settings.readsInFlight = value }
        if let value = try read("FABRIC_MPI_SEND_BATCH", 1...256) { settings.sendBatch = value }
        if let value = try read("FABRIC_MPI_UNEXPECTED_LIMIT", 0...(1 << 40)) { settings.unexpectedMemoryLimit = value }
        if let value = try read("FABRIC_MPI_SPIN_US", 0...10_000_000) { settings.spinBeforeSleep = .microseconds(value) }
        if let value = try read("FABRIC_MPI_YIELD", 0...1) { settings.yieldWhileWaiting = value == 1 }
        return settings
    }

    /// Ranks on this host, as the launcher says (ours and Hydra:
    /// MPI_LOCALNRANKS; Open MPI: OMPI_COMM_WORLD_LOCAL_SIZE); 1 if it does not.
    static func localRanks(_ environment: [String: String]) -> Int {
        for name in ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"] {
            if let text = environment[name], let value = Int(text), value > 0 { return value }
        }
        return 1
    }

    /// Cores online (what the launcher's ranks on this host share).
    static func usableCores() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The values every rank must share, as rank 0 publishes them.
    var published: String { "\(eagerLimit),\(eagerSlots)" }

    /// Adopts rank 0's published values.
    mutating func adopt(published text: String) throws(MPIError) {
        let fields = text.split(separator: ",").compactMap { Int($0) }
        guard fields.count == 2, fields[0] >= 0, fields[1] > 0 else {
            throw MPIError(.peerFailed, "rank 0 published point-to-point settings '\(text)' that this rank cannot read")
        }
        (eagerLimit, eagerSlots) = (fields[0], fields[1])
    }
}
