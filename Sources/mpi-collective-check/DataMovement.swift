import MPI
import RankCheck

/// Broadcast, gather, scatter, allgather and all-to-all in their plain,
/// v, w and in-place forms, each result compared element by element with
/// what a serial computation gives.
struct DataMovementChecks {
    let mpi: MPIRuntime
    let mode: Mode
    let communicator: Communicator
    var rank: Int { communicator.rank }
    var size: Int { communicator.size }
    var roots: [Int] { Set([0, size - 1, size / 2]).sorted() }

    func what(_ operation: String, _ count: Int, root: Int? = nil) -> String {
        "\(mode) \(operation) of \(count)" + (root.map { " from/to root \($0)" } ?? "") + " on \(size) ranks"
    }

    /// Counts that differ by rank (some may be 0), for the v forms.
    func counts(_ count: Int) -> [Int] { (0..<size).map { count == 0 ? 0 : max(0, count + $0 % 3 - 1) } }

    func broadcast(_ count: Int) throws(MPIError) {
        for root in roots {
            let data = Buffer(rank == root ? values(root, count, 1) : Array(repeating: -1, count: count))
            try mpi.run(mode, { () throws(MPIError) in try mpi.broadcast(data.raw, count: count, datatype: .int64, root: root, on: communicator) },
                        { () throws(MPIError) in try mpi.startBroadcast(data.raw, count: count, datatype: .int64, root: root, on: communicator) })
            check(data.array == values(root, count, 1), what("broadcast", count, root: root))
        }
        // Every other int64 (a vector type): the gaps keep their values.
        let spaced = try Datatype.vector(count: max(count, 1), blockLength: 1, stride: 2, of: .int64)
        try spaced.commit()
        let elements = count == 0 ? 0 : 1
        let root = size - 1
        let data = Buffer((0..<(2 * max(count, 1))).map { $0 % 2 == 0 && rank == root ? value(root, $0, 2) : -Int64($0) })
        try mpi.run(mode, { () throws(MPIError) in try mpi.broadcast(data.raw, count: elements, datatype: spaced, root: root, on: communicator) },
                    { () throws(MPIError) in try mpi.startBroadcast(data.raw, count: elements, datatype: spaced, root: root, on: communicator) })
        let expected = (0..<(2 * max(count, 1))).map { $0 % 2 == 0 && (count > 0 || rank == root) ? value(root, $0, 2) : -Int64($0) }
        check(data.array == expected, what("broadcast of a vector type", count))
        try spaced.free()
    }

