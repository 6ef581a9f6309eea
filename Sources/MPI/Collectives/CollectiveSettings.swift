/// Which algorithm each collective uses. Unset, the choice follows the
/// message size and the number of ranks (`choose...`); each can be fixed
/// by an environment variable (listed by mpiinfo), and
/// `MPIRuntime.collectiveAlgorithm` says what a call would use.
struct CollectiveSettings: Sendable, Equatable {
    enum Broadcast: String, CaseIterable, Sendable {
        /// log2 n rounds of the whole message: small messages.
        case binomial
        /// The root scatters n blocks, then a ring allgathers them: each
        /// rank sends about twice the message, whatever n (large ones).
        case scatterAllgather = "scatter-allgather"
    }

    enum Allreduce: String, CaseIterable, Sendable {
        /// log2 n exchanges of the whole vector, any operation.
        case recursiveDoubling = "recursive-doubling"
        /// A ring reduce-scatter, then a ring allgather: each rank sends
        /// about twice the vector (commutative operations, large vectors).
        case ring
        /// A binomial reduce to rank 0, then a binomial broadcast.
        case reduceBroadcast = "reduce-broadcast"
    }

    enum Allgather: String, CaseIterable, Sendable {
        /// n - 1 steps to the next rank.
        case ring
        /// log2 n exchanges of doubling size (n a power of two; otherwise the ring).
        case recursiveDoubling = "recursive-doubling"
    }

    enum AllToAll: String, CaseIterable, Sendable {
        /// Every block posted at once: small blocks.
        case linear
        /// n steps, one peer to send to and one to receive from in each.
        case pairwise
    }

    var broadcast: Broadcast?
    var allreduce: Allreduce?
    var allgather: Allgather?
    var allToAll: AllToAll?
    /// Bytes from which the large-message algorithms are chosen.
    var largeMessage = 65536
    /// Bytes per segment of a broadcast pipelined down its tree (messages
    /// of two segments or more).
    var broadcastSegment = 524_288
    /// Bytes per block from which all-to-all with many ranks goes pairwise.
    var smallAllToAllBlock = 1024

    static let variables: [(name: String, meaning: String, unsetMeans: String)] = [
        ("FABRIC_MPI_BCAST", "the broadcast algorithm: " + Broadcast.allCases.map(\.rawValue).joined(separator: ", "),
         "scatter-allgather from FABRIC_MPI_COLL_LARGE bytes with more than 8 ranks, else binomial"),
        ("FABRIC_MPI_ALLREDUCE", "the allreduce algorithm: " + Allreduce.allCases.map(\.rawValue).joined(separator: ", ") + " (ring only for commutative operations)",
         "recursive-doubling below FABRIC_MPI_COLL_LARGE bytes, ring from it when the operation commutes"),
        ("FABRIC_MPI_ALLGATHER", "the allgather algorithm: " + Allgather.allCases.map(\.rawValue).joined(separator: ", "),
         "recursive-doubling below FABRIC_MPI_COLL_LARGE bytes per rank when the ranks are a power of two, else ring"),
        ("FABRIC_MPI_ALLTOALL", "the all-to-all algorithm: " + AllToAll.allCases.map(\.rawValue).joined(separator: ", "),
         "linear, pairwise from FABRIC_MPI_ALLTOALL_SMALL bytes per block with more than 32 ranks"),
        ("FABRIC_MPI_BCAST_SEGMENT", "bytes per segment of a binomial broadcast pipelined down its tree (messages of two segments or more; at least 1024)", "524288"),
        ("FABRIC_MPI_COLL_LARGE", "bytes from which broadcast, allreduce and allgather use their large-message algorithms", "65536"),
        ("FABRIC_MPI_ALLTOALL_SMALL", "bytes per block from which all-to-all with more than 32 ranks goes pairwise", "1024"),
    ]

