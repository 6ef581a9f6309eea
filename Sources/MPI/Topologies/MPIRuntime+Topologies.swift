/// Communicators with a topology: a Cartesian grid, a graph, a
/// distributed graph (MPI 3.1 chapter 7). Each is made by every rank of
/// the parent, as a split is, with arguments every rank must give alike
/// (checked: ranks exchange a hash of them). Ranks are never reordered:
/// `reorder` is accepted and the ranks keep their order, as MPI allows.
extension MPIRuntime {
    /// A communicator of the parent's first `dimensions`-product ranks
    /// laid on a grid (MPI_Cart_create); the ranks past the grid get nil.
    public func makeCartesian(
        _ communicator: Communicator? = nil, dimensions: [Int], periodic: [Bool], reorder: Bool = false
    ) throws(MPIError) -> Communicator? {
        let parent = communicator ?? world
        do throws(MPIError) {
            let grid = try CartesianTopology(dimensions: dimensions, periodic: periodic)
            try checkFits(grid.size, "a Cartesian topology of \(dimensions)", parent)
            var signature = StableHash()
            signature.combine(dimensions + periodic.map { $0 ? 1 : 0 })
            let inside = parent.rank < grid.size
            let made = try split(parent, color: inside ? 0 : nil, key: parent.rank, agreeingOn: signature.value, "a Cartesian topology")
            if let made { topologies.set(.cartesian(grid), for: made) }
            return made
        } catch {
            return try raise(error)
        }
    }

    /// The sub-grids of a Cartesian communicator along the dimensions
    /// `kept`: the ranks that share their coordinates in the others make
    /// one communicator with the kept dimensions' grid (MPI_Cart_sub).
    public func cartesianSubgrid(_ communicator: Communicator, keeping kept: [Bool]) throws(MPIError) -> Communicator {
        do throws(MPIError) {
            guard case .cartesian(let grid) = topologies.topology(of: communicator) else {
                throw MPIError(.invalidTopology, "a Cartesian sub-grid of \(communicator), which has no Cartesian topology")
            }
            let sub = try grid.subgrid(keeping: kept, rank: communicator.rank)
            var signature = StableHash()
            signature.combine(kept.map { $0 ? 1 : 0 })
            let made = try split(communicator, color: sub.color, key: sub.rank, agreeingOn: signature.value, "a Cartesian sub-grid")!
            topologies.set(.cartesian(sub.grid), for: made)
            return made
        } catch {
            return try raise(error)
        }
    }

    /// A communicator of the parent's first `graph.size` ranks joined as
    /// `graph` says (MPI_Graph_create); the ranks past it get nil.
    public func makeGraph(_ communicator: Communicator? = nil, graph: GraphTopology, reorder: Bool = false) throws(MPIError) -> Communicator? {
        let parent = communicator ?? world
        do throws(MPIError) {
            try checkFits(graph.size, "a graph of \(graph.size) nodes", parent)
            let (index, edges) = graph.indexAndEdges
            var signature = StableHash()
            signature.combine(index + [-1] + edges)
            let inside = parent.rank < graph.size
            let made = try split(parent, color: inside ? 0 : nil, key: parent.rank, agreeingOn: signature.value, "a graph topology")
            if let made { topologies.set(.graph(graph), for: made) }
            return made
        } catch {
            return try raise(error)
        }
    }

    /// A distributed graph in which each rank gives its own sources and
    /// destinations (MPI_Dist_graph_create_adjacent), with a weight for
    /// each or none. Ranks exchange how many edges each claims to every
    /// other, and an edge one end lists and the other does not is refused
    /// on every rank.
    public func makeDistributedGraph(
        _ communicator: Communicator? = nil, sources: [Int], sourceWeights: [Int]? = nil,
        destinations: [Int], destinationWeights: [Int]? = nil, reorder: Bool = false
    ) throws(MPIError) -> Communicator {
        let parent = communicator ?? world
        do throws(MPIError) {
            for (what, ranks, weights) in [("source", sources, sourceWeights), ("destination", destinations, destinationWeights)] {
                if let outside = ranks.first(where: { !(0..<parent.size).contains($0) }) {
                    throw MPIError(.invalidRank, "a distributed graph with \(what) \(outside) on \(parent) of \(parent.size) ranks")
                }
                if let weights, weights.count != ranks.count {
                    throw MPIError(.invalidArgument, "a distributed graph with \(ranks.count) \(what)s but \(weights.count) weights")
                }
            }
            guard (sourceWeights == nil) == (destinationWeights == nil) else {
                throw MPIError(.invalidArgument, "a distributed graph weighted on one side only (give weights for both sources and destinations, or neither)")
            }
            try checkEdgesAgree(sources: sources, destinations: destinations, on: parent)
            let neighbours = DistributedGraphNeighbours(sources: sources, sourceWeights: sourceWeights, destinations: destinations, destinationWeights: destinationWeights)
            let made = try split(parent, color: 0, key: parent.rank, agreeingOn: sourceWeights == nil ? 0 : 1, "a distributed graph (weighted on some ranks only)")!
            topologies.set(.distributedGraph(neighbours), for: made)
            return made
        } catch {
            return try raise(error)
        }
    }

