import ArgumentParser
import Foundation
import MPI

/// OSU-style MPI benchmarks over this project's MPI: start it with mpirun
/// (`mpirun -n 2 mpibench`); rank 0 prints. scripts/bench-mpi.sh runs it
/// beside fabric-perf's raw-TCP reference and the peers' MPIs.
@main
struct MPIBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpibench",
        abstract: "Latency, bandwidth, bidirectional bandwidth, message rate and many-rank exchanges of this MPI, OSU style.",
        discussion: """
            Run under a launcher: `mpirun -n 2 mpibench` (latency, bw, bibw use ranks 0 and 1; mbw_mr pairs rank i with i + n/2; \
            ring, allpairs and the collectives (barrier; allreduce of float sums, bcast from rank 0, alltoall with size bytes per \
            block) use every rank; a collective's row is the slowest rank's time per operation, its p99 the slowest rank's \
            99th-percentile operation). Repetitions are interleaved over the tests and sizes; each row gives the median \
            over repetitions and the spread (lowest to highest repetition, relative to the median), the payload bytes the MPI \
            layer copied per message (copied/msg, both sides summed) and the heap allocations per message of the busiest rank \
            (alloc/msg).
            """)

    @Option(help: "Tests, comma-separated: \(BenchTest.allCases.map(\.rawValue).joined(separator: ", ")).")
    var tests = "latency,bw,bibw,mbw_mr"

    @Option(help: "Message sizes, comma-separated (0 B to 64 MiB; suffixes K, M).")
    var sizes = "1,8,1K,16K,64K,1M,4M"

    @Option(name: .customLong("reps"), help: "Interleaved repetitions (at least 1).")
    var repetitions = 5

    @Option(help: "Scale the iterations per repetition (0.001 to 100).")
    var scale = 1.0

    @Option(help: "Messages in flight per window in bw, bibw and mbw_mr (OSU: 64).")
    var window = 64

    @Option(help: "bw_vector: which side's buffer is the vector (send, receive, both); the other side is contiguous.")
    var vectorSides: VectorSides = .both

    @Option(help: "bw_vector: bytes per block of the vector (gaps as large).")
    var vectorBlock = 4096

    @Flag(help: "Take the buffers from the library's registered memory (allocateMemory) instead of the heap: transfers skip the registration cache.")
    var pool = false

    @Option(help: "One-sided tests: the target rank waits in MPI (polling) or computes without calling MPI (passive).")
    var target: TargetMode = .polling

    @Flag(help: "Print one JSON object per row instead of a table.")
    var json = false

    func validate() throws {
        _ = try testList()
        _ = try sizeList()
        guard repetitions >= 1 else { throw ValidationError("--reps must be at least 1") }
        guard (0.001...100).contains(scale) else { throw ValidationError("--scale must be from 0.001 to 100") }
        guard (1...1024).contains(window) else { throw ValidationError("--window must be from 1 to 1024") }
        guard vectorBlock >= 1 else { throw ValidationError("--vector-block must be at least 1") }
    }

    func testList() throws -> [BenchTest] {
        try tests.split(separator: ",").map { name in
            guard let test = BenchTest(rawValue: String(name)) else {
                throw ValidationError("unknown test '\(name)'; known: \(BenchTest.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return test
        }
    }

    func sizeList() throws -> [Int] {
        try sizes.split(separator: ",").map { text in
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            var multiplier = 1
            var digits = Substring(trimmed)
            if trimmed.hasSuffix("K") { multiplier = 1 << 10; digits = digits.dropLast() }
            if trimmed.hasSuffix("M") { multiplier = 1 << 20; digits = digits.dropLast() }
            guard let value = Int(digits), value >= 0, value * multiplier <= 64 << 20 else {
                throw ValidationError("size '\(text)' is not a size from 0 B to 64 MiB (suffixes K, M)")
            }
            return value * multiplier
        }
    }

    func run() throws {
        let mpi = try MPIRuntime.initialize()
        mpi.errorHandler = .returnErrors
        let chosen = try testList()
        let sizes = try sizeList()
        guard mpi.size >= 2 else { throw ValidationError("mpibench needs at least 2 ranks (mpirun -n 2 mpibench)") }
        // All-to-all's buffers hold a block per rank.
        let largest = (sizes.max() ?? 1) * (chosen.contains(.alltoall) ? mpi.size : 1)
        var loops = try Loops(mpi: mpi, largest: largest, window: window, pool: pool, spreadOut: chosen.contains { [.bwVector, .pack, .unpack, .memcpy].contains($0) })
        let coordination = Coordination(mpi: mpi)
        var samples: [RowKey: [Sample]] = [:]
        for _ in 0..<repetitions {
            for test in chosen {
                for size in sizes {
                    let (iterations, warmup) = test.iterations(size: size, scale: scale)
                    try coordination.barrier()
                    let result: LoopResult
                    switch test {
                    case .latency: result = try loops.latency(size: size, iterations: iterations, warmup: warmup)
                    case .bw, .mbwMR: result = try loops.bandwidth(size: size, iterations: iterations, warmup: warmup)
                    case .pack, .unpack, .memcpy: result = try loops.packing(test, size: size, iterations: iterations, warmup: warmup, block: vectorBlock)
                    case .bwVector: result = try loops.vectorBandwidth(size: size, iterations: iterations, warmup: warmup, sides: vectorSides, block: vectorBlock)
                    case .bibw: result = try loops.bidirectional(size: size, iterations: iterations, warmup: warmup)
                    case .ring: result = try loops.ring(size: size, iterations: iterations, warmup: warmup)
                    case .allPairs: result = try loops.allPairs(size: size, iterations: iterations, warmup: warmup)
                    case .barrier, .allreduce, .bcast, .alltoall: result = try loops.collective(test, size: size, iterations: iterations, warmup: warmup)
                    case .putLatency, .getLatency, .putBandwidth, .getBandwidth, .accumulateLatency, .accumulateBandwidth, .fetchAndOpLatency, .compareAndSwapLatency:
                        result = try loops.oneSided(test, size: size, iterations: iterations, warmup: warmup, passiveTarget: target == .passive)
                    }
                    let p99 = Sample.percentile(result.stepNanoseconds, 0.99)
                    let gathered = try coordination.gather([
                        result.seconds, Double(result.messages), Double(result.allocations), Double(result.copiedBytes), p99,
                    ])
                    if mpi.rank == 0 {
                        samples[RowKey(test: test, size: size), default: []].append(Sample(test: test, size: size, window: window, ranks: gathered))
                    }
                }
            }
        }
        let cache = mpi.registrationCacheStatistics
        let caches = try coordination.gather([cache.hits, cache.misses, cache.invalidations, cache.evictions, cache.uncachedRegistrations].map(Double.init))
        if mpi.rank == 0 {
            let rows = chosen.flatMap { test in sizes.map { RowKey(test: test, size: $0) } }.compactMap { key in
                samples[key].map { Row(key: key, samples: $0, ranks: mpi.size, backend: mpi.backend) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                for row in rows { print(String(decoding: try encoder.encode(row), as: UTF8.self)) }
            } else {
                print("# mpibench: \(mpi.size) ranks, backend \(mpi.backend), eager limit \(mpi.eagerLimit) B, \(repetitions) repetitions, window \(window)"
                    + (chosen.contains(where: \.isOneSided) ? ", one-sided target \(target.rawValue)" : "")
                    + (pool ? ", buffers from allocateMemory (\(mpi.registeredMemoryPages))" : ""))
                print(Row.table(rows))
                let total = caches.reduce(into: [0.0, 0, 0, 0, 0]) { sum, rank in for index in sum.indices { sum[index] += rank[index] } }.map { Int($0) }
                print("# registration cache, all ranks: hits \(total[0]), misses \(total[1]), invalidations \(total[2]), evictions \(total[3]), registered per use \(total[4])")
            }
        }
        loops.release()
        try mpi.finalize()
    }
}
