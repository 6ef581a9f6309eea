import Histogram

/// Many timings of one thing (per-iteration round trips, connect times),
/// kept as an HDR histogram of nanoseconds and reported in microseconds.
///
/// Its memory is allocated once, when it is made: recording is a few
/// instructions and never allocates, so a timed loop may record into it
/// (fabric-perf's allocation count of that loop stays 0). Three
/// significant digits: a reported value is within 0.1 % of a recorded one.
struct LatencyHistogram {
    private var histogram: Histogram<UInt64>
    /// What each recorded value is divided by when reported: 2 turns round
    /// trips into one-way latencies.
    private var divisor: Double = 1
    /// Values beyond the histogram's range, which it cannot hold.
    private(set) var outOfRange = 0

    /// Timings up to an hour; a value beyond that is counted in `outOfRange`.
    init() {
        histogram = Histogram(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    }

    @inline(__always)
    mutating func record(nanoseconds: UInt64) {
        if !histogram.record(nanoseconds) { outOfRange += 1 }
    }

    mutating func record(_ duration: Duration) {
        record(nanoseconds: duration.wholeNanoseconds)
    }

    /// The same timings, each reported as half of itself (a round trip as
    /// one way).
    func halved() -> LatencyHistogram {
        var copy = self
        copy.divisor *= 2
        return copy
    }

    /// Adds `other`'s timings; both must report with the same divisor.
    mutating func add(_ other: LatencyHistogram) {
        precondition(divisor == other.divisor, "merging a one-way histogram with a round-trip one")
        histogram.add(other.histogram)
        outOfRange += other.outOfRange
    }

    var count: Int { Int(histogram.totalCount) }
}

extension LatencyHistogram: Distribution {
    var isEmpty: Bool { histogram.totalCount == 0 }

    /// In microseconds; the highest value of the bucket the percentile falls in.
    func percentile(_ p: Double) -> Double {
        guard !isEmpty else { return .nan }
        return microseconds(histogram.valueAtPercentile(p))
    }

    /// Exact: the histogram keeps the smallest and largest value recorded.
    var minimum: Double { isEmpty ? .nan : microseconds(histogram.min) }
    var maximum: Double { isEmpty ? .nan : microseconds(histogram.maxRecorded) }

    private func microseconds(_ nanoseconds: UInt64) -> Double {
        Double(nanoseconds) / 1000 / divisor
    }
}