    func gatherAndScatter(_ count: Int) throws(MPIError) {
        for root in roots {
            // Gather, and in place on the root.
            for inPlace in [false, true] {
                let mine = Buffer(values(rank, count, 3))
                let gathered = Buffer(rank == root ? (0..<(count * size)).map { inPlace && $0 / max(count, 1) == root ? value(root, $0 % max(count, 1), 3) : -1 } : [])
                let send = inPlace && rank == root ? MPIRuntime.inPlace : mine.input
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.gather(send, count: count, datatype: .int64, into: gathered.raw, receiveCount: count, receiveDatatype: .int64, root: root, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startGather(send, count: count, datatype: .int64, into: gathered.raw, receiveCount: count, receiveDatatype: .int64, root: root, on: communicator)
                })
                if rank == root { check(gathered.array == (0..<size).flatMap { values($0, count, 3) }, what(inPlace ? "in-place gather" : "gather", count, root: root)) }
            }
            // Gatherv with gaps between the blocks (they keep their values).
            let counts = counts(count)
            let displacements = gapped(counts)
            let total = (displacements.last ?? 0) + (counts.last ?? 0)
            let mine = Buffer(values(rank, counts[rank], 4))
            let gathered = Buffer<Int64>(repeating: -5, count: rank == root ? total : 0)
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.gather(mine.input, count: counts[rank], datatype: .int64, into: gathered.raw, receiveCounts: counts, displacements: displacements,
                               receiveDatatype: .int64, root: root, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startGather(mine.input, count: counts[rank], datatype: .int64, into: gathered.raw, receiveCounts: counts, displacements: displacements,
                                    receiveDatatype: .int64, root: root, on: communicator)
            })
            if rank == root {
                var expected = [Int64](repeating: -5, count: total)
                for peer in 0..<size { for index in 0..<counts[peer] { expected[displacements[peer] + index] = value(peer, index, 4) } }
                check(gathered.array == expected, what("gatherv", count, root: root))
            }
            // Scatter, in place on the root, and scatterv.
            for inPlace in [false, true] {
                let spread = Buffer(rank == root ? (0..<size).flatMap { values($0 + 7, count, 5) } : [])
                let piece = Buffer<Int64>(repeating: -1, count: count)
                let receive = inPlace && rank == root ? UnsafeMutableRawPointer(mutating: MPIRuntime.inPlace) : piece.raw
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.scatter(spread.input, count: count, datatype: .int64, into: receive, receiveCount: count, receiveDatatype: .int64, root: root, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startScatter(spread.input, count: count, datatype: .int64, into: receive, receiveCount: count, receiveDatatype: .int64, root: root, on: communicator)
                })
                if !(inPlace && rank == root) { check(piece.array == values(rank + 7, count, 5), what(inPlace ? "in-place scatter" : "scatter", count, root: root)) }
            }
            var source = [Int64](repeating: -9, count: total)
            for peer in 0..<size { for index in 0..<counts[peer] { source[displacements[peer] + index] = value(peer, index, 6) } }
            let spread = Buffer(rank == root ? source : [])
            let piece = Buffer<Int64>(repeating: -1, count: counts[rank])
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.scatter(spread.input, sendCounts: counts, displacements: displacements, datatype: .int64,
                                into: piece.raw, receiveCount: counts[rank], receiveDatatype: .int64, root: root, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startScatter(spread.input, sendCounts: counts, displacements: displacements, datatype: .int64,
                                     into: piece.raw, receiveCount: counts[rank], receiveDatatype: .int64, root: root, on: communicator)
            })
            check(piece.array == values(rank, counts[rank], 6), what("scatterv", count, root: root))
        }
    }

    func allgather(_ count: Int) throws(MPIError) {
        for inPlace in [false, true] {
            let mine = Buffer(values(rank, count, 8))
            let everyone = Buffer((0..<(count * size)).map { inPlace && $0 / max(count, 1) == rank ? value(rank, $0 % max(count, 1), 8) : -1 })
            let send = inPlace ? MPIRuntime.inPlace : mine.input
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.allgather(send, count: count, datatype: .int64, into: everyone.raw, receiveCount: count, receiveDatatype: .int64, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startAllgather(send, count: count, datatype: .int64, into: everyone.raw, receiveCount: count, receiveDatatype: .int64, on: communicator)
            })
            check(everyone.array == (0..<size).flatMap { values($0, count, 8) }, what(inPlace ? "in-place allgather" : "allgather", count))
        }
        // Allgatherv, blocks with gaps; received as a contiguous type of
        // one element per block where the counts allow.
        let counts = counts(count)
        let displacements = gapped(counts)
        let total = (displacements.last ?? 0) + (counts.last ?? 0)
        let mine = Buffer(values(rank, counts[rank], 9))
        let everyone = Buffer<Int64>(repeating: -3, count: total)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.allgather(mine.input, count: counts[rank], datatype: .int64, into: everyone.raw, receiveCounts: counts, displacements: displacements,
                              receiveDatatype: .int64, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startAllgather(mine.input, count: counts[rank], datatype: .int64, into: everyone.raw, receiveCounts: counts, displacements: displacements,
                                   receiveDatatype: .int64, on: communicator)
        })
        var expected = [Int64](repeating: -3, count: total)
        for peer in 0..<size { for index in 0..<counts[peer] { expected[displacements[peer] + index] = value(peer, index, 9) } }
        check(everyone.array == expected, what("allgatherv", count))
    }

    func allToAll(_ count: Int) throws(MPIError) {
        func outgoing(_ from: Int, _ to: Int, _ count: Int) -> [Int64] { (0..<count).map { value(from * 100 + to, $0, 10) } }
        for inPlace in [false, true] {
            let send = Buffer((0..<size).flatMap { outgoing(rank, $0, count) })
            let receive = Buffer(inPlace ? send.array : Array(repeating: -1, count: count * size))
            let input = inPlace ? MPIRuntime.inPlace : send.input
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.allToAll(input, count: count, datatype: .int64, into: receive.raw, receiveCount: count, receiveDatatype: .int64, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startAllToAll(input, count: count, datatype: .int64, into: receive.raw, receiveCount: count, receiveDatatype: .int64, on: communicator)
            })
            check(receive.array == (0..<size).flatMap { outgoing($0, rank, count) }, what(inPlace ? "in-place all-to-all" : "all-to-all", count))
        }
        // All-to-allv: rank i sends (count + i + j) % 3 + count elements to j.
        func amount(_ from: Int, _ to: Int) -> Int { count == 0 ? 0 : count + (from + to) % 3 }
        let sendCounts = (0..<size).map { amount(rank, $0) }
        let receiveCounts = (0..<size).map { amount($0, rank) }
        let sendDisplacements = gapped(sendCounts)
        let receiveDisplacements = gapped(receiveCounts)
        var source = [Int64](repeating: -7, count: (sendDisplacements.last ?? 0) + (sendCounts.last ?? 0))
        for peer in 0..<size { for (index, element) in outgoing(rank, peer, sendCounts[peer]).enumerated() { source[sendDisplacements[peer] + index] = element } }
        let send = Buffer(source)
        let receiveTotal = (receiveDisplacements.last ?? 0) + (receiveCounts.last ?? 0)
        let receive = Buffer<Int64>(repeating: -8, count: receiveTotal)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.allToAll(send.input, sendCounts: sendCounts, sendDisplacements: sendDisplacements, datatype: .int64,
                             into: receive.raw, receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements, receiveDatatype: .int64, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startAllToAll(send.input, sendCounts: sendCounts, sendDisplacements: sendDisplacements, datatype: .int64,
                                  into: receive.raw, receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements, receiveDatatype: .int64, on: communicator)
        })
        var expected = [Int64](repeating: -8, count: receiveTotal)
        for peer in 0..<size { for (index, element) in outgoing(peer, rank, receiveCounts[peer]).enumerated() { expected[receiveDisplacements[peer] + index] = element } }
        check(receive.array == expected, what("all-to-allv", count))
        // All-to-allw: sent as int64 elements, received as one contiguous
        // element per block (another datatype, the same signature), at
        // byte displacements.
        let blockTypes = try (0..<size).map { (peer) throws(MPIError) -> Datatype in
            let type = try Datatype.contiguous(receiveCounts[peer], of: .int64)
            try type.commit()
            return type
        }
        let receiveW = Buffer<Int64>(repeating: -8, count: receiveTotal)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.allToAll(send.input, sendCounts: sendCounts, sendByteDisplacements: sendDisplacements.map { $0 * 8 }, sendDatatypes: Array(repeating: .int64, count: size),
                             into: receiveW.raw, receiveCounts: Array(repeating: 1, count: size), receiveByteDisplacements: receiveDisplacements.map { $0 * 8 },
                             receiveDatatypes: blockTypes, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startAllToAll(send.input, sendCounts: sendCounts, sendByteDisplacements: sendDisplacements.map { $0 * 8 }, sendDatatypes: Array(repeating: .int64, count: size),
                                  into: receiveW.raw, receiveCounts: Array(repeating: 1, count: size), receiveByteDisplacements: receiveDisplacements.map { $0 * 8 },
                                  receiveDatatypes: blockTypes, on: communicator)
        })
        check(receiveW.array == expected, what("all-to-allw", count))
        for type in blockTypes { try type.free() }
    }
}
