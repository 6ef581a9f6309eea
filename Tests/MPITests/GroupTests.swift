import Testing

@testable import MPI

/// Groups: the set operations as MPI defines them, order included, and
/// bad ranks refused by name.
struct GroupTests {
    let world = Group(uncheckedWorldRanks: Array(0..<8))

    @Test("include, exclude and their range forms keep MPI's order")
    func includeExclude() throws {
        #expect(try world.including([5, 1, 3]).worldRanks == [5, 1, 3])
        #expect(try world.excluding([0, 7, 3]).worldRanks == [1, 2, 4, 5, 6])
        let odd = try world.including(ranges: [Group.RankRange(first: 1, last: 7, stride: 2)])
        #expect(odd.worldRanks == [1, 3, 5, 7])
        #expect(try world.including(ranges: [Group.RankRange(first: 6, last: 2, stride: -2), Group.RankRange(first: 7, last: 7)]).worldRanks == [6, 4, 2, 7])
        #expect(try world.excluding(ranges: [Group.RankRange(first: 0, last: 3)]).worldRanks == [4, 5, 6, 7])
        // Ranks of a subgroup are positions in it.
        #expect(try odd.including([3, 0]).worldRanks == [7, 1])
        #expect(odd.rank(ofWorldRank: 5) == 2 && odd.rank(ofWorldRank: 4) == nil)
    }

    @Test("union, intersection and difference keep the first group's order")
    func setOperations() throws {
        let a = try Group(worldRanks: [4, 1, 6])
        let b = try Group(worldRanks: [6, 2, 4, 0])
        #expect(a.union(b).worldRanks == [4, 1, 6, 2, 0])
        #expect(a.intersection(b).worldRanks == [4, 6])
        #expect(a.subtracting(b).worldRanks == [1])
        #expect(a.intersection(.empty).size == 0 && Group.empty.union(a) == a)
    }

    @Test("translate and compare")
    func translateCompare() throws {
        let a = try Group(worldRanks: [4, 1, 6])
        let b = try Group(worldRanks: [6, 2, 4, 0])
        #expect(try a.translate([0, 1, 2], to: b) == [2, nil, 0])
        #expect(a.compare(try Group(worldRanks: [4, 1, 6])) == .identical)
        #expect(a.compare(try Group(worldRanks: [6, 4, 1])) == .similar)
        #expect(a.compare(b) == .unequal)
        #expect(Communicator.world(rank: 3, size: 8).group == world)
    }

    @Test("bad ranks are refused by name: out of the group, named twice, a zero stride")
    func badInput() {
        func refusal(_ body: () throws(MPIError) -> Void) -> MPIError? {
            do { try body() } catch { return error }
            return nil
        }
        #expect(refusal { () throws(MPIError) in _ = try world.including([8]) }?.message == "an include of rank 8 from a group of 8 (world ranks 0, 1, 2, 3, 4, 5, 6, 7)")
        #expect(refusal { () throws(MPIError) in _ = try world.excluding([2, 2]) }?.message == "an exclude naming rank 2 twice")
        #expect(refusal { () throws(MPIError) in _ = try world.including(ranges: [Group.RankRange(first: 0, last: 3, stride: 0)]) }?.kind == .invalidArgument)
        #expect(refusal { () throws(MPIError) in _ = try world.including(ranges: [Group.RankRange(first: 0, last: 9)]) }?.kind == .invalidRank)
        #expect(refusal { () throws(MPIError) in _ = try Group(worldRanks: [1, 1]) }?.kind == .invalidRank)
        #expect(refusal { () throws(MPIError) in _ = try world.translate([9], to: world) }?.kind == .invalidRank)
    }
}