    static func fromEnvironment(_ environment: [String: String]) throws(MPIError) -> CollectiveSettings {
        var settings = CollectiveSettings()
        func algorithm<A: RawRepresentable & CaseIterable>(_ name: String, _: A.Type) throws(MPIError) -> A? where A.RawValue == String {
            guard let text = environment[name] else { return nil }
            guard let value = A(rawValue: text) else {
                throw MPIError(.invalidArgument, "\(name)=\(text): expected one of " + A.allCases.map(\.rawValue).joined(separator: ", "))
            }
            return value
        }
        func bytes(_ name: String) throws(MPIError) -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text), value >= 0 else { throw MPIError(.invalidArgument, "\(name)=\(text): expected a number of bytes") }
            return value
        }
        settings.broadcast = try algorithm("FABRIC_MPI_BCAST", Broadcast.self)
        settings.allreduce = try algorithm("FABRIC_MPI_ALLREDUCE", Allreduce.self)
        settings.allgather = try algorithm("FABRIC_MPI_ALLGATHER", Allgather.self)
        settings.allToAll = try algorithm("FABRIC_MPI_ALLTOALL", AllToAll.self)
        if let value = try bytes("FABRIC_MPI_COLL_LARGE") { settings.largeMessage = value }
        if let value = try bytes("FABRIC_MPI_ALLTOALL_SMALL") { settings.smallAllToAllBlock = value }
        if let value = try bytes("FABRIC_MPI_BCAST_SEGMENT") {
            // Smaller segments make a round per few bytes: a 1 MiB broadcast
            // in 64 B segments is 16384 rounds.
            guard value >= 1024 else { throw MPIError(.invalidArgument, "FABRIC_MPI_BCAST_SEGMENT=\(value): a segment is at least 1024 bytes") }
            settings.broadcastSegment = value
        }
        return settings
    }

    // MARK: - Choosing

    /// Scatter-allgather sends less per rank, but its ring needs every
    /// rank running at once: measured on 2 cores with 4 and 8 ranks at
    /// 1 MiB, binomial took 0.72 and 2.1 ms, scatter-allgather 0.99 and
    /// 5.9 ms. It is chosen only where the tree's log2 n rounds of the
    /// whole message cost more than that.
    func chooseBroadcast(bytes: Int, ranks: Int) -> Broadcast {
        if let broadcast { return broadcast }
        return bytes >= largeMessage && ranks > 8 ? .scatterAllgather : .binomial
    }

    /// The ring needs a commutative operation and an element per rank;
    /// asked for without them, recursive doubling serves.
    func chooseAllreduce(bytes: Int, count: Int, ranks: Int, commutative: Bool) -> Allreduce {
        let ringFits = commutative && count >= ranks && ranks > 1
        if let allreduce { return allreduce == .ring && !ringFits ? .recursiveDoubling : allreduce }
        return bytes >= largeMessage && ringFits ? .ring : .recursiveDoubling
    }

    func chooseAllgather(bytesPerRank: Int, ranks: Int) -> Allgather {
        let powerOfTwo = ranks & (ranks - 1) == 0
        if let allgather { return allgather == .recursiveDoubling && !powerOfTwo ? .ring : allgather }
        return bytesPerRank < largeMessage && powerOfTwo ? .recursiveDoubling : .ring
    }

    /// Every block at once was faster at 64 KiB and 1 MiB with 4 and 8
    /// ranks (pairwise: 1.2-1.9 times slower); pairwise bounds the
    /// transfers in flight when there are many ranks. The ranks need not
    /// agree: both send each block once, with the same tag.
    func chooseAllToAll(bytesPerBlock: Int, ranks: Int) -> AllToAll {
        allToAll ?? (bytesPerBlock >= smallAllToAllBlock && ranks > 32 ? .pairwise : .linear)
    }
}

/// The algorithm each collective would use (what mpiinfo shows).
public enum CollectiveAlgorithms {
    /// Per collective with a choice: the algorithm for `ranks` ranks and
    /// `bytes` per rank (per block for all-to-all), under `environment`'s
    /// settings, for a commutative operation.
    public static func choices(ranks: Int, bytes: Int, environment: [String: String]) throws(MPIError) -> [(collective: String, algorithm: String)] {
        let settings = try CollectiveSettings.fromEnvironment(environment)
        let floats = bytes / 4
        return [
            ("barrier", "dissemination"),
            ("broadcast", settings.chooseBroadcast(bytes: bytes, ranks: ranks).rawValue),
            ("reduce", "binomial"),
            ("allreduce", settings.chooseAllreduce(bytes: bytes, count: floats, ranks: ranks, commutative: true).rawValue),
            ("allgather", settings.chooseAllgather(bytesPerRank: bytes, ranks: ranks).rawValue),
            ("all-to-all", settings.chooseAllToAll(bytesPerBlock: bytes, ranks: ranks).rawValue),
            ("reduce-scatter", ranks > 1 ? "ring" : "copy"),
            ("scan, exclusive scan", "recursive-doubling"),
            ("gather, scatter", "linear"),
        ]
    }
}
