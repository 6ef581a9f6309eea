// A rank for the collective tests: every collective, blocking and
// nonblocking, at the element counts given (argument 1, comma-separated;
// default 0,1,13,131072: empty, one element, an odd size and 1 MiB of
// int64), each result checked element by element against a serial
// computation; then topologies and the neighbourhood collectives
// (Neighbourhood.swift), nonblocking collectives overlapping on several
// communicators, the progress rule, and bad input. Prints "rank R:
// collectives ok ..."; a failed check prints what differed and exits 1.
import Glibc
import MPI
import RankCheck

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    let counts = CommandLine.arguments.count > 1 ? CommandLine.arguments[1].split(separator: ",").compactMap { Int($0) } : [0, 1, 13, 131072]
    let world = mpi.world
    let size = mpi.size

    try checkBarrier(mpi)
    for mode in Mode.allCases {
        let moving = DataMovementChecks(mpi: mpi, mode: mode, communicator: world)
        let reducing = try ReductionChecks(mpi: mpi, mode: mode, communicator: world)
        for count in counts {
            try moving.broadcast(count)
            try moving.gatherAndScatter(count)
            try moving.allgather(count)
            try moving.allToAll(count)
            try reducing.reduce(count)
            try reducing.allreduce(count)
            try reducing.reduceScatter(count)
            try reducing.scans(count)
        }
    }
    try NeighbourhoodChecks(mpi: mpi).run()
    try checkOverlapping(mpi)
    try checkProgressRule(mpi)
    try checkBadInput(mpi)
    print("rank \(mpi.rank): collectives ok, \(size) ranks, counts \(counts.map(String.init).joined(separator: ","))")
    try mpi.finalize()
} catch {
    fail("\(error)")
}

/// A barrier holds every rank until the last has entered: rank 0 enters
/// 20 ms late, and no rank may leave before the moment it entered
/// (blocking and nonblocking; the ranks share this host's monotonic clock).
func checkBarrier(_ mpi: MPIRuntime) throws(MPIError) {
    func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
    for mode in Mode.allCases {
        try mpi.barrier()
        let entered = Buffer<Int64>([0])
        if mpi.rank == 0 {
            usleep(20_000)
            entered.pointer[0] = now()
        }
        try mpi.run(mode, { () throws(MPIError) in try mpi.barrier() }, { () throws(MPIError) in try mpi.startBarrier() })
        let left = now()
        try mpi.broadcast(entered.raw, count: 1, datatype: .int64, root: 0)
        check(left >= entered.array[0], "\(mode) barrier: rank \(mpi.rank) left \(entered.array[0] - left) ns before rank 0 entered")
    }
}

/// Nonblocking collectives on three communicators (the world, a
/// duplicate, the world in reverse order) and two on one communicator,
/// all in flight at once, completed in another order than started.
func checkOverlapping(_ mpi: MPIRuntime) throws(MPIError) {
    let rank = mpi.rank
    let size = mpi.size
    let duplicate = try mpi.duplicate(mpi.world)
    let reversed = try mpi.split(mpi.world, color: 0, key: size - rank)!
    let count = 1000
    let mine = Buffer(values(rank, count, 20))
    let sums = Buffer<Int64>(repeating: 0, count: count)
    let broadcast = Buffer(reversed.rank == 0 ? values(size - 1, count, 21) : Array(repeating: -1, count: count))
    let gathered = Buffer<Int64>(repeating: -1, count: count * size)
    let maximums = Buffer<Int64>(repeating: 0, count: count)
    var requests: [Request] = []
    requests.append(try mpi.startAllreduce(mine.input, into: sums.raw, count: count, datatype: .int64, operation: .sum))
    requests.append(try mpi.startBroadcast(broadcast.raw, count: count, datatype: .int64, root: 0, on: reversed))
    requests.append(try mpi.startAllgather(mine.input, count: count, datatype: .int64, into: gathered.raw, receiveCount: count, receiveDatatype: .int64, on: duplicate))
    requests.append(try mpi.startAllreduce(mine.input, into: maximums.raw, count: count, datatype: .int64, operation: .maximum))
    for request in requests.reversed() { _ = try mpi.wait(request) }
    check(sums.array == (0..<count).map { index in (0..<size).reduce(Int64(0)) { $0 + value($1, index, 20) } }, "overlapping allreduce sum")
    check(broadcast.array == values(size - 1, count, 21), "overlapping broadcast on the reversed communicator")
    check(gathered.array == (0..<size).flatMap { values($0, count, 20) }, "overlapping allgather on the duplicate")
    check(maximums.array == values(size - 1, count, 20), "overlapping allreduce max")
    // Mixed in one waitAll with point-to-point requests.
    let token = Buffer<Int64>([Int64(rank)])
    let received = Buffer<Int64>([-1])
    let barrier = try mpi.startBarrier(duplicate)
    let receiving = try mpi.startReceive(into: UnsafeMutableRawBufferPointer(start: received.raw, count: 8), from: MessageSource((rank + size - 1) % size), tag: 3)
    let sending = try mpi.startSend(UnsafeRawBufferPointer(start: token.input, count: 8), to: (rank + 1) % size, tag: 3)
    _ = try mpi.waitAll([barrier, receiving, sending])
    check(received.array == [Int64((rank + size - 1) % size)], "a point-to-point message waited for beside a barrier")
    try mpi.free(duplicate)
    try mpi.free(reversed)
}

