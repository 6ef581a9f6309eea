/// Ranks joined by edges, every rank knowing the whole graph
/// (MPI_Graph_create): node i's neighbours are `adjacency[i]`, in order; an
/// edge may repeat, and a node may be its own neighbour. The neighbourhood
/// collectives need the graph to be symmetric (each pair joined as many
/// times in both directions), as MPI requires; creation checks it.
public struct GraphTopology: Hashable, Sendable {
    public let adjacency: [[Int]]

    public init(adjacency: [[Int]]) throws(MPIError) {
        var counts: [Edge: Int] = [:]
        for (node, neighbours) in adjacency.enumerated() {
            for neighbour in neighbours {
                guard adjacency.indices.contains(neighbour) else {
                    throw MPIError(.invalidTopology, "a graph whose node \(node) has neighbour \(neighbour), outside its \(adjacency.count) nodes")
                }
                counts[Edge(from: node, to: neighbour), default: 0] += 1
            }
        }
        for (edge, count) in counts where edge.from != edge.to && counts[Edge(from: edge.to, to: edge.from)] != count {
            throw MPIError(.invalidTopology, "a graph that joins node \(edge.from) to \(edge.to) \(count) times but \(edge.to) to \(edge.from) \(counts[Edge(from: edge.to, to: edge.from)] ?? 0) times (it must be symmetric)")
        }
        self.adjacency = adjacency
    }

    private struct Edge: Hashable {
        let from: Int
        let to: Int
    }

    public var size: Int { adjacency.count }

    /// MPI_Graph_get's form: `index[i]` is the number of edges of nodes 0
    /// through i, and `edges` lists every node's neighbours in node order.
    public var indexAndEdges: (index: [Int], edges: [Int]) {
        var index: [Int] = []
        var total = 0
        for neighbours in adjacency {
            total += neighbours.count
            index.append(total)
        }
        return (index, adjacency.flatMap { $0 })
    }

    /// The graph MPI_Graph_create's `index` and `edges` describe.
    public init(index: [Int], edges: [Int]) throws(MPIError) {
        var adjacency: [[Int]] = []
        var start = 0
        for (node, end) in index.enumerated() {
            guard end >= start, end <= edges.count else {
                throw MPIError(.invalidTopology, "a graph whose index \(end) for node \(node) does not follow \(start) within \(edges.count) edges")
            }
            adjacency.append(Array(edges[start..<end]))
            start = end
        }
        guard start == edges.count else { throw MPIError(.invalidTopology, "a graph whose index ends at \(start) of its \(edges.count) edges") }
        try self.init(adjacency: adjacency)
    }
}

/// One rank's part of a directed graph (MPI_Dist_graph_create and
/// MPI_Dist_graph_create_adjacent): the ranks it hears from and the ranks
/// it sends to, each with a weight if the graph is weighted. A rank knows
/// only its own edges.
public struct DistributedGraphNeighbours: Hashable, Sendable {
    public let sources: [Int]
    public let destinations: [Int]
    /// One per source and one per destination, or nil (MPI_UNWEIGHTED).
    public let sourceWeights: [Int]?
    public let destinationWeights: [Int]?

    init(sources: [Int], sourceWeights: [Int]?, destinations: [Int], destinationWeights: [Int]?) {
        self.sources = sources
        self.destinations = destinations
        self.sourceWeights = sourceWeights
        self.destinationWeights = destinationWeights
    }

    public var isWeighted: Bool { sourceWeights != nil }
}

/// An edge of a distributed graph, as a rank gives it to
/// MPI_Dist_graph_create (any rank may give any edge).
public struct GraphEdge: Hashable, Sendable {
    public var source: Int
    public var destination: Int
    public var weight: Int

    public init(from source: Int, to destination: Int, weight: Int = 1) {
        self.source = source
        self.destination = destination
        self.weight = weight
    }
}
