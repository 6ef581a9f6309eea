// A rank for the communicator tests: every rank of the job makes
// communicators from world (dup, split, create from a group), exchanges
// messages on them and checks that none crosses into another
// communicator, then frees them; then names, attributes and split by
// type (Attributes.swift). Prints "rank R: communicators ok ...";
// a failed check prints what differed and exits 1.
import Glibc
import MPI
import RankCheck

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    let rank = mpi.rank
    let size = mpi.size
    let world = mpi.world

    // dup: same ranks, another context; a message on it is not seen on world.
    let copy = try mpi.duplicate(world)
    check(copy.rank == rank && copy.size == size && copy.context != world.context, "dup: \(copy)")
    check(mpi.compare(copy, world) == .congruent && mpi.compare(copy, copy) == .identical, "dup compares as \(mpi.compare(copy, world))")
    let next = (rank + 1) % size
    let previous = (rank + size - 1) % size
    try mpi.send([Int32(rank)], to: next, tag: 5, on: copy)
    check(try mpi.probeIfArrived(from: .any, tag: .any, on: world) == nil || size == 1, "a message on the duplicate showed on world")
    let (fromCopy, copyStatus) = try mpi.receive(Int32.self, count: 1, from: .any, tag: .any, on: copy)
    check(fromCopy == [Int32(previous)] && copyStatus.source == previous, "on the duplicate: \(fromCopy) \(copyStatus)")

    // split: even and odd world ranks, ordered by descending world rank.
    let half = try mpi.split(world, color: rank % 2, key: -rank)
    guard let half else { fail("split gave no communicator for color \(rank % 2)") }
    let expected = stride(from: size - 1 - ((size - 1 - rank) % 2), through: 0, by: -2).map { $0 }
    check(half.worldRanks == expected, "split: \(half.worldRanks), not \(expected)")
    check(half.rank == expected.firstIndex(of: rank), "split: rank \(half.rank)")
    // A ring on the half, with any source: only its own members are heard.
    if half.size > 1 {
        try mpi.send([Int32(rank)], to: (half.rank + 1) % half.size, tag: 1, on: half)
        let (got, status) = try mpi.receive(Int32.self, count: 1, from: .any, tag: .any, on: half)
        let sender = half.worldRanks[(half.rank + half.size - 1) % half.size]
        check(got == [Int32(sender)] && status.source == (half.rank + half.size - 1) % half.size, "on the half: \(got) \(status)")
    }
    // A rank without a color gets none, and the others still agree.
    let some = try mpi.split(world, color: rank == 0 ? nil : 1, key: 0)
    check((some == nil) == (rank == 0) && (some?.size ?? size - 1) == size - 1, "split with no color for rank 0: \(String(describing: some))")

    // create from a group: the first half of world, in reverse.
    let firstHalf = try world.group.including(Array((0..<max(1, size / 2)).reversed()))
    let made = try mpi.create(from: world, group: firstHalf)
    check((made != nil) == firstHalf.worldRanks.contains(rank), "create: \(String(describing: made))")
    if let made { check(made.worldRanks == firstHalf.worldRanks && made.worldRanks[made.rank] == rank, "create: \(made)") }

    // Every context of this rank differs (none reused).
    let contexts = [world.context, copy.context, half.context, some?.context, made?.context].compactMap { $0 }
    check(Set(contexts).count == contexts.count, "contexts repeat: \(contexts)")

    // free: refused afterwards by name; world cannot be freed.
    try mpi.free(copy)
    do {
        try mpi.send([1], to: 0, tag: 0, on: copy)
        fail("a send on a freed communicator was accepted")
    } catch {
        check(error.message.contains("is freed"), "a send on a freed communicator: \(error.message)")
    }
    do {
        try mpi.free(world)
        fail("world was freed")
    } catch {
        check(error.message.contains("cannot be freed"), "free of world: \(error.message)")
    }
    try checkNamesAndAttributes(mpi)
    print("rank \(rank): communicators ok, \(size) ranks, contexts \(contexts.map(String.init).joined(separator: " "))")
    try mpi.finalize()
} catch {
    fail("\(error)")
}