/// MPI's progress rule: rank 0 starts a barrier and then blocks in a
/// receive that rank 1 sends only after the barrier completed there. The
/// barrier can complete only if rank 0's receive advances it.
func checkProgressRule(_ mpi: MPIRuntime) throws(MPIError) {
    guard mpi.size >= 2 else { return }
    let flag = Buffer<Int64>([0])
    let barrier = try mpi.startBarrier()
    if mpi.rank == 0 {
        _ = try mpi.receive(into: UnsafeMutableRawBufferPointer(start: flag.raw, count: 8), from: 1, tag: 4)
        check(flag.array == [1], "the message after the barrier")
    } else if mpi.rank == 1 {
        _ = try mpi.wait(barrier)
        flag.pointer[0] = 1
        try mpi.send(UnsafeRawBufferPointer(start: flag.input, count: 8), to: 0, tag: 4)
        return
    }
    _ = try mpi.wait(barrier)
}

/// Bad input gets an error that names it; a count that differs between
/// ranks is caught by the rank that receives the odd block.
func checkBadInput(_ mpi: MPIRuntime) throws(MPIError) {
    let size = mpi.size
    expectError("a broadcast from root \(size)", .invalidRank, containing: "root \(size)") { () throws(MPIError) in
        try mpi.broadcast(nil, count: 0, datatype: .int64, root: size)
    }
    let flags = Buffer<UInt8>([1, 0])
    expectError("a sum of booleans", .invalidArgument, containing: "MPI_SUM is not defined on MPI_C_BOOL") { () throws(MPIError) in
        try mpi.allreduce(flags.input, into: flags.raw + 1, count: 1, datatype: .bool, operation: .sum)
    }
    expectError("a null buffer of 3 elements", .invalidBuffer, containing: "null buffer") { () throws(MPIError) in
        try mpi.allreduce(nil, into: flags.raw, count: 3, datatype: .int64, operation: .sum)
    }
    expectError("a gatherv with too few counts", .invalidArgument, containing: "\(size + 1) receive counts") { () throws(MPIError) in
        _ = try mpi.startGather(flags.input, count: 0, datatype: .int64, into: flags.raw, receiveCounts: Array(repeating: 0, count: size + 1),
                                displacements: Array(repeating: 0, count: size + 1), receiveDatatype: .int64, root: mpi.rank)
    }
    expectError("inPlace as an allreduce's output", .invalidBuffer, containing: "inPlace") { () throws(MPIError) in
        try mpi.allreduce(flags.input, into: UnsafeMutableRawPointer(mutating: MPIRuntime.inPlace), count: 1, datatype: .uint8, operation: .sum)
    }
    let freed = try mpi.duplicate(mpi.world)
    try mpi.free(freed)
    expectError("a barrier on a freed communicator", .invalidArgument, containing: "is freed") { () throws(MPIError) in try mpi.barrier(freed) }
    let request = try mpi.startBarrier()
    expectError("cancelling a collective", .invalidRequest, containing: "cannot be cancelled") { () throws(MPIError) in try mpi.cancel(request) }
    expectError("freeing a collective's request", .invalidRequest, containing: "cannot be freed") { () throws(MPIError) in try mpi.free(request) }
    _ = try mpi.wait(request)
    // Pairs of ranks: the root of each gathers 9 elements per rank, the
    // other rank sends 8 (gather is linear whatever the settings, so the
    // sender completes and the root names it).
    guard size >= 2 else { return }
    let pair = try mpi.split(mpi.world, color: mpi.rank / 2, key: 0)!
    if pair.size == 2 {
        let data = Buffer<Int64>(repeating: 7, count: 18)
        if pair.rank == 1 {
            try mpi.gather(data.input, count: 8, datatype: .int64, into: nil, receiveCount: 0, receiveDatatype: .int64, root: 0, on: pair)
        } else {
            expectError("a gather of 9 elements per rank where rank 1 sends 8", .truncated, containing: "rank 1 sent 64 bytes where this rank expected 72") { () throws(MPIError) in
                try mpi.gather(data.input, count: 9, datatype: .int64, into: data.raw, receiveCount: 9, receiveDatatype: .int64, root: 0, on: pair)
            }
        }
    }
    try mpi.free(pair)
    try mpi.barrier()
}
