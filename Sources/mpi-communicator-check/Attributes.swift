import MPI
import RankCheck
import Synchronization

/// Names, attributes with their copy and delete callbacks, and split by
/// type, checked on every rank.
func checkNamesAndAttributes(_ mpi: MPIRuntime) throws(MPIError) {
    let world = mpi.world
    check(mpi.name(of: world) == "MPI_COMM_WORLD" && mpi.name(of: mpi.selfCommunicator) == "MPI_COMM_SELF", "predefined names")
    let named = try mpi.duplicate(world)
    check(mpi.name(of: named) == "", "a new communicator's name: '\(mpi.name(of: named))'")
    try mpi.setName("solver rows", of: named)
    check(mpi.name(of: named) == "solver rows", "the name set: '\(mpi.name(of: named))'")
    do {
        try mpi.setName(String(repeating: "x", count: 128), of: named)
        fail("a name of 128 bytes was accepted")
    } catch {
        check(error.message.contains("at most 127"), "a long name: \(error.message)")
    }

    // Predefined attributes answer on every communicator and cannot be set.
    check(mpi.attribute(.tagUpperBound, of: named) == MessageTag.upperBound, "MPI_TAG_UB")
    check(mpi.attribute(.universeSize, of: world) == mpi.size, "MPI_UNIVERSE_SIZE")
    do {
        try mpi.setAttribute(1, for: .tagUpperBound, on: world)
        fail("MPI_TAG_UB was set")
    } catch {
        check(error.message.contains("predefined"), "setting MPI_TAG_UB: \(error.message)")
    }

    // Three keys: copied as is, not copied, copied by a callback; every
    // delete is recorded as (key, value).
    let deleted = Mutex<[[Int]]>([])
    let record: @Sendable (Communicator, AttributeKey, Int) -> Void = { _, _, value in deleted.withLock { $0.append([value]) } }
    let same = mpi.makeAttributeKey(copy: .same, delete: record)
    let dropped = mpi.makeAttributeKey(copy: .none, delete: record)
    let doubled = mpi.makeAttributeKey(copy: .callback { _, _, value in value * 2 }, delete: record)
    try mpi.setAttribute(11, for: same, on: named)
    try mpi.setAttribute(22, for: dropped, on: named)
    try mpi.setAttribute(33, for: doubled, on: named)
    try mpi.setAttribute(12, for: same, on: named)
    check(deleted.withLock { $0 } == [[11]], "replacing a value deletes the old one: \(deleted.withLock { $0 })")
    check(mpi.attribute(same, of: named) == 12 && mpi.attribute(dropped, of: named) == 22, "values read back")
    let child = try mpi.duplicate(named)
    check(mpi.attribute(same, of: child) == 12, "copied as is: \(String(describing: mpi.attribute(same, of: child)))")
    check(mpi.attribute(dropped, of: child) == nil, "not copied: \(String(describing: mpi.attribute(dropped, of: child)))")
    check(mpi.attribute(doubled, of: child) == 66, "copied by the callback: \(String(describing: mpi.attribute(doubled, of: child)))")
    try mpi.deleteAttribute(dropped, from: named)
    check(deleted.withLock { $0 } == [[11], [22]], "an explicit delete: \(deleted.withLock { $0 })")
    do {
        try mpi.deleteAttribute(dropped, from: named)
        fail("a missing attribute was deleted")
    } catch {
        check(error.message.contains("has no value"), "deleting a missing attribute: \(error.message)")
    }
    try mpi.free(named)
    check(deleted.withLock { $0 }.sorted { $0[0] < $1[0] } == [[11], [12], [22], [33]], "free deletes the rest: \(deleted.withLock { $0 })")
    try mpi.free(child)
    check(deleted.withLock { $0 }.count == 6, "the duplicate's values deleted on its free: \(deleted.withLock { $0 })")
    try mpi.freeAttributeKey(dropped)
    do {
        try mpi.setAttribute(1, for: dropped, on: world)
        fail("a freed key was used")
    } catch {
        check(error.message.contains("or freed"), "a freed key: \(error.message)")
    }

    // Split by type: every rank of this job is on this host, so one
    // communicator of all, ordered by the key (here: reversed).
    let host = try mpi.split(world, type: .sharedMemory, key: mpi.size - mpi.rank)!
    check(host.worldRanks == Array((0..<mpi.size).reversed()), "split by type: \(host.worldRanks)")
    let none = try mpi.split(world, type: mpi.rank == 0 ? nil : .sharedMemory, key: 0)
    check((none == nil) == (mpi.rank == 0) && (none?.size ?? mpi.size - 1) == mpi.size - 1, "split by type without a type for rank 0")
    try mpi.free(host)
    if let none { try mpi.free(none) }
}
