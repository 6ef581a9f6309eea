import Glibc
import MPI
import RankCheck
import Synchronization

/// A target that never calls MPI while the others work on its memory:
/// rank 0 computes in its own loop, reading only a word of its window
/// that the others raise when they are done, while every other rank
/// locks (exclusive and lock-all in turn), puts, gets back, fetch-and-adds
/// and accumulates on rank 0's window `rounds` times. The software NIC's
/// progress (or the card) serves every access; rank 0 then checks every
/// value.
func checkPassiveTarget(_ mpi: MPIRuntime) throws(MPIError) {
    let rank = mpi.rank, size = mpi.size
    guard size >= 2 else { return }
    let rounds = 1000
    let slots = 16
    let (window, base) = try mpi.allocateWindow(bytes: (8 + slots * size) * 8, displacementUnit: 8)
    let words = base!.bindMemory(to: Int64.self, capacity: 8 + slots * size)
    for index in 0..<(8 + slots * size) { words[index] = 0 }
    try mpi.barrier()
    if rank == 0 {
        // Word 2 counts the ranks done; read atomically, nothing else of MPI.
        let done = UnsafeMutableRawPointer(words + 2).assumingMemoryBound(to: Atomic<Int64>.self)
        var computed = 0.0, iterations = 0
        let start = now()
        while done.pointee.load(ordering: .acquiring) < Int64(size - 1) {
            for step in 0..<10_000 { computed += sin(Double(step)) }
            iterations += 1
            check(now() - start < 120, "the passive target waited 120 s for its origins (iterations \(iterations))")
        }
        let elapsed = now() - start
        check(words[0] == Int64((size - 1) * rounds), "passive target: fetch-and-add total \(words[0])")
        check(words[1] == Int64(rounds * (size - 1) * size / 2), "passive target: accumulated \(words[1])")
        for origin in 1..<size {
            for slot in 0..<slots {
                check(words[8 + origin * slots + slot] == Int64(origin * 1000 + rounds - 1), "passive target: rank \(origin)'s slot \(slot) holds \(words[8 + origin * slots + slot])")
            }
        }
        print("rank 0: passive target computed \(iterations) rounds (\(Int(computed) & 1)) in \(Int(elapsed * 1000)) ms while \(size - 1) ranks worked on its window")
    } else {
        var olds = Set<Int64>()
        for round in 0..<rounds {
            if round % 2 == 0 { try mpi.lock(.exclusive, target: 0, on: window) } else { try mpi.lockAll(on: window) }
            let values = [Int64](repeating: Int64(rank * 1000 + round), count: slots)
            try mpi.put(values, count: slots, datatype: .int64, to: 0, displacement: 8 + rank * slots, on: window)
            try mpi.flush(target: 0, on: window)
            var back = [Int64](repeating: -1, count: slots)
            try withPointer(to: &back) { (pointer) throws(MPIError) in
                try mpi.get(into: pointer, count: slots, datatype: .int64, from: 0, displacement: 8 + rank * slots, on: window)
                try mpi.flush(target: 0, on: window)
            }
            check(back == values, "passive target: rank \(rank) read back \(back[0]) in round \(round)")
            var one: Int64 = 1, old: Int64 = -1, mine = Int64(rank)
            try mpi.fetchAndOp(&one, result: &old, datatype: .int64, target: 0, displacement: 0, operation: .sum, on: window)
            try mpi.accumulate(&mine, count: 1, datatype: .int64, to: 0, displacement: 1, operation: .sum, on: window)
            if round % 2 == 0 { try mpi.unlock(target: 0, on: window) } else { try mpi.unlockAll(on: window) }
            check(olds.insert(old).inserted, "passive target: fetch-and-add gave \(old) twice")
        }
        try mpi.lock(.shared, target: 0, on: window)
        var one: Int64 = 1
        try mpi.accumulate(&one, count: 1, datatype: .int64, to: 0, displacement: 2, operation: .sum, on: window)
        try mpi.unlock(target: 0, on: window)
    }
    try mpi.barrier()
    try mpi.free(window)
}

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
