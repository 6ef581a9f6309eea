import ArgumentParser
import Fabric
@_spi(FabricInternals) import FabricTCP
import Foundation

/// What a report line says about a set of measured values.
protocol Distribution {
    var isEmpty: Bool { get }
    func percentile(_ p: Double) -> Double
    var minimum: Double { get }
    var maximum: Double { get }
}

extension Distribution {
    var median: Double { percentile(50) }
}

/// A handful of figures (one per repetition: a bandwidth, a CPU share, a
/// registration time), kept whole so that their median and percentiles are
/// exact. Many timings of one thing go in a `LatencyHistogram` instead.
struct Samples: Distribution {
    private(set) var values: [Double]

    init(_ values: [Double] = []) { self.values = values }

    mutating func append(_ value: Double) { values.append(value) }

    var isEmpty: Bool { values.isEmpty }

    /// Interpolated between the two nearest values.
    func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = p / 100 * Double(sorted.count - 1)
        let lower = Int(rank.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        let fraction = rank - Double(lower)
        return sorted[lower] * (1 - fraction) + sorted[upper] * fraction
    }

    var minimum: Double { values.min() ?? .nan }
    var maximum: Double { values.max() ?? .nan }
}

/// What one repetition of a test measured.
enum RepetitionResult {
    /// Every iteration's time (the latency tests).
    case timings(LatencyHistogram)
    /// One figure or a few (bandwidth, message rate, CPU share).
    case figures(Samples)
}

/// One line of the report: one test, size, backend and mode.
struct Measurement: Codable {
    var test: String
    var backend: String
    var mode: String
    var size: Int
    /// "us" (latency), "MB/s" (bandwidth, 1e6 B/s), "Mmsg/s" (message rate).
    var unit: String
    /// What the latency means: "one-way" (round trip / 2) or "round-trip".
    var metric: String
    var median: Double
    var p10: Double
    var p90: Double
    var p99: Double
    var minimum: Double
    var maximum: Double
    var repetitions: Int
    /// The median of each repetition, in run order.
    var repetitionMedians: [Double]
    /// (max - min) / median of the repetition medians, in percent.
    var spreadPercent: Double
    /// Heap allocations per operation in the timed loop (nil: not counted).
    var allocationsPerOperation: Double?
    /// Queue pairs (raw: connections) the test ran over at once.
    var queuePairs = 1
    /// Requests per post call on the fabric side (the raw reference sends
    /// each message on its own).
    var postList = 1
    /// Socket system calls per message in the timed loop, on each side
    /// (SocketCalls.swift says what is counted; nil: not counted).
    var callsPerMessageClient: Double?
    var callsPerMessageServer: Double?
    /// This measurement's median over the raw-TCP reference's (same test,
    /// size and mode); for bandwidth and rate, higher is better.
    var ratioToRaw: Double?
    /// On an emulated link (FABRIC_TCP_LINK): what was configured, and
    /// what this measurement achieved against it.
    var link: LinkFigures?

    /// Figures over all repetitions; the spread is that of the repetitions'
    /// medians. Timings of all repetitions are merged into one histogram;
    /// figures are pooled.
    init(test: String, backend: String, mode: String, size: Int, unit: String, metric: String, perRepetition: [RepetitionResult], allocationsPerOperation: Double?) {
        var timings: LatencyHistogram?
        var figures = Samples()
        var repetitionMedians: [Double] = []
        for repetition in perRepetition {
            switch repetition {
            case .timings(let histogram):
                if timings == nil { timings = histogram } else { timings!.add(histogram) }
                repetitionMedians.append(histogram.median)
            case .figures(let samples):
                for value in samples.values { figures.append(value) }
                repetitionMedians.append(samples.median)
            }
        }
        // A test's repetitions are all timings or all figures.
        let all: any Distribution = timings ?? figures
        self.test = test
        self.backend = backend
        self.mode = mode
        self.size = size
        self.unit = unit
        self.metric = metric
        median = all.median
        p10 = all.percentile(10)
        p90 = all.percentile(90)
        p99 = all.percentile(99)
        minimum = all.minimum
        maximum = all.maximum
        repetitions = perRepetition.count
        self.repetitionMedians = repetitionMedians
        var medians = Samples()
        for value in repetitionMedians { medians.append(value) }
        spreadPercent = (medians.maximum - medians.minimum) / medians.median * 100
        self.allocationsPerOperation = allocationsPerOperation
    }
}

