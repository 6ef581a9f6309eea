import MPI
import RankCheck

/// Topologies and the neighbourhood collectives: a 2-D grid (one
/// dimension wrapping), a ring (1 and 2 ranks make a rank its own
/// neighbour, or the same neighbour twice), a grid's rows, a graph with
/// self-loops, distributed graphs made both ways; every block checked
/// against the one its sender put in it; then bad input.
struct NeighbourhoodChecks {
    let mpi: MPIRuntime
    var rank: Int { mpi.rank }
    var size: Int { mpi.size }

    func run() throws(MPIError) {
        let dimensions = try CartesianTopology.balancedDimensions(ranks: size, constraints: [0, 0])
        check(dimensions.reduce(1, *) == size && dimensions == dimensions.sorted(by: >), "balanced dimensions for \(size): \(dimensions)")
        check(try CartesianTopology.balancedDimensions(ranks: 12, constraints: [0, 0, 0]) == [3, 2, 2], "balanced dimensions for 12 in 3-D")
        check(try CartesianTopology.balancedDimensions(ranks: 12, constraints: [0, 3]) == [4, 3], "balanced dimensions for 12 with 3 fixed")

        let grid = try mpi.makeCartesian(dimensions: dimensions, periodic: [true, false])!
        try checkGrid(grid, dimensions: dimensions, periodic: [true, false])
        let ring = try mpi.makeCartesian(dimensions: [size], periodic: [true])!
        try checkGrid(ring, dimensions: [size], periodic: [true])
        try checkRows(of: grid, dimensions: dimensions)

        let graph = try GraphTopology(adjacency: (0..<size).map { [($0 + 1) % size, ($0 + size - 1) % size, $0] })
        let graphed = try mpi.makeGraph(graph: graph)!
        try exchangeBlocks(on: graphed, cartesian: false) { graph.adjacency[$0] }

        let forward = { (rank: Int) in [(rank + 1) % self.size, (rank + 2) % self.size] }
        let adjacent = try mpi.makeDistributedGraph(sources: [(rank + size - 1) % size, (rank + size - 2) % size], sourceWeights: [1, 2],
                                                    destinations: forward(rank), destinationWeights: [1, 2])
        try exchangeBlocks(on: adjacent, cartesian: false, destinations: forward)

        // Rank 0 gives every edge: i to i + 1, weight 10 i.
        let edges = rank == 0 ? (0..<size).map { GraphEdge(from: $0, to: ($0 + 1) % size, weight: 10 * $0) } : []
        let general = try mpi.makeDistributedGraph(edges: edges, weighted: true)
        guard case .distributedGraph(let mine) = mpi.topology(of: general) else { fail("the general distributed graph has no topology") }
        let previous = (rank + size - 1) % size
        check(mine.sources == [previous] && mine.destinations == [(rank + 1) % size] && mine.sourceWeights == [10 * previous]
              && mine.destinationWeights == [10 * rank], "the general distributed graph: \(mine)")
        try exchangeBlocks(on: general, cartesian: false) { [($0 + 1) % self.size] }

        try checkBadInput()
        for communicator in [grid, ring, graphed, adjacent, general] { try mpi.free(communicator) }
    }

    /// Coordinates, ranks and shifts against arithmetic done here; then
    /// the neighbourhood collectives.
    func checkGrid(_ communicator: Communicator, dimensions: [Int], periodic: [Bool]) throws(MPIError) {
        guard case .cartesian(let grid) = mpi.topology(of: communicator) else { fail("the grid \(dimensions) has no Cartesian topology") }
        check(grid.dimensions == dimensions && grid.periodic == periodic, "the grid's topology: \(grid)")
        for other in 0..<size { check(try grid.rank(at: try grid.coordinates(of: other)) == other, "grid \(dimensions): rank \(other) and back") }
        let position = try grid.coordinates(of: rank)
        var expected: [Int?] = []
        for dimension in dimensions.indices {
            let extent = dimensions[dimension]
            func at(_ offset: Int) -> Int? {
                var moved = position
                moved[dimension] += offset
                guard periodic[dimension] || (0..<extent).contains(moved[dimension]) else { return nil }
                moved[dimension] = (moved[dimension] % extent + extent) % extent
                return moved.indices.reduce(0) { $0 * dimensions[$1] + moved[$1] }
            }
            let shift = try grid.shift(rank, dimension: dimension, by: 1)
            check(shift.source == at(-1) && shift.destination == at(1), "grid \(dimensions): shift along \(dimension) gave \(shift)")
            expected += [at(-1), at(1)]
        }
        let neighbours = try mpi.neighbours(on: communicator)
        check(neighbours.sources == expected && neighbours.destinations == expected, "grid \(dimensions): neighbours \(neighbours), not \(expected)")
        try exchangeBlocks(on: communicator, cartesian: true) { _ in [] }
    }

