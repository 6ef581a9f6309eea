import MPI
import RankCheck

/// Reduce, allreduce, reduce-scatter (v and block), scan and exclusive
/// scan, with built-in operations, MINLOC, and a non-commutative user
/// operation whose result shows the order the ranks were combined in.
struct ReductionChecks {
    let mpi: MPIRuntime
    let mode: Mode
    let communicator: Communicator
    /// 2x2 matrices of int64, and their product in order.
    let matrices: Datatype
    let product: ReductionOperation
    var rank: Int { communicator.rank }
    var size: Int { communicator.size }

    init(mpi: MPIRuntime, mode: Mode, communicator: Communicator) throws(MPIError) {
        self.mpi = mpi
        self.mode = mode
        self.communicator = communicator
        matrices = try Datatype.contiguous(4, of: .int64)
        try matrices.commit()
        product = ReductionOperation.user(commutative: false) { input, output, count, _ in
            for element in 0..<count {
                let a = (0..<4).map { input.load(fromByteOffset: (element * 4 + $0) * 8, as: Int64.self) }
                let b = (0..<4).map { output.load(fromByteOffset: (element * 4 + $0) * 8, as: Int64.self) }
                for (offset, entry) in multiply(a, b).enumerated() { output.storeBytes(of: entry, toByteOffset: (element * 4 + offset) * 8, as: Int64.self) }
            }
        }
    }

    func what(_ operation: String, _ count: Int) -> String { "\(mode) \(operation) of \(count) on \(size) ranks" }

    func sums(_ ranks: Range<Int>, _ count: Int, _ salt: Int) -> [Int64] {
        (0..<count).map { index in ranks.reduce(Int64(0)) { $0 &+ value($1, index, salt) } }
    }

    /// Matrices 0 ... r multiplied in rank order, element by element.
    func products(_ ranks: Range<Int>, _ count: Int) -> [Int64] {
        (0..<count).flatMap { element in ranks.dropFirst().reduce(matrix(ranks.lowerBound, element)) { multiply($0, matrix($1, element)) } }
    }

    func matrixInput(_ count: Int) -> Buffer<Int64> { Buffer((0..<count).flatMap { matrix(rank, $0) }) }

