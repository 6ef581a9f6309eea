import Foundation

/// The benchmarks mpibench runs.
enum BenchTest: String, CaseIterable, Codable {
    case latency
    case bw
    /// bw with a vector datatype on both sides: 4 KiB blocks, 4 KiB gaps.
    case bwVector = "bw_vector"
    case bibw
    /// Rank 0 alone: packing and unpacking `size` bytes of bw_vector's
    /// vector, beside memcpy of as many contiguous bytes.
    case pack, unpack, memcpy
    case mbwMR = "mbw_mr"
    case ring
    case allPairs = "allpairs"
    /// Collectives on every rank, each operation timed (CollectiveLoops.swift).
    case barrier, allreduce, bcast, alltoall
    /// One-sided, rank 0 on rank 1's window under a shared lock
    /// (WindowLoops.swift): put or get then flush (latency); 64 puts or
    /// gets then a flush (bandwidth); accumulate of doubles (sum) then
    /// flush; fetch-and-op (int64 sum) and compare-and-swap, each waited for.
    case putLatency = "put_lat", getLatency = "get_lat", putBandwidth = "put_bw", getBandwidth = "get_bw"
    case accumulateLatency = "acc_lat", accumulateBandwidth = "acc_bw", fetchAndOpLatency = "fop_lat", compareAndSwapLatency = "cas_lat"

    var isCollective: Bool { [.barrier, .allreduce, .bcast, .alltoall].contains(self) }
    var isOneSided: Bool {
        [.putLatency, .getLatency, .putBandwidth, .getBandwidth, .accumulateLatency, .accumulateBandwidth, .fetchAndOpLatency, .compareAndSwapLatency].contains(self)
    }

    /// OSU's iteration counts (fewer for large messages), scaled.
    func iterations(size: Int, scale: Double) -> (iterations: Int, warmup: Int) {
        let base: Int
        switch self {
        case .latency, .ring, .allPairs, .barrier, .allreduce, .bcast, .alltoall, .putLatency, .getLatency, .accumulateLatency, .fetchAndOpLatency,
             .compareAndSwapLatency:
            base = size <= 8192 ? 10000 : size <= (256 << 10) ? 1000 : 100
        case .bw, .bwVector, .bibw, .mbwMR, .putBandwidth, .getBandwidth, .accumulateBandwidth: base = size <= 8192 ? 100 : 20
        case .pack, .unpack, .memcpy: base = size <= 8192 ? 100_000 : 1000
        }
        let iterations = max(1, Int(Double(base) * scale))
        return (iterations, max(1, iterations / 10))
    }

    var unit: String {
        switch self {
        case .latency: return "us one-way"
        case .putLatency, .getLatency, .accumulateLatency, .fetchAndOpLatency, .compareAndSwapLatency: return "us per op"
        case .bw, .bwVector, .bibw, .pack, .unpack, .memcpy, .putBandwidth, .getBandwidth, .accumulateBandwidth: return "MB/s"
        case .mbwMR, .ring, .allPairs: return "msg/s"
        case .barrier, .allreduce, .bcast, .alltoall: return "us per op"
        }
    }
}

struct RowKey: Hashable {
    var test: BenchTest
    var size: Int
}

/// One repetition of one row, from every rank's numbers
/// (seconds, messages, allocations, copied bytes, p99 step ns).
struct Sample {
    var value: Double
    var copiedPerMessage: Double
    var allocationsPerMessage: Double
    /// Ring and all-pairs: the slowest rank's 99th-percentile step, µs.
    var p99Microseconds: Double?

