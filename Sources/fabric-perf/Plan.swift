/// What fabric-perf can measure, and how much of each.
enum PerfTest: String, CaseIterable, Codable {
    case latencySend = "lat-send"
    case latencyWrite = "lat-write"
    /// A WRITE and the wait for its completion (the peer's acknowledgement):
    /// what a one-sided put followed by a flush costs.
    case latencyWriteCompletion = "lat-write-rt"
    case latencyRead = "lat-read"
    case latencyFetchAdd = "lat-fadd"
    case latencyCompareSwap = "lat-cas"
    case latencyReadPassive = "lat-read-passive"
    case latencyFetchAddPassive = "lat-fadd-passive"
    case bandwidthWrite = "bw-write"
    case bandwidthRead = "bw-read"
    case bandwidthSend = "bw-send"
    case rateSend = "rate-send"

    var isLatency: Bool { rawValue.hasPrefix("lat-") }
    var isRate: Bool { self == .rateSend }

    /// One-sided tests whose target does not call the library at all.
    var passiveTarget: Bool { self == .latencyReadPassive || self == .latencyFetchAddPassive }

    /// Round trips for READ and atomics (they are round trips by nature);
    /// one way for send and write ping-pongs.
    var metric: String {
        switch self {
        case .latencySend, .latencyWrite: return "one-way"
        case .latencyRead, .latencyWriteCompletion, .latencyFetchAdd, .latencyCompareSwap, .latencyReadPassive, .latencyFetchAddPassive: return "round-trip"
        default: return "throughput"
        }
    }

    var unit: String { isLatency ? "us" : (isRate ? "Mmsg/s" : "MB/s") }

    /// Atomics move 8 bytes whatever size was asked.
    func effectiveSize(_ size: Int) -> Int {
        switch self {
        case .latencyFetchAdd, .latencyCompareSwap, .latencyFetchAddPassive: return 8
        case .rateSend: return 8
        default: return size
        }
    }

    /// Messages each of `pairs` queue pairs carries per repetition: the
    /// single pair's count shared out, so that a repetition takes about as
    /// long with many pairs as with one.
    func countPerPair(for size: Int, scale: Double, pairs: Int) -> Int {
        let total = count(for: size, scale: scale)
        return max(4, (total + pairs - 1) / pairs)
    }

    /// Iterations (latency) or messages (bandwidth) per repetition.
    func count(for size: Int, scale: Double) -> Int {
        let base: Int
        if isLatency {
            switch size {
            case ..<4096: base = 2000
            case ..<65537: base = 600
            case ..<(1 << 20 + 1): base = 100
            default: base = 20
            }
        } else if isRate {
            base = 200_000
        } else {
            base = max(16, min(4000, (192 << 20) / max(size, 1)))
        }
        return max(4, Int(Double(base) * scale))
    }
}

struct PerfPlan {
    var tests: [PerfTest]
    var sizes: [Int]
    var repetitions: Int
    var modes: [String]
    var scale: Double
    var raw: Bool
    /// Queue pairs at once for the bandwidth and message-rate tests, each
    /// count measured on its own (`--queue-pairs 1,4`).
    var queuePairs: [Int]
    /// Requests per post call in the bandwidth and message-rate tests, each
    /// length measured on its own (`--post-list 1,16`).
    var postLists: [Int]

    /// What `--post-list` accepts: at most a window (fabric-perf keeps at
    /// most 128 requests in flight per queue pair).
    static let postListRange = 1...128

    /// What `--queue-pairs` accepts. Every count N above one costs N queue
    /// pairs and N raw connections on each side, all set up before the
    /// first test.
    static let queuePairRange = 1...64

    /// The sizes `test` runs at: the atomics and the message-rate test
    /// move 8 bytes whatever was asked.
    func sizes(for test: PerfTest) -> [Int] {
        switch test {
        case .latencyFetchAdd, .latencyCompareSwap, .latencyFetchAddPassive, .rateSend: return [8]
        default: return sizes
        }
    }

    /// How a test's requests are spread and posted: over how many queue
    /// pairs, and how many per post call.
    struct Load: Hashable {
        var queuePairs: Int
        var postList: Int
    }

    /// Every load `test` runs with: each queue-pair count with each list
    /// length; one queue pair posting one at a time for a latency test.
    func loads(for test: PerfTest) -> [Load] {
        if test.isLatency { return [Load(queuePairs: 1, postList: 1)] }
        return queuePairs.flatMap { pairs in postLists.map { Load(queuePairs: pairs, postList: $0) } }
    }

    /// The groups of more than one queue pair the plan needs set up.
    var groupSizes: [Int] { queuePairs.filter { $0 > 1 } }
}