    func reduce(_ count: Int) throws(MPIError) {
        for root in Set([0, size - 1, size / 2]).sorted() {
            for inPlace in [false, true] {
                let mine = Buffer(values(rank, count, 11))
                let result = Buffer(inPlace && rank == root ? values(rank, count, 11) : Array(repeating: 0, count: count))
                let send = inPlace && rank == root ? MPIRuntime.inPlace : mine.input
                try mpi.run(mode, { () throws(MPIError) in
                    try mpi.reduce(send, into: result.raw, count: count, datatype: .int64, operation: .sum, root: root, on: communicator)
                }, { () throws(MPIError) in
                    try mpi.startReduce(send, into: result.raw, count: count, datatype: .int64, operation: .sum, root: root, on: communicator)
                })
                if rank == root { check(result.array == sums(0..<size, count, 11), what(inPlace ? "in-place reduce sum to \(root)" : "reduce sum to \(root)", count)) }
            }
            let few = min(count, 40)
            let mine = matrixInput(few)
            let result = Buffer<Int64>(repeating: 0, count: 4 * few)
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.reduce(mine.input, into: result.raw, count: few, datatype: matrices, operation: product, root: root, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startReduce(mine.input, into: result.raw, count: few, datatype: matrices, operation: product, root: root, on: communicator)
            })
            if rank == root { check(result.array == products(0..<size, few), what("ordered matrix-product reduce to \(root)", few)) }
        }
    }

    func allreduce(_ count: Int) throws(MPIError) {
        for inPlace in [false, true] {
            let mine = Buffer(values(rank, count, 12))
            let result = Buffer(inPlace ? values(rank, count, 12) : Array(repeating: 0, count: count))
            let send = inPlace ? MPIRuntime.inPlace : mine.input
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.allreduce(send, into: result.raw, count: count, datatype: .int64, operation: .sum, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startAllreduce(send, into: result.raw, count: count, datatype: .int64, operation: .sum, on: communicator)
            })
            check(result.array == sums(0..<size, count, 12), what(inPlace ? "in-place allreduce sum" : "allreduce sum", count))
        }
        let doubles = Buffer(values(rank, count, 13).map { Double($0) * (rank % 2 == 0 ? 1 : -1) })
        let maximums = Buffer<Double>(repeating: 0, count: count)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.allreduce(doubles.input, into: maximums.raw, count: count, datatype: .double, operation: .maximum, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startAllreduce(doubles.input, into: maximums.raw, count: count, datatype: .double, operation: .maximum, on: communicator)
        })
        let expected = (0..<count).map { index in (0..<size).map { Double(value($0, index, 13)) * ($0 % 2 == 0 ? 1 : -1) }.max()! }
        check(maximums.array == expected, what("allreduce max of doubles", count))
        let few = min(count, 40)
        let mine = matrixInput(few)
        let result = Buffer<Int64>(repeating: 0, count: 4 * few)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.allreduce(mine.input, into: result.raw, count: few, datatype: matrices, operation: product, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startAllreduce(mine.input, into: result.raw, count: few, datatype: matrices, operation: product, on: communicator)
        })
        check(result.array == products(0..<size, few), what("ordered matrix-product allreduce", few))
        // MINLOC on (double, int) pairs: the smallest value, lowest index on ties.
        struct Pair: Equatable { var value: Double; var index: Int32 }
        let pairs = Buffer((0..<few).map { Pair(value: Double(($0 + rank) % 3), index: Int32(rank)) })
        let located = Buffer(Array(repeating: Pair(value: -1, index: -1), count: few))
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.allreduce(pairs.input, into: located.raw, count: few, datatype: .doubleInt, operation: .minimumLocation, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startAllreduce(pairs.input, into: located.raw, count: few, datatype: .doubleInt, operation: .minimumLocation, on: communicator)
        })
        let best = (0..<few).map { index in
            let winner = (0..<size).min { (Double((index + $0) % 3), $0) < (Double((index + $1) % 3), $1) }!
            return Pair(value: Double((index + winner) % 3), index: Int32(winner))
        }
        check(located.array == best, what("allreduce MINLOC", few))
    }

    func reduceScatter(_ count: Int) throws(MPIError) {
        let counts = (0..<size).map { count == 0 ? 0 : max(0, count + $0 % 3 - 1) }
        let total = counts.reduce(0, +)
        let start = counts[..<rank].reduce(0, +)
        let everything = sums(0..<size, total, 14)
        for inPlace in [false, true] {
            let mine = Buffer(values(rank, total, 14))
            let result = Buffer(inPlace ? values(rank, total, 14) : Array(repeating: 0, count: counts[rank]))
            let send = inPlace ? MPIRuntime.inPlace : mine.input
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.reduceScatter(send, into: result.raw, receiveCounts: counts, datatype: .int64, operation: .sum, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startReduceScatter(send, into: result.raw, receiveCounts: counts, datatype: .int64, operation: .sum, on: communicator)
            })
            check(Array(result.array[0..<counts[rank]]) == Array(everything[start..<(start + counts[rank])]), what(inPlace ? "in-place reduce-scatter" : "reduce-scatter", count))
        }
        // Block form, with the ordered product.
        let few = min(count, 20)
        let mine = Buffer((0..<(few * size)).flatMap { matrix(rank, $0) })
        let result = Buffer<Int64>(repeating: 0, count: 4 * few)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.reduceScatterBlock(mine.input, into: result.raw, receiveCount: few, datatype: matrices, operation: product, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startReduceScatterBlock(mine.input, into: result.raw, receiveCount: few, datatype: matrices, operation: product, on: communicator)
        })
        let expected = (0..<few).flatMap { element in
            (1..<size).reduce(matrix(0, rank * few + element)) { multiply($0, matrix($1, rank * few + element)) }
        }
        check(result.array == expected, what("ordered matrix-product reduce-scatter-block", few))
    }

    func scans(_ count: Int) throws(MPIError) {
        for inPlace in [false, true] {
            let mine = Buffer(values(rank, count, 15))
            let result = Buffer(inPlace ? values(rank, count, 15) : Array(repeating: -1, count: count))
            let send = inPlace ? MPIRuntime.inPlace : mine.input
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.scan(send, into: result.raw, count: count, datatype: .int64, operation: .sum, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startScan(send, into: result.raw, count: count, datatype: .int64, operation: .sum, on: communicator)
            })
            check(result.array == sums(0..<(rank + 1), count, 15), what(inPlace ? "in-place scan" : "scan", count))
            let exclusive = Buffer(inPlace ? values(rank, count, 15) : Array(repeating: -1, count: count))
            try mpi.run(mode, { () throws(MPIError) in
                try mpi.exclusiveScan(send, into: exclusive.raw, count: count, datatype: .int64, operation: .sum, on: communicator)
            }, { () throws(MPIError) in
                try mpi.startExclusiveScan(send, into: exclusive.raw, count: count, datatype: .int64, operation: .sum, on: communicator)
            })
            // Rank 0's result is left as it was.
            let untouched = inPlace ? values(rank, count, 15) : Array(repeating: -1, count: count)
            check(exclusive.array == (rank == 0 ? untouched : sums(0..<rank, count, 15)), what(inPlace ? "in-place exclusive scan" : "exclusive scan", count))
        }
        let few = min(count, 40)
        let mine = matrixInput(few)
        let result = Buffer<Int64>(repeating: 0, count: 4 * few)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.scan(mine.input, into: result.raw, count: few, datatype: matrices, operation: product, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startScan(mine.input, into: result.raw, count: few, datatype: matrices, operation: product, on: communicator)
        })
        check(result.array == products(0..<(rank + 1), few), what("ordered matrix-product scan", few))
        let exclusive = Buffer<Int64>(repeating: 0, count: 4 * few)
        try mpi.run(mode, { () throws(MPIError) in
            try mpi.exclusiveScan(mine.input, into: exclusive.raw, count: few, datatype: matrices, operation: product, on: communicator)
        }, { () throws(MPIError) in
            try mpi.startExclusiveScan(mine.input, into: exclusive.raw, count: few, datatype: matrices, operation: product, on: communicator)
        })
        if rank > 0 { check(exclusive.array == products(0..<rank, few), what("ordered matrix-product exclusive scan", few)) }
    }
}