    /// The rows of the grid (the last dimension kept): as many ranks as
    /// a row has, ranked by column, with a 1-D grid.
    func checkRows(of grid: Communicator, dimensions: [Int]) throws(MPIError) {
        let row = try mpi.cartesianSubgrid(grid, keeping: [false, true])
        let columns = dimensions[1]
        check(row.size == columns && row.rank == rank % columns && row.worldRanks == Array((rank - rank % columns)..<(rank - rank % columns + columns)),
              "the row of rank \(rank): \(row.worldRanks), rank \(row.rank)")
        check(mpi.topology(of: row) == .cartesian(try CartesianTopology(dimensions: [columns], periodic: [false])), "the row's topology")
        try mpi.free(row)
    }

    /// Every neighbourhood collective, blocking and nonblocking, with
    /// blocks of none, one and 10000 elements (the last above the eager
    /// limit). Sender s's block j holds value(s, 97 j + i); the block in
    /// slot k came from the sender's block that MPI says: on a grid the
    /// one sent the other way along the dimension (k xor 1); on a graph
    /// the m-th edge to this rank for the m-th time the sender is listed.
    func exchangeBlocks(on communicator: Communicator, cartesian: Bool, destinations: @escaping (Int) -> [Int?]) throws(MPIError) {
        let (sources, outgoing) = try mpi.neighbours(on: communicator)
        func senderBlock(_ slot: Int) -> Int {
            if cartesian { return slot ^ 1 }
            let source = sources[slot]!
            let occurrence = sources[..<slot].filter { $0 == source }.count
            return destinations(source).indices.filter { destinations(source)[$0] == communicator.rank }[occurrence]
        }
        func contents(_ sender: Int, _ block: Int, _ count: Int) -> [Int64] { (0..<count).map { value(sender, 97 * block + $0, 30) } }
        for mode in Mode.allCases {
            for base in [0, 1, 10000] {
                // All-to-all: equal blocks.
                let sent = Buffer(outgoing.indices.flatMap { contents(communicator.rank, $0, base) })
                let received = Buffer<Int64>(repeating: -1, count: base * sources.count)
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.neighbourAllToAll(sent.input, count: base, datatype: .int64, into: received.raw, receiveCount: base, receiveDatatype: .int64, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startNeighbourAllToAll(sent.input, count: base, datatype: .int64, into: received.raw, receiveCount: base, receiveDatatype: .int64, on: communicator)
                })
                let expected = sources.indices.flatMap { slot in
                    sources[slot].map { contents($0, senderBlock(slot), base) } ?? Array(repeating: -1, count: base)
                }
                check(received.array == expected, "\(mode) neighbour all-to-all of \(base) on \(communicator)")

                // All-to-allv: block j of `count + j` elements, one-element gaps.
                let sendCounts = outgoing.indices.map { base == 0 ? 0 : base + $0 }
                let receiveCounts = sources.indices.map { base == 0 ? 0 : base + senderBlock($0) }
                let sendDisplacements = gapped(sendCounts), receiveDisplacements = gapped(receiveCounts)
                let sentV = Buffer<Int64>(repeating: -2, count: sendCounts.reduce(0, +) + sendCounts.count)
                for (block, displacement) in sendDisplacements.enumerated() {
                    for (index, element) in contents(communicator.rank, block, sendCounts[block]).enumerated() { sentV.pointer[displacement + index] = element }
                }
                let receivedV = Buffer<Int64>(repeating: -1, count: receiveCounts.reduce(0, +) + receiveCounts.count)
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.neighbourAllToAll(sentV.input, sendCounts: sendCounts, sendDisplacements: sendDisplacements, datatype: .int64, into: receivedV.raw,
                                              receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements, receiveDatatype: .int64, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startNeighbourAllToAll(sentV.input, sendCounts: sendCounts, sendDisplacements: sendDisplacements, datatype: .int64, into: receivedV.raw,
                                                   receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements, receiveDatatype: .int64, on: communicator)
                })
                var expectedV = Array(repeating: Int64(-1), count: receivedV.count)
                for slot in sources.indices {
                    guard let source = sources[slot] else { continue }
                    for (index, element) in contents(source, senderBlock(slot), receiveCounts[slot]).enumerated() { expectedV[receiveDisplacements[slot] + index] = element }
                }
                check(receivedV.array == expectedV, "\(mode) neighbour all-to-allv of \(base) on \(communicator)")

                // All-to-allw: the same blocks at byte displacements, each typed.
                let receivedW = Buffer<Int64>(repeating: -1, count: receivedV.count)
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.neighbourAllToAll(sentV.input, sendCounts: sendCounts, sendByteDisplacements: sendDisplacements.map { $0 * 8 },
                                              sendDatatypes: sendCounts.map { _ in .int64 }, into: receivedW.raw, receiveCounts: receiveCounts,
                                              receiveByteDisplacements: receiveDisplacements.map { $0 * 8 }, receiveDatatypes: receiveCounts.map { _ in .int64 },
                                              on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startNeighbourAllToAll(sentV.input, sendCounts: sendCounts, sendByteDisplacements: sendDisplacements.map { $0 * 8 },
                                                   sendDatatypes: sendCounts.map { _ in .int64 }, into: receivedW.raw, receiveCounts: receiveCounts,
                                                   receiveByteDisplacements: receiveDisplacements.map { $0 * 8 }, receiveDatatypes: receiveCounts.map { _ in .int64 },
                                                   on: communicator)
                })
                check(receivedW.array == expectedV, "\(mode) neighbour all-to-allw of \(base) on \(communicator)")

