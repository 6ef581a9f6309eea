/// Making communicators from others (MPI_Comm_dup, MPI_Comm_split,
/// MPI_Comm_create), comparing and freeing them. Every rank of the parent
/// calls each of these, in the same order, as MPI requires.
///
/// Contexts are agreed without a global lock: each rank proposes the next
/// context it has never used, the ranks of the parent exchange their
/// proposals (an allgather on the parent's internal context), and the
/// largest is taken; every rank then proposes past it. Two communicators
/// that share a rank therefore never share a context, and no context is
/// ever used twice by one rank.
extension MPIRuntime {
    /// A new communicator of the same ranks in the same order (MPI_Comm_dup).
    public func duplicate(_ communicator: Communicator) throws(MPIError) -> Communicator {
        do {
            let gathered = try agree(on: communicator, [0, 0])
            let duplicate = try make(context: gathered.context, worldRanks: communicator.worldRanks)!
            attributes.copy(from: communicator, to: duplicate)
            topologies.copy(from: communicator, to: duplicate)
            return duplicate
        } catch {
            return try raise(error)
        }
    }

    /// The ranks of `communicator` that give the same `color`, in a new
    /// communicator each, ordered by `key` and then by their rank here
    /// (MPI_Comm_split); a rank that gives no color gets nil
    /// (MPI_UNDEFINED and MPI_COMM_NULL).
    public func split(_ communicator: Communicator, color: Int?, key: Int) throws(MPIError) -> Communicator? {
        do throws(MPIError) {
            guard color.map({ $0 >= 0 }) ?? true else {
                throw MPIError(.invalidArgument, "a split with color \(color!): colors are 0 or more, or none")
            }
            return try split(communicator, color: color, key: key, agreeingOn: 0, "a split")
        } catch {
            return try raise(error)
        }
    }

    /// A split in which every rank also gives `signature` (a hash of
    /// arguments MPI requires to be the same on all ranks, such as a
    /// topology's): the first rank that gave another is named.
    func split(_ communicator: Communicator, color: Int?, key: Int, agreeingOn signature: Int, _ name: String) throws(MPIError) -> Communicator? {
        let gathered = try agree(on: communicator, [color ?? -1, key, signature])
        if let rank = gathered.values.indices.first(where: { gathered.values[$0][2] != signature }) {
            throw MPIError(.invalidArgument, "\(name) on \(communicator) where rank \(rank) gave other arguments than rank \(communicator.rank)")
        }
        guard let color else { return nil }
        let members = communicator.worldRanks.indices
            .filter { gathered.values[$0][0] == color }
            .sorted { (gathered.values[$0][1], $0) < (gathered.values[$1][1], $1) }
        return try make(context: gathered.context, worldRanks: members.map { communicator.worldRanks[$0] })
    }

    /// A communicator of the members of `group`, which must be ranks of
    /// `communicator` (MPI_Comm_create); every rank of `communicator`
    /// calls it with the same group, and those outside it get nil.
    public func create(from communicator: Communicator, group: Group) throws(MPIError) -> Communicator? {
        do throws(MPIError) {
            let members = Set(communicator.worldRanks)
            for worldRank in group.worldRanks where !members.contains(worldRank) {
                throw MPIError(.invalidRank, "a communicator of \(group), whose world rank \(worldRank) is not in \(communicator)")
            }
            let gathered = try agree(on: communicator, [group.size, group.worldRanks.reduce(0) { $0 &* 31 &+ $1 }])
            for (rank, values) in gathered.values.enumerated() where values != gathered.values[communicator.rank] {
                throw MPIError(.invalidArgument, "a communicator create with different groups: rank \(rank) of \(communicator) gave another")
            }
            return try make(context: gathered.context, worldRanks: group.worldRanks)
        } catch {
            return try raise(error)
        }
    }

    /// Ends `communicator` (MPI_Comm_free): operations on it are refused
    /// from now on; messages already sent on it still arrive. Its
    /// attributes' delete callbacks run.
    public func free(_ communicator: Communicator) throws(MPIError) {
        do throws(MPIError) {
            guard communicator.context >= Communicator.firstMadeContext else {
                throw MPIError(.invalidArgument, "\(communicator) cannot be freed")
            }
            try transport.retire(communicator)
            attributes.forget(communicator)
            topologies.forget(communicator)
        } catch {
            try raise(error) as Void
        }
    }

    /// How two communicators compare (MPI_Comm_compare).
    public enum CommunicatorComparison: Sendable {
        /// The same communicator (MPI_IDENT).
        case identical
        /// The same ranks in the same order, another context (MPI_CONGRUENT).
        case congruent
        /// The same ranks in another order (MPI_SIMILAR).
        case similar
        /// Different ranks (MPI_UNEQUAL).
        case unequal
    }

    public func compare(_ first: Communicator, _ second: Communicator) -> CommunicatorComparison {
        if first.context == second.context && first.worldRanks == second.worldRanks { return .identical }
        switch first.group.compare(second.group) {
        case .identical: return .congruent
        case .similar: return .similar
        case .unequal: return .unequal
        }
    }

    // MARK: - Agreement

    /// Every rank's `values` and the agreed context of the new communicator.
    private func agree(on communicator: Communicator, _ values: [Int]) throws(MPIError) -> (context: UInt32, values: [[Int]]) {
        try checkOpen()
        let gathered = try allgather([Int(contexts.proposal())] + values, on: communicator)
        let context = UInt32(gathered.map { $0[0] }.max()!)
        contexts.taken(context)
        return (context, gathered.map { Array($0.dropFirst()) })
    }

    /// The new communicator of this rank, if it is among `worldRanks`,
    /// known to the transport under both its contexts.
    private func make(context: UInt32, worldRanks: [Int]) throws(MPIError) -> Communicator? {
        guard let rank = worldRanks.firstIndex(of: self.rank) else { return nil }
        let made = Communicator(context: context, internalContext: context + 1, rank: rank, worldRanks: worldRanks)
        transport.register(made)
        transport.register(made.internalCommunicator)
        return made
    }

    /// Every rank's `values` (all of one length), by rank: an allgather
    /// on the communicator's internal context.
    func allgather(_ values: [Int], on communicator: Communicator) throws(MPIError) -> [[Int]] {
        var gathered = [Int](repeating: 0, count: values.count * communicator.size)
        try withBytes(of: values) { (outgoing) throws(MPIError) in
            try withMutableBytes(of: &gathered) { (incoming) throws(MPIError) in
                try allgather(outgoing.baseAddress, count: values.count, datatype: Int.datatype,
                              into: incoming.baseAddress, receiveCount: values.count, receiveDatatype: Int.datatype, on: communicator)
            }
        }
        return (0..<communicator.size).map { Array(gathered[$0 * values.count..<($0 + 1) * values.count]) }
    }
}

/// The next context this rank would propose for a new communicator: past
/// every context it has taken part in.
final class ContextCounter: @unchecked Sendable {  // `next` only under `lock`
    private let lock = ProgressLock()
    private var next = Communicator.firstMadeContext

    func proposal() -> UInt32 {
        lock.lock()
        defer { lock.unlock() }
        return next
    }

    /// A communicator took `context` (and the internal one after it).
    func taken(_ context: UInt32) {
        lock.lock()
        defer { lock.unlock() }
        next = max(next, context + 2)
    }
}