func formatSize(_ size: Int) -> String {
    if size >= 1 << 20 && size % (1 << 20) == 0 { return "\(size >> 20)MiB" }
    if size >= 1 << 10 && size % (1 << 10) == 0 { return "\(size >> 10)KiB" }
    return "\(size)B"
}

/// Parses a comma-separated list of sizes, each from 1 B to `maximum`
/// (named `maximumText` in the error).
func parseSizeList(_ text: String, maximum: Int, maximumText: String) throws -> [Int] {
    var result: [Int] = []
    for item in text.split(separator: ",") {
        guard let size = ByteCount.parse(item), size >= 1, size <= maximum else {
            throw ValidationError("size '\(item)' is not a size from 1 B to \(maximumText)")
        }
        result.append(size)
    }
    return result
}

/// A measurement on a shaped link beside the link's settings: bandwidth as
/// a fraction of the configured rate; latency as the time added over the
/// raw-TCP reference (unshaped) against what the link adds to this metric
/// (its latency once one way, twice for a round trip, plus the message's
/// time at the link's rate, less any burst allowance). The added figure also
/// holds the backend's own overhead over raw TCP; scripts/bench-shaping.sh
/// measures it against the unshaped backend instead.
struct LinkFigures: Codable {
    var configured: String
    var configuredRateMBps: Double?
    var configuredLatencyMicroseconds: Double
    var achievedRateFraction: Double?
    var addedOverRawMicroseconds: Double?
    var expectedAddedMicroseconds: Double?
    /// In blocking mode: the median of raw timerfd sleeps of the link's
    /// latency, taken in this run. A sleeper waits for a held frame as such
    /// a sleep waits, so the added latency's goal is the link's latency plus
    /// this one wake-up (docs/benchmarks.md).
    var timerSleepMicroseconds: Double?
    /// The blocking-mode goal: `expectedAddedMicroseconds` plus one such
    /// wake-up each way the message crosses.
    var blockingGoalMicroseconds: Double?

    init(link: LinkShape, measurement: Measurement, raw: Measurement?) {
        configured = link.description
        configuredRateMBps = link.bitsPerSecond.map { $0 / 8 / 1e6 }
        configuredLatencyMicroseconds = link.latency.inMicroseconds
        if measurement.unit == "MB/s", let rate = configuredRateMBps {
            achievedRateFraction = measurement.median / rate
        }
        if measurement.unit == "us" {
            // The latency once each way the message crosses, and the time
            // its bytes take at the link's rate (MB/s is bytes per us).
            let serialization = configuredRateMBps.map { Double(measurement.size) / $0 } ?? 0
            let crossings: Double = measurement.metric == "round-trip" ? 2 : 1
            let expected = configuredLatencyMicroseconds * crossings + serialization
            expectedAddedMicroseconds = expected
            if let raw { addedOverRawMicroseconds = measurement.median - raw.median }
            if measurement.mode == "block" && link.latency > .zero, let timer = Self.medianTimerSleep(link.latency.wholeNanoseconds) {
                timerSleepMicroseconds = timer
                blockingGoalMicroseconds = expected + crossings * timer
            }
        }
    }

    /// The median of timerfd sleeps of `nanoseconds`, in microseconds: 500
    /// of them, fewer for a long latency (about a second's worth, at least 20).
    private static func medianTimerSleep(_ nanoseconds: UInt64) -> Double? {
        let count = max(20, min(500, Int(1_000_000_000 / max(nanoseconds, 1))))
        guard let durations = TimerWakeUp.measure(sleeping: nanoseconds, count: count) else { return nil }
        return Samples(durations.map { Double($0) / 1000 }).median
    }

    /// One cell of the table.
    var summary: String {
        if let fraction = achievedRateFraction, let rate = configuredRateMBps {
            return String(format: "%.1f%% of %.0f MB/s", fraction * 100, rate)
        }
        if let expected = expectedAddedMicroseconds {
            let added = addedOverRawMicroseconds.map { String(format: "+%.2f", $0) } ?? "?"
            var timer = ""
            if let sleep = timerSleepMicroseconds, let goal = blockingGoalMicroseconds {
                timer = String(format: "; timerfd sleep of it %.2f, goal <= +%.2f", sleep, goal)
            }
            return "\(added) us over raw (link +\(String(format: "%.2f", expected))\(timer))"
        }
        return ""
    }
}
