/// A group of ranks with a context of its own (MPI_Comm): messages of one
/// communicator never match receives of another. Every job has `world`
/// and `self`; `MPIRuntime.duplicate`, `split` and `create` make others.
public struct Communicator: Hashable, Sendable, CustomStringConvertible {
    /// Told apart on the wire by this number (world 0, self 1).
    public let context: UInt32
    /// The context of the layer's own messages among these ranks (the
    /// agreement on a new communicator's context, later the collectives),
    /// so that they never match an application's receive.
    let internalContext: UInt32
    /// This process's rank in the communicator.
    public let rank: Int
    /// The world ranks of the communicator's ranks, in rank order.
    public let worldRanks: [Int]

    init(context: UInt32, internalContext: UInt32, rank: Int, worldRanks: [Int]) {
        self.context = context
        self.internalContext = internalContext
        self.rank = rank
        self.worldRanks = worldRanks
    }

    /// The first context of communicators made at run time: 0 to 3 are
    /// world, self, the runtime's own and world's internal one. Each
    /// made communicator takes two (its own and its internal one).
    static let firstMadeContext: UInt32 = 4

    /// The communicator of the layer's own messages among these ranks.
    var internalCommunicator: Communicator {
        Communicator(context: internalContext, internalContext: internalContext, rank: rank, worldRanks: worldRanks)
    }

    public var size: Int { worldRanks.count }

    /// The world rank of the communicator's rank `rank`.
    public func worldRank(of rank: Int) throws(MPIError) -> Int {
        guard worldRanks.indices.contains(rank) else {
            throw MPIError(.invalidRank, "rank \(rank) is not in \(self) of \(size) ranks")
        }
        return worldRanks[rank]
    }

    static func world(rank: Int, size: Int) -> Communicator {
        Communicator(context: 0, internalContext: 3, rank: rank, worldRanks: Array(0..<size))
    }

    static func only(_ worldRank: Int) -> Communicator {
        Communicator(context: 1, internalContext: 1, rank: 0, worldRanks: [worldRank])
    }

    public var description: String {
        switch context {
        case 0: return "the world communicator"
        case 1: return "the self communicator"
        case 2, 3: return "the runtime's own communicator"
        default: return "communicator \(context)"
        }
    }
}
