import Testing

@testable import MPI

/// The arithmetic of topologies, without a job: grid coordinates, ranks,
/// shifts, neighbours, sub-grids, balanced dimensions, graph forms, and
/// the receive order that makes a doubled grid neighbour's blocks land
/// where MPI says. (The collectives over them run in CollectiveJobTests.)
struct TopologyTests {
    @Test("coordinates are row-major, and ranks come back from them, wrapping only where periodic")
    func coordinates() throws {
        let grid = try CartesianTopology(dimensions: [3, 4], periodic: [true, false])
        #expect(grid.size == 12)
        #expect(try grid.coordinates(of: 7) == [1, 3])
        #expect(try grid.rank(at: [1, 3]) == 7)
        #expect(try grid.rank(at: [-1, 2]) == 10)
        #expect(throws: MPIError.self) { try grid.rank(at: [0, 4]) }
        #expect(throws: MPIError.self) { try grid.coordinates(of: 12) }
    }

    @Test("shifts give nil past an edge that does not wrap; neighbours list before and after per dimension")
    func shifts() throws {
        let grid = try CartesianTopology(dimensions: [3, 4], periodic: [true, false])
        let alongFirst = try grid.shift(1, dimension: 0, by: 1)
        #expect(alongFirst.source == 9 && alongFirst.destination == 5)
        let alongSecond = try grid.shift(3, dimension: 1, by: 1)
        #expect(alongSecond.source == 2 && alongSecond.destination == nil)
        let far = try grid.shift(0, dimension: 1, by: -2)
        #expect(far.source == 2 && far.destination == nil)
        #expect(grid.neighbours(of: 4) == [0, 8, nil, 5])
        #expect(throws: MPIError.self) { try grid.shift(0, dimension: 2, by: 1) }
    }

    @Test("a sub-grid keeps the chosen dimensions; the others pick which sub-grid")
    func subgrid() throws {
        let grid = try CartesianTopology(dimensions: [2, 3, 2], periodic: [false, true, false])
        let (rows, rank, color) = try grid.subgrid(keeping: [false, true, false], rank: 9)  // coordinates [1, 1, 1]
        #expect(rows.dimensions == [3] && rows.periodic == [true] && rank == 1 && color == 3)
        let (point, pointRank, pointColor) = try grid.subgrid(keeping: [false, false, false], rank: 9)
        #expect(point.size == 1 && pointRank == 0 && pointColor == 9)
    }

    @Test("balanced dimensions: close to each other, non-increasing, fixed extents kept, impossible ones refused")
    func balancedDimensions() throws {
        #expect(try CartesianTopology.balancedDimensions(ranks: 12, constraints: [0, 0]) == [4, 3])
        #expect(try CartesianTopology.balancedDimensions(ranks: 16, constraints: [0, 0, 0, 0]) == [2, 2, 2, 2])
        #expect(try CartesianTopology.balancedDimensions(ranks: 7, constraints: [0, 0]) == [7, 1])
        #expect(try CartesianTopology.balancedDimensions(ranks: 24, constraints: [0, 2, 0]) == [4, 2, 3])
        #expect(try CartesianTopology.balancedDimensions(ranks: 6, constraints: [3, 2]) == [3, 2])
        #expect(throws: MPIError.self) { try CartesianTopology.balancedDimensions(ranks: 10, constraints: [3, 0]) }
        #expect(throws: MPIError.self) { try CartesianTopology.balancedDimensions(ranks: 6, constraints: [-1]) }
    }

    @Test("a graph from MPI's index and edges, and back; an asymmetric one refused")
    func graphs() throws {
        let graph = try GraphTopology(index: [2, 3, 4, 6], edges: [1, 3, 0, 3, 0, 2])
        #expect(graph.adjacency == [[1, 3], [0], [3], [0, 2]])
        #expect(graph.indexAndEdges.index == [2, 3, 4, 6] && graph.indexAndEdges.edges == [1, 3, 0, 3, 0, 2])
        #expect(throws: MPIError.self) { try GraphTopology(index: [1, 1], edges: [1]) }
        #expect(throws: MPIError.self) { try GraphTopology(index: [2, 1], edges: [1, 0]) }
        #expect(throws: MPIError.self) { try GraphTopology(adjacency: [[5]]) }
    }

    @Test("on a grid the receives of a dimension are posted after-side first; on graphs in block order")
    func receiveOrder() throws {
        let grid = Topology.cartesian(try CartesianTopology(dimensions: [2, 1], periodic: [true, true]))
        #expect(grid.receiveOrder(count: 4) == [1, 0, 3, 2])
        let graph = Topology.graph(try GraphTopology(adjacency: [[1, 1], [0, 0]]))
        #expect(graph.receiveOrder(count: 2) == [0, 1])
    }
}