    init(test: BenchTest, size: Int, window: Int, ranks: [[Double]]) {
        let seconds = ranks.map { $0[0] }
        let messages = ranks.map { $0[1] }
        let pairs = ranks.count / 2
        var transmitted: Double
        switch test {
        case .latency, .putLatency, .getLatency, .accumulateLatency, .fetchAndOpLatency, .compareAndSwapLatency:
            value = seconds[0] / max(1, messages[0]) * 1e6
            transmitted = messages[0]
        case .putBandwidth, .getBandwidth, .accumulateBandwidth:
            value = messages[0] * Double(size) / max(seconds[0], 1e-12) / 1e6
            transmitted = messages[0]
        case .bw, .bwVector, .mbwMR:
            let rates = (0..<pairs).map { messages[$0] / max(seconds[$0], 1e-12) }
            value = test == .mbwMR ? rates.reduce(0, +) : rates.reduce(0, +) * Double(size) / 1e6
            transmitted = (0..<pairs).map { messages[$0] }.reduce(0, +)
        case .bibw, .pack, .unpack, .memcpy:
            value = messages[0] * Double(size) / max(seconds[0], 1e-12) / 1e6
            transmitted = messages[0]
        case .ring, .allPairs:
            value = (0..<ranks.count).map { messages[$0] / max(seconds[$0], 1e-12) }.reduce(0, +)
            transmitted = messages.reduce(0, +)
        case .barrier, .allreduce, .bcast, .alltoall:
            // The slowest rank's time per operation.
            value = (0..<ranks.count).map { seconds[$0] / max(1, messages[$0]) * 1e6 }.max() ?? 0
            transmitted = messages.reduce(0, +)
        }
        transmitted = max(1, transmitted)
        copiedPerMessage = ranks.map { $0[3] }.reduce(0, +) / transmitted
        allocationsPerMessage = ranks.map { $0[2] }.reduce(0, +) / transmitted
        p99Microseconds = test == .ring || test == .allPairs || test.isCollective ? (ranks.map { $0[4] }.max() ?? 0) / 1000 : nil
    }

    static func percentile(_ values: [UInt64], _ fraction: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))])
    }
}

/// One printed row: medians over the repetitions.
struct Row: Encodable {
    var test: String
    var size: Int
    var unit: String
    var median: Double
    /// (highest - lowest) / median over the repetitions.
    var spread: Double
    var repetitions: Int
    /// Each repetition's figure, in the order they ran (the report tool
    /// pools them across runs).
    var repetitionValues: [Double]
    var copiedBytesPerMessage: Double
    var allocationsPerMessage: Double
    var p99StepMicroseconds: Double?
    var ranks: Int
    var backend: String

    init(key: RowKey, samples: [Sample], ranks: Int, backend: String) {
        test = key.test.rawValue
        size = key.size
        unit = key.test.unit
        let values = samples.map(\.value).sorted()
        median = Self.median(values)
        spread = median > 0 ? ((values.last ?? 0) - (values.first ?? 0)) / median : 0
        repetitions = samples.count
        repetitionValues = samples.map(\.value)
        copiedBytesPerMessage = Self.median(samples.map(\.copiedPerMessage).sorted())
        allocationsPerMessage = Self.median(samples.map(\.allocationsPerMessage).sorted())
        p99StepMicroseconds = samples.first?.p99Microseconds == nil ? nil : Self.median(samples.compactMap(\.p99Microseconds).sorted())
        self.ranks = ranks
        self.backend = backend
    }

    static func median(_ sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    static func table(_ rows: [Row]) -> String {
        var lines = ["test       size        median  unit        spread  copied/msg  alloc/msg  p99 step us"]
        for row in rows {
            lines.append(
                row.test.padding(toLength: 9, withPad: " ", startingAt: 0) + " "
                    + String(row.size).leftPadded(9) + " " + String(format: "%13.2f", row.median) + "  "
                    + row.unit.padding(toLength: 10, withPad: " ", startingAt: 0) + " "
                    + String(format: "%6.1f%%", row.spread * 100) + " " + String(format: "%11.1f", row.copiedBytesPerMessage) + " "
                    + String(format: "%10.3f", row.allocationsPerMessage) + " "
                    + (row.p99StepMicroseconds.map { String(format: "%12.1f", $0) } ?? "           -"))
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