    /// A distributed graph whose edges any rank may give
    /// (MPI_Dist_graph_create): every rank learns its own sources and
    /// destinations, ordered by the rank that gave each edge and then as
    /// given. `weighted` false ignores the edges' weights (MPI_UNWEIGHTED).
    public func makeDistributedGraph(
        _ communicator: Communicator? = nil, edges: [GraphEdge], weighted: Bool, reorder: Bool = false
    ) throws(MPIError) -> Communicator {
        let parent = communicator ?? world
        do throws(MPIError) {
            if let outside = edges.first(where: { !(0..<parent.size).contains($0.source) || !(0..<parent.size).contains($0.destination) }) {
                throw MPIError(.invalidRank, "a distributed graph with an edge from \(outside.source) to \(outside.destination) on \(parent) of \(parent.size) ranks")
            }
            // Every rank's edges to every rank: their counts, then the
            // edges as (source, destination, weight) triples.
            let counts = try allgather([edges.count], on: parent).map { $0[0] * 3 }
            var flat = [Int](repeating: 0, count: counts.reduce(0, +))
            let mine = edges.flatMap { [$0.source, $0.destination, $0.weight] }
            try withBytes(of: mine) { (outgoing) throws(MPIError) in
                try withMutableBytes(of: &flat) { (incoming) throws(MPIError) in
                    try allgather(outgoing.baseAddress, count: mine.count, datatype: Int.datatype, into: incoming.baseAddress,
                                  receiveCounts: counts, displacements: equalBlocks(counts), receiveDatatype: Int.datatype, on: parent)
                }
            }
            let all = stride(from: 0, to: flat.count, by: 3).map { GraphEdge(from: flat[$0], to: flat[$0 + 1], weight: flat[$0 + 2]) }
            let incoming = all.filter { $0.destination == parent.rank }
            let outgoing = all.filter { $0.source == parent.rank }
            let neighbours = DistributedGraphNeighbours(
                sources: incoming.map(\.source), sourceWeights: weighted ? incoming.map(\.weight) : nil,
                destinations: outgoing.map(\.destination), destinationWeights: weighted ? outgoing.map(\.weight) : nil)
            let made = try split(parent, color: 0, key: parent.rank, agreeingOn: weighted ? 1 : 0, "a distributed graph (weighted on some ranks only)")!
            topologies.set(.distributedGraph(neighbours), for: made)
            return made
        } catch {
            return try raise(error)
        }
    }

    /// The communicator's topology, or nil (MPI_Topo_test's MPI_UNDEFINED).
    public func topology(of communicator: Communicator) -> Topology? {
        topologies.topology(of: communicator)
    }

    /// This rank's neighbours on a communicator with a topology, in the
    /// order the neighbourhood collectives use (MPI_Cart_shift for each
    /// dimension, MPI_Graph_neighbors, MPI_Dist_graph_neighbors); nil is a
    /// position past the edge of a grid (MPI_PROC_NULL).
    public func neighbours(on communicator: Communicator) throws(MPIError) -> (sources: [Int?], destinations: [Int?]) {
        do throws(MPIError) {
            let topology = try requireTopology(of: communicator, for: "neighbours")
            return (topology.sources(of: communicator.rank), topology.destinations(of: communicator.rank))
        } catch {
            return try raise(error)
        }
    }

    func requireTopology(of communicator: Communicator, for what: String) throws(MPIError) -> Topology {
        guard let topology = topologies.topology(of: communicator) else {
            throw MPIError(.invalidTopology, "\(what) on \(communicator), which has no topology")
        }
        return topology
    }

    private func checkFits(_ positions: Int, _ what: String, _ parent: Communicator) throws(MPIError) {
        guard positions <= parent.size else {
            throw MPIError(.invalidTopology, "\(what) needs \(positions) ranks; \(parent) has \(parent.size)")
        }
    }

    /// Each rank tells every other how many edges it lists to it (an
    /// all-to-all of counts); each compares with the sources it lists.
    /// Then every rank learns the lowest rank that found a difference, so
    /// that all refuse the graph together.
    private func checkEdgesAgree(sources: [Int], destinations: [Int], on parent: Communicator) throws(MPIError) {
        var claimed = [Int](repeating: 0, count: parent.size)
        for destination in destinations { claimed[destination] += 1 }
        var heard = [Int](repeating: 0, count: parent.size)
        try withBytes(of: claimed) { (outgoing) throws(MPIError) in
            try withMutableBytes(of: &heard) { (incoming) throws(MPIError) in
                try allToAll(outgoing.baseAddress, count: 1, datatype: Int.datatype, into: incoming.baseAddress, receiveCount: 1, receiveDatatype: Int.datatype, on: parent)
            }
        }
        var listed = [Int](repeating: 0, count: parent.size)
        for source in sources { listed[source] += 1 }
        let differing = (0..<parent.size).first { heard[$0] != listed[$0] }
        let finders = try allgather([differing ?? -1], on: parent).map { $0[0] }
        if let differing {
            throw MPIError(.invalidTopology, "a distributed graph in which rank \(differing) lists \(heard[differing]) edges to rank \(parent.rank), which lists \(listed[differing]) from it")
        }
        if let finder = finders.firstIndex(where: { $0 >= 0 }) {
            throw MPIError(.invalidTopology, "a distributed graph in which rank \(finder) found its sources differ from what rank \(finders[finder]) lists to it")
        }
    }
}
