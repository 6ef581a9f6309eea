// A first MPI program in Swift: each rank passes a growing array around the
// ring of ranks (blocking sends and receives), then every rank sends its
// part of a sum to rank 0 with nonblocking sends. Run it with
//   mpirun -n 4 .build/release/mpi-example
import MPI

do {
    let mpi = try MPIRuntime.initialize()
    let next = (mpi.rank + 1) % mpi.size
    let previous = (mpi.rank + mpi.size - 1) % mpi.size

    // The ring: rank 0 starts a list, each rank adds its rank and passes it on.
    if mpi.rank == 0 {
        try mpi.send([0], to: next, tag: 1)
        let (list, _) = try mpi.receive(Int.self, count: mpi.size, from: MessageSource(previous), tag: 1)
        print("rank 0: the list came back round the ring: \(list)")
    } else {
        let (list, _) = try mpi.receive(Int.self, count: mpi.size, from: MessageSource(previous), tag: 1)
        try mpi.send(list + [mpi.rank], to: next, tag: 1)
    }

    // A sum at rank 0: every rank sends the squares of its numbers.
    let mine = (0..<1000).map { Double(mpi.rank * 1000 + $0) }
    let partial = mine.reduce(0) { $0 + $1 * $1 }
    if mpi.rank == 0 {
        var parts = [Double](repeating: 0, count: mpi.size)
        parts[0] = partial
        try parts.withUnsafeMutableBufferPointer { buffer in
            var requests: [Request] = []
            for rank in 1..<mpi.size {
                let slot = UnsafeMutableBufferPointer(rebasing: buffer[rank..<(rank + 1)])
                requests.append(try mpi.startReceive(into: slot, from: MessageSource(rank), tag: 2))
            }
            _ = try mpi.waitAll(requests)
        }
        let expected = (0..<(1000 * mpi.size)).reduce(0.0) { $0 + Double($1) * Double($1) }
        print("rank 0: sum of squares over \(mpi.size) ranks = \(parts.reduce(0, +)) (expected \(expected))")
    } else {
        try mpi.send([partial], to: 0, tag: 2)
    }
    let statistics = mpi.pointToPointStatistics
    print("rank \(mpi.rank): \(statistics.eagerSends) eager sends, \(statistics.copiedBytes) bytes copied by MPI, backend \(mpi.backend)")
    try mpi.finalize()
} catch {
    print("mpi-example: \(error)")
}
