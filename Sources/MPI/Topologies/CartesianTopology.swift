/// Ranks laid on a grid (MPI_Cart_create): rank r sits at the coordinates
/// r has when the grid is numbered in row-major order (the last dimension
/// varies fastest), and a dimension may wrap around (periodic). A value:
/// the arithmetic of coordinates, shifts and neighbours needs no
/// communication.
public struct CartesianTopology: Hashable, Sendable {
    /// The extent of each dimension.
    public let dimensions: [Int]
    /// Whether each dimension wraps around.
    public let periodic: [Bool]
    /// The number of grid positions (the ranks of the communicator).
    public let size: Int

    /// A grid of `dimensions`; `periodic` gives one flag per dimension.
    /// Zero dimensions make a grid of one position (MPI allows it).
    public init(dimensions: [Int], periodic: [Bool]) throws(MPIError) {
        guard periodic.count == dimensions.count else {
            throw MPIError(.invalidTopology, "a Cartesian topology of \(dimensions.count) dimensions with \(periodic.count) periodic flags")
        }
        var size = 1
        for (index, extent) in dimensions.enumerated() {
            guard extent > 0 else { throw MPIError(.invalidTopology, "a Cartesian topology whose dimension \(index) has extent \(extent)") }
            let (product, overflow) = size.multipliedReportingOverflow(by: extent)
            guard !overflow else { throw MPIError(.invalidTopology, "a Cartesian topology of \(dimensions) positions overflows") }
            size = product
        }
        self.dimensions = dimensions
        self.periodic = periodic
        self.size = size
    }

    /// The coordinates of `rank` (MPI_Cart_coords).
    public func coordinates(of rank: Int) throws(MPIError) -> [Int] {
        guard (0..<size).contains(rank) else { throw MPIError(.invalidRank, "coordinates of rank \(rank) on a grid of \(size) positions") }
        var coordinates = Array(repeating: 0, count: dimensions.count)
        var rest = rank
        for index in dimensions.indices.reversed() {
            coordinates[index] = rest % dimensions[index]
            rest /= dimensions[index]
        }
        return coordinates
    }

    /// The rank at `coordinates` (MPI_Cart_rank): a coordinate outside a
    /// periodic dimension wraps around; outside another one is an error.
    public func rank(at coordinates: [Int]) throws(MPIError) -> Int {
        guard coordinates.count == dimensions.count else {
            throw MPIError(.invalidTopology, "\(coordinates.count) coordinates on a grid of \(dimensions.count) dimensions")
        }
        guard let rank = wrappedRank(at: coordinates) else {
            throw MPIError(.invalidRank, "coordinates \(coordinates) lie outside the grid \(dimensions) in a dimension that does not wrap")
        }
        return rank
    }

    /// The rank at `coordinates`, or nil when one lies outside a
    /// dimension that does not wrap.
    func wrappedRank(at coordinates: [Int]) -> Int? {
        var rank = 0
        for index in dimensions.indices {
            var coordinate = coordinates[index]
            let extent = dimensions[index]
            if periodic[index] {
                coordinate = ((coordinate % extent) + extent) % extent
            } else if !(0..<extent).contains(coordinate) {
                return nil
            }
            rank = rank * extent + coordinate
        }
        return rank
    }

    /// Where `rank` sends and receives in a shift of `displacement` along
    /// `dimension` (MPI_Cart_shift): the destination is `displacement`
    /// further, the source as far back; nil past the edge of a dimension
    /// that does not wrap (MPI_PROC_NULL).
    public func shift(_ rank: Int, dimension: Int, by displacement: Int) throws(MPIError) -> (source: Int?, destination: Int?) {
        guard dimensions.indices.contains(dimension) else {
            throw MPIError(.invalidTopology, "a shift along dimension \(dimension) of a grid of \(dimensions.count) dimensions")
        }
        var position = try coordinates(of: rank)
        let here = position[dimension]
        position[dimension] = here - displacement
        let source = wrappedRank(at: position)
        position[dimension] = here + displacement
        return (source, wrappedRank(at: position))
    }

    /// `rank`'s neighbours in the order the neighbourhood collectives use:
    /// for each dimension, the one before and the one after (nil past an
    /// edge that does not wrap). They are both where the blocks go and
    /// where they come from.
    func neighbours(of rank: Int) -> [Int?] {
        var neighbours: [Int?] = []
        neighbours.reserveCapacity(2 * dimensions.count)
        for dimension in dimensions.indices {
            let (before, after) = try! shift(rank, dimension: dimension, by: 1)  // rank and dimension are in range
            neighbours.append(before)
            neighbours.append(after)
        }
        return neighbours
    }

    /// The grid of the dimensions kept (MPI_Cart_sub); `rank`'s position
    /// in it, and which sub-grid it is in (the rank of its coordinates in
    /// the dimensions dropped).
    func subgrid(keeping kept: [Bool], rank: Int) throws(MPIError) -> (grid: CartesianTopology, rank: Int, color: Int) {
        guard kept.count == dimensions.count else {
            throw MPIError(.invalidTopology, "a sub-grid with \(kept.count) flags of a grid of \(dimensions.count) dimensions")
        }
        let position = try coordinates(of: rank)
        var keptDimensions: [Int] = [], keptPeriodic: [Bool] = []
        var rankInSubgrid = 0, color = 0
        for index in dimensions.indices {
            if kept[index] {
                keptDimensions.append(dimensions[index])
                keptPeriodic.append(periodic[index])
                rankInSubgrid = rankInSubgrid * dimensions[index] + position[index]
            } else {
                color = color * dimensions[index] + position[index]
            }
        }
        return (try CartesianTopology(dimensions: keptDimensions, periodic: keptPeriodic), rankInSubgrid, color)
    }

    /// Extents for a grid of `ranks` positions (MPI_Dims_create): the
    /// nonzero entries of `constraints` are kept, the zeros are filled so
    /// that the product is `ranks`, as close to each other as the prime
    /// factors allow and in non-increasing order. Each prime factor,
    /// largest first, goes to the free dimension whose product is smallest.
    public static func balancedDimensions(ranks: Int, constraints: [Int]) throws(MPIError) -> [Int] {
        guard ranks > 0 else { throw MPIError(.invalidArgument, "a grid of \(ranks) ranks") }
        if let negative = constraints.first(where: { $0 < 0 }) {
            throw MPIError(.invalidTopology, "a grid with dimension extent \(negative)")
        }
        let fixed = constraints.filter { $0 > 0 }.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard ranks % fixed == 0 else {
            throw MPIError(.invalidTopology, "\(ranks) ranks do not fill a grid whose fixed extents \(constraints.filter { $0 > 0 }) multiply to \(fixed)")
        }
        let free = constraints.filter { $0 == 0 }.count
        var rest = ranks / fixed
        guard free > 0 else {
            guard rest == 1 else { throw MPIError(.invalidTopology, "the extents \(constraints) make \(fixed) positions, not \(ranks)") }
            return constraints
        }
        var factors: [Int] = []
        var divisor = 2
        while divisor * divisor <= rest {
            while rest % divisor == 0 {
                factors.append(divisor)
                rest /= divisor
            }
            divisor += 1
        }
        if rest > 1 { factors.append(rest) }
        var filled = Array(repeating: 1, count: free)
        for factor in factors.reversed() {
            let smallest = filled.indices.min { filled[$0] < filled[$1] }!
            filled[smallest] *= factor
        }
        filled.sort(by: >)
        var next = filled.makeIterator()
        return constraints.map { $0 == 0 ? next.next()! : $0 }
    }
}