                // Allgather(v): this rank's one block to every destination.
                let mineBlock = Buffer(contents(communicator.rank, 0, base))
                let gathered = Buffer<Int64>(repeating: -1, count: base * sources.count)
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.neighbourAllgather(mineBlock.input, count: base, datatype: .int64, into: gathered.raw, receiveCount: base, receiveDatatype: .int64, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startNeighbourAllgather(mineBlock.input, count: base, datatype: .int64, into: gathered.raw, receiveCount: base, receiveDatatype: .int64, on: communicator)
                })
                let expectedGathered = sources.flatMap { source in source.map { contents($0, 0, base) } ?? Array(repeating: -1, count: base) }
                check(gathered.array == expectedGathered, "\(mode) neighbour allgather of \(base) on \(communicator)")
                let equalCounts = Array(repeating: base, count: sources.count)
                let gatheredV = Buffer<Int64>(repeating: -1, count: (base + 1) * sources.count)
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.neighbourAllgather(mineBlock.input, count: base, datatype: .int64, into: gatheredV.raw, receiveCounts: equalCounts,
                                               displacements: gapped(equalCounts), receiveDatatype: .int64, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startNeighbourAllgather(mineBlock.input, count: base, datatype: .int64, into: gatheredV.raw, receiveCounts: equalCounts,
                                                    displacements: gapped(equalCounts), receiveDatatype: .int64, on: communicator)
                })
                let expectedGatheredV: [Int64] = sources.flatMap { source in (source.map { contents($0, 0, base) } ?? Array(repeating: -1, count: base)) + [-1] }
                check(gatheredV.array == expectedGatheredV, "\(mode) neighbour allgatherv of \(base) on \(communicator)")
            }
        }
    }

    func checkBadInput() throws(MPIError) {
        let one = Buffer<Int64>([1])
        expectError("a neighbour allgather on the world", .invalidTopology, containing: "has no topology") { () throws(MPIError) in
            try mpi.neighbourAllgather(one.input, count: 1, datatype: .int64, into: one.raw, receiveCount: 1, receiveDatatype: .int64, on: mpi.world)
        }
        expectError("a grid larger than the world", .invalidTopology, containing: "needs \(size + 1) ranks") { () throws(MPIError) in
            _ = try mpi.makeCartesian(dimensions: [size + 1], periodic: [false])
        }
        expectError("a sub-grid of the world", .invalidTopology, containing: "no Cartesian topology") { () throws(MPIError) in
            _ = try mpi.cartesianSubgrid(mpi.world, keeping: [true])
        }
        expectError("a graph that is not symmetric", .invalidTopology, containing: "must be symmetric") { () throws(MPIError) in
            _ = try GraphTopology(adjacency: [[1], []])
        }
        expectError("a dimension of extent 0", .invalidTopology, containing: "extent 0") { () throws(MPIError) in
            _ = try CartesianTopology(dimensions: [2, 0], periodic: [false, false])
        }
        // Rank 0 lists an edge to rank 1 that rank 1 does not list: every
        // rank refuses the graph.
        guard size >= 2 else { return }
        expectError("a distributed graph whose ends disagree", .invalidTopology, containing: "a distributed graph in which rank") { () throws(MPIError) in
            _ = try mpi.makeDistributedGraph(sources: [], destinations: rank == 0 ? [1] : [])
        }
    }
}
