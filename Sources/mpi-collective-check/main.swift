// A rank for the collective tests: every rank runs barrier, broadcast,
// reduce, allreduce, gather, scatter, allgather and all-to-all from every
// root, at several counts, and checks each result element by element
// against the same computation done serially. Prints "rank R: collectives
// ok ..."; a failed check prints what differed and exits 1.
import Glibc
import MPI
import RankCheck

/// Element i of rank r's contribution.
func value(_ rank: Int, _ index: Int) -> Int64 { Int64(rank * 1000 + index % 997) }

/// 2x2 integer matrices (row-major), multiplied with wrapping: associative,
/// not commutative, so a reduction must combine them in rank order.
func multiply(_ a: [Int64], _ b: [Int64]) -> [Int64] {
    [a[0] &* b[0] &+ a[1] &* b[2], a[0] &* b[1] &+ a[1] &* b[3], a[2] &* b[0] &+ a[3] &* b[2], a[2] &* b[1] &+ a[3] &* b[3]]
}
func matrix(_ rank: Int) -> [Int64] { [Int64(rank + 1), 1, Int64(rank % 3), 1] }

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    let rank = mpi.rank
    let size = mpi.size
    var operations = 0

    for _ in 0..<3 { try mpi.barrier() }
    operations += 1

    for count in [0, 1, 7, 100_000] {
        for root in Set([0, size - 1, size / 2]).sorted() {
            // Broadcast.
            var data = (0..<count).map { rank == root ? value(root, $0) : -1 }
            try data.withUnsafeMutableBytes { try mpi.broadcast($0.baseAddress, count: count, datatype: .int64, root: root) }
            check(data == (0..<count).map { value(root, $0) }, "broadcast of \(count) from \(root)")

            // Reduce (sum, max) and allreduce (sum of doubles, min).
            let mine = (0..<count).map { value(rank, $0) }
            var sums = [Int64](repeating: 0, count: count)
            try mine.withUnsafeBytes { send in
                try sums.withUnsafeMutableBytes { try mpi.reduce(send.baseAddress, into: $0.baseAddress, count: count, datatype: .int64, operation: .sum, root: root) }
            }
            if rank == root {
                check(sums == (0..<count).map { index in (0..<size).reduce(Int64(0)) { $0 + value($1, index) } }, "reduce sum of \(count) to \(root)")
            }
            let doubles = mine.map(Double.init)
            var minimums = [Double](repeating: 0, count: count)
            try doubles.withUnsafeBytes { send in
                try minimums.withUnsafeMutableBytes { try mpi.allreduce(send.baseAddress, into: $0.baseAddress, count: count, datatype: .double, operation: .minimum) }
            }
            check(minimums == (0..<count).map { Double(value(0, $0)) }, "allreduce min of \(count)")

            // Gather, scatter.
            var gathered = [Int64](repeating: -1, count: rank == root ? count * size : 0)
            try mine.withUnsafeBytes { send in
                try gathered.withUnsafeMutableBytes {
                    try mpi.gather(send.baseAddress, count: count, datatype: .int64, into: $0.baseAddress, receiveCount: count, receiveDatatype: .int64, root: root)
                }
            }
            if rank == root { check(gathered == (0..<size).flatMap { r in (0..<count).map { value(r, $0) } }, "gather of \(count) to \(root)") }
            let spread = rank == root ? (0..<size).flatMap { r in (0..<count).map { value(r + 7, $0) } } : []
            var piece = [Int64](repeating: -1, count: count)
            try spread.withUnsafeBytes { send in
                try piece.withUnsafeMutableBytes {
                    try mpi.scatter(send.baseAddress, count: count, datatype: .int64, into: $0.baseAddress, receiveCount: count, receiveDatatype: .int64, root: root)
                }
            }
            check(piece == (0..<count).map { value(rank + 7, $0) }, "scatter of \(count) from \(root)")
            operations += 6
        }
        // Allgather, all-to-all.
        let mine = (0..<count).map { value(rank, $0) }
        var everyone = [Int64](repeating: -1, count: count * size)
        try mine.withUnsafeBytes { send in
            try everyone.withUnsafeMutableBytes {
                try mpi.allgather(send.baseAddress, count: count, datatype: .int64, into: $0.baseAddress, receiveCount: count, receiveDatatype: .int64)
            }
        }
        check(everyone == (0..<size).flatMap { r in (0..<count).map { value(r, $0) } }, "allgather of \(count)")
        let outgoing = (0..<size).flatMap { to in (0..<count).map { value(rank * 100 + to, $0) } }
        var incoming = [Int64](repeating: -1, count: count * size)
        try outgoing.withUnsafeBytes { send in
            try incoming.withUnsafeMutableBytes {
                try mpi.allToAll(send.baseAddress, count: count, datatype: .int64, into: $0.baseAddress, receiveCount: count, receiveDatatype: .int64)
            }
        }
        check(incoming == (0..<size).flatMap { from in (0..<count).map { value(from * 100 + rank, $0) } }, "all-to-all of \(count)")
        operations += 2
    }

    // MINLOC on (double, int) pairs: the smallest value, lowest index on ties.
    struct Pair { var value: Double; var index: Int32 }
    let pairs = (0..<5).map { Pair(value: Double(($0 + rank) % 3), index: Int32(rank)) }
    var located = [Pair](repeating: Pair(value: -1, index: -1), count: 5)
    try pairs.withUnsafeBytes { send in
        try located.withUnsafeMutableBytes { try mpi.allreduce(send.baseAddress, into: $0.baseAddress, count: 5, datatype: .doubleInt, operation: .minimumLocation) }
    }
    for index in 0..<5 {
        let candidates = (0..<size).map { (value: Double((index + $0) % 3), rank: $0) }
        let best = candidates.min { ($0.value, $0.rank) < ($1.value, $1.rank) }!
        check(located[index].value == best.value && located[index].index == Int32(best.rank), "minloc \(index): \(located[index])")
    }

    // A non-commutative user operation combines in rank order.
    let matrices = try Datatype.contiguous(4, of: .int64)
    try matrices.commit()
    let product = ReductionOperation.user(commutative: false) { input, output, count, _ in
        for element in 0..<count {
            let a = (0..<4).map { input.load(fromByteOffset: (element * 4 + $0) * 8, as: Int64.self) }
            let b = (0..<4).map { output.load(fromByteOffset: (element * 4 + $0) * 8, as: Int64.self) }
            for (offset, entry) in multiply(a, b).enumerated() { output.storeBytes(of: entry, toByteOffset: (element * 4 + offset) * 8, as: Int64.self) }
        }
    }
    var result = [Int64](repeating: 0, count: 4)
    try matrix(rank).withUnsafeBytes { send in
        try result.withUnsafeMutableBytes { try mpi.allreduce(send.baseAddress, into: $0.baseAddress, count: 1, datatype: matrices, operation: product) }
    }
    let expected = (1..<size).reduce(matrix(0)) { multiply($0, matrix($1)) }
    check(result == expected, "the ordered product is \(result), not \(expected)")

    // A user operation on a type with a gap: only the elements are written.
    let spaced = try Datatype.vector(count: 2, blockLength: 1, stride: 2, of: .int64)
    try spaced.commit()
    let addSpaced = ReductionOperation.user(commutative: true) { input, output, count, _ in
        for element in 0..<count {
            for offset in [element * 24, element * 24 + 16] {
                let sum = input.load(fromByteOffset: offset, as: Int64.self) &+ output.load(fromByteOffset: offset, as: Int64.self)
                output.storeBytes(of: sum, toByteOffset: offset, as: Int64.self)
            }
        }
    }
    var spacedResult: [Int64] = [0, 777, 0]
    try [Int64(rank), -1, Int64(rank * 10)].withUnsafeBytes { send in
        try spacedResult.withUnsafeMutableBytes { try mpi.allreduce(send.baseAddress, into: $0.baseAddress, count: 1, datatype: spaced, operation: addSpaced) }
    }
    let rankSum = Int64((0..<size).reduce(0, +))
    check(spacedResult == [rankSum, 777, rankSum * 10], "a user operation on a spaced type: \(spacedResult)")

    // Bad input: a root outside, an operation on a type it is not defined on.
    do {
        try mpi.broadcast(nil, count: 0, datatype: .int64, root: size)
        fail("a broadcast from root \(size) was accepted")
    } catch {
        check(error.kind == .invalidRank, "root \(size): \(error.message)")
    }
    let flags = UnsafeMutableRawBufferPointer.allocate(byteCount: 2, alignment: 1)
    defer { flags.deallocate() }
    do {
        try mpi.allreduce(flags.baseAddress, into: flags.baseAddress! + 1, count: 1, datatype: .bool, operation: .sum)
        fail("a sum of booleans was accepted")
    } catch {
        check(error.message == "MPI_SUM is not defined on MPI_C_BOOL", "sum of booleans: \(error.message)")
    }
    print("rank \(rank): collectives ok, \(size) ranks, \(operations + 3) operations checked")
    try mpi.finalize()
} catch {
    fail("\(error)")
}
