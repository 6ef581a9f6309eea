/// An ordered set of the job's processes (MPI_Group): rank i of the group
/// is world rank `worldRanks[i]`. Groups are values made locally, with no
/// communication; a communicator is made from one (the collectives issue's
/// communicator creation). This process's rank in a group is its position,
/// if it is a member.
public struct Group: Hashable, Sendable, CustomStringConvertible {
    /// The members' world ranks, in group rank order, each once.
    public let worldRanks: [Int]

    /// The group with no members (MPI_GROUP_EMPTY).
    public static let empty = Group(uncheckedWorldRanks: [])

    /// A group of `worldRanks` in that order; a rank named twice, or a
    /// negative one, is refused.
    public init(worldRanks: [Int]) throws(MPIError) {
        var seen = Set<Int>()
        for rank in worldRanks {
            guard rank >= 0 else { throw MPIError(.invalidRank, "a group with world rank \(rank)") }
            guard seen.insert(rank).inserted else { throw MPIError(.invalidRank, "a group naming world rank \(rank) twice") }
        }
        self.worldRanks = worldRanks
    }

    init(uncheckedWorldRanks: [Int]) { worldRanks = uncheckedWorldRanks }

    public var size: Int { worldRanks.count }

    /// The group rank of world rank `worldRank`, if it is a member.
    public func rank(ofWorldRank worldRank: Int) -> Int? { worldRanks.firstIndex(of: worldRank) }

    // MARK: - Making groups from groups

    /// The members at `ranks` of this group, in that order (MPI_Group_incl).
    public func including(_ ranks: [Int]) throws(MPIError) -> Group {
        try checkDistinct(ranks, "an include")
        return Group(uncheckedWorldRanks: ranks.map { worldRanks[$0] })
    }

    /// This group without the members at `ranks` (MPI_Group_excl).
    public func excluding(_ ranks: [Int]) throws(MPIError) -> Group {
        try checkDistinct(ranks, "an exclude")
        let dropped = Set(ranks)
        return Group(uncheckedWorldRanks: worldRanks.indices.filter { !dropped.contains($0) }.map { worldRanks[$0] })
    }

    /// A range of ranks: `first`, `first + stride`, ... up to `last`
    /// (MPI_Group_range_incl's triplets).
    public struct RankRange: Hashable, Sendable {
        public var first: Int
        public var last: Int
        public var stride: Int

        public init(first: Int, last: Int, stride: Int = 1) {
            self.first = first
            self.last = last
            self.stride = stride
        }
    }

    /// The members in `ranges`, in order (MPI_Group_range_incl).
    public func including(ranges: [RankRange]) throws(MPIError) -> Group {
        try including(expand(ranges))
    }

    /// This group without the members in `ranges` (MPI_Group_range_excl).
    public func excluding(ranges: [RankRange]) throws(MPIError) -> Group {
        try excluding(expand(ranges))
    }

    /// This group's members, then `other`'s that are not in it (MPI_Group_union).
    public func union(_ other: Group) -> Group {
        let mine = Set(worldRanks)
        return Group(uncheckedWorldRanks: worldRanks + other.worldRanks.filter { !mine.contains($0) })
    }

    /// This group's members that are also in `other`, in this group's order
    /// (MPI_Group_intersection).
    public func intersection(_ other: Group) -> Group {
        let theirs = Set(other.worldRanks)
        return Group(uncheckedWorldRanks: worldRanks.filter { theirs.contains($0) })
    }

    /// This group's members that are not in `other` (MPI_Group_difference).
    public func subtracting(_ other: Group) -> Group {
        let theirs = Set(other.worldRanks)
        return Group(uncheckedWorldRanks: worldRanks.filter { !theirs.contains($0) })
    }

    // MARK: - Comparing

    /// The ranks in `other` of the members at `ranks` here, nil for those
    /// not in it (MPI_Group_translate_ranks, MPI_UNDEFINED as nil).
    public func translate(_ ranks: [Int], to other: Group) throws(MPIError) -> [Int?] {
        for rank in ranks where !worldRanks.indices.contains(rank) {
            throw MPIError(.invalidRank, "a translation of rank \(rank) of \(self)")
        }
        return ranks.map { other.rank(ofWorldRank: worldRanks[$0]) }
    }

    /// How two groups compare (MPI_Group_compare).
    public enum Comparison: Sendable {
        /// The same members in the same order (MPI_IDENT).
        case identical
        /// The same members in another order (MPI_SIMILAR).
        case similar
        /// Different members (MPI_UNEQUAL).
        case unequal
    }

    public func compare(_ other: Group) -> Comparison {
        if worldRanks == other.worldRanks { return .identical }
        return Set(worldRanks) == Set(other.worldRanks) && size == other.size ? .similar : .unequal
    }

    public var description: String { "a group of \(size) (world ranks \(worldRanks.prefix(8).map(String.init).joined(separator: ", "))\(size > 8 ? ", ..." : ""))" }

    // MARK: - Checks

    private func checkDistinct(_ ranks: [Int], _ operation: String) throws(MPIError) {
        var seen = Set<Int>()
        for rank in ranks {
            guard worldRanks.indices.contains(rank) else {
                throw MPIError(.invalidRank, "\(operation) of rank \(rank) from \(self)")
            }
            guard seen.insert(rank).inserted else { throw MPIError(.invalidRank, "\(operation) naming rank \(rank) twice") }
        }
    }

    /// The ranks the triplets name, each checked to lie in the group.
    private func expand(_ ranges: [RankRange]) throws(MPIError) -> [Int] {
        var ranks: [Int] = []
        for range in ranges {
            guard range.stride != 0 else { throw MPIError(.invalidArgument, "a rank range from \(range.first) to \(range.last) with stride 0") }
            guard worldRanks.indices.contains(range.first), worldRanks.indices.contains(range.last) else {
                throw MPIError(.invalidRank, "a rank range from \(range.first) to \(range.last) outside \(self)")
            }
            ranks += Array(stride(from: range.first, through: range.last, by: range.stride))
        }
        return ranks
    }
}

extension Communicator {
    /// The communicator's group (MPI_Comm_group).
    public var group: Group { Group(uncheckedWorldRanks: worldRanks) }
}
