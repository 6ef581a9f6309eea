/// The topology a communicator was made with (MPI_Topo_test tells the
/// kind; the value carries what the getters return). It gives each rank
/// its neighbours for the neighbourhood collectives.
public enum Topology: Hashable, Sendable {
    case cartesian(CartesianTopology)
    case graph(GraphTopology)
    /// This rank's edges of a distributed graph.
    case distributedGraph(DistributedGraphNeighbours)

    /// Where `rank`'s blocks come from, in block order (nil: no process,
    /// past a Cartesian edge that does not wrap).
    func sources(of rank: Int) -> [Int?] {
        switch self {
        case .cartesian(let grid): return grid.neighbours(of: rank)
        case .graph(let graph): return graph.adjacency[rank]
        case .distributedGraph(let neighbours): return neighbours.sources
        }
    }

    /// Where `rank`'s blocks go, in block order.
    func destinations(of rank: Int) -> [Int?] {
        switch self {
        case .cartesian(let grid): return grid.neighbours(of: rank)
        case .graph(let graph): return graph.adjacency[rank]
        case .distributedGraph(let neighbours): return neighbours.destinations
        }
    }

    /// The order in which `rank` posts its receives so that, when one
    /// peer sends it several blocks, each lands where MPI says. Messages
    /// between two ranks match in the order they were sent, and a sender
    /// sends in block order; on a graph both sides list their shared edges
    /// in the same order, so block order serves. On a grid, the block a
    /// rank sends forward along a dimension is the one its peer receives
    /// from behind: when the same peer is both before and after (a
    /// wrapping dimension of extent 1 or 2), the receive of the block
    /// from behind must be posted after the one from ahead.
    func receiveOrder(count: Int) -> [Int] {
        guard case .cartesian = self else { return Array(0..<count) }
        return (0..<count).map { $0 ^ 1 }
    }
}

/// The topologies of this rank's communicators, by context: set when a
/// communicator is made with one, copied to its duplicates, forgotten
/// when it is freed.
final class CommunicatorTopologies: @unchecked Sendable {  // `topologies` only under `lock`
    private let lock = ProgressLock()
    private var topologies: [UInt32: Topology] = [:]

    func set(_ topology: Topology, for communicator: Communicator) {
        lock.lock()
        defer { lock.unlock() }
        topologies[communicator.context] = topology
    }

    func topology(of communicator: Communicator) -> Topology? {
        lock.lock()
        defer { lock.unlock() }
        return topologies[communicator.context]
    }

    func copy(from parent: Communicator, to duplicate: Communicator) {
        lock.lock()
        defer { lock.unlock() }
        topologies[duplicate.context] = topologies[parent.context]
    }

    func forget(_ communicator: Communicator) {
        lock.lock()
        defer { lock.unlock() }
        topologies[communicator.context] = nil
    }
}
