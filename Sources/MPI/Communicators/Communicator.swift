/// A group of ranks with a context of its own (MPI_Comm): messages of one
/// communicator never match receives of another. So far the two every job
/// has, `world` and `self`; creating others (dup, split) is the
/// collectives issue's.
public struct Communicator: Hashable, Sendable, CustomStringConvertible {
    /// Told apart on the wire by this number (world 0, self 1).
    public let context: UInt32
    /// This process's rank in the communicator.
    public let rank: Int
    /// The world ranks of the communicator's ranks, in rank order.
    public let worldRanks: [Int]

    public var size: Int { worldRanks.count }

    /// The world rank of the communicator's rank `rank`.
    public func worldRank(of rank: Int) throws(MPIError) -> Int {
        guard worldRanks.indices.contains(rank) else {
            throw MPIError(.invalidRank, "rank \(rank) is not in \(self) of \(size) ranks")
        }
        return worldRanks[rank]
    }

    static func world(rank: Int, size: Int) -> Communicator {
        Communicator(context: 0, rank: rank, worldRanks: Array(0..<size))
    }

    static func only(_ worldRank: Int) -> Communicator {
        Communicator(context: 1, rank: 0, worldRanks: [worldRank])
    }

    public var description: String {
        switch context {
        case 0: return "the world communicator"
        case 1: return "the self communicator"
        default: return "communicator \(context)"
        }
    }
}
