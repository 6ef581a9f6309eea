import Benchmark
import Fabric
import Foundation

// The tcp fabric's data path and registration, in one process over
// 127.0.0.1: both ends are driven from the benchmark's thread, so a round
// trip is the whole cost of both sides with no scheduler in between.
//
// Each data-path iteration runs 1000 operations (scalingFactor .kilo): the
// allocation gate (Thresholds/, checked by scripts/bench-gates.sh) allows
// 0 allocations in an iteration, so an operation that allocates even once
// in a thousand fails it.

let benchmarks: @Sendable () -> Void = {
    let dataPathMetrics: [BenchmarkMetric] = [.wallClock, .mallocCountTotal, .instructions]
    // What `thresholds check` compares: only the allocation count, which
    // must equal the stored 0 (timings are reported, not gated).
    let allocationGate: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: BenchmarkThresholds(relative: [.p90: 0], absolute: [.p90: 0])
    ]
    Benchmark.defaultConfiguration = .init(
        metrics: dataPathMetrics, timeUnits: .nanoseconds, warmupIterations: 3,
        scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 200, thresholds: allocationGate)

    // Nothing measured: what the harness itself allocates per iteration.
    Benchmark("harness-alone", configuration: .init(metrics: dataPathMetrics, scalingFactor: .kilo, thresholds: [:])) { benchmark in
        for i in benchmark.scaledIterations { blackHole(i) }
    }

    Benchmark("send-recv-8B-round-trip") { benchmark in
        let pair = LoopbackPair.shared
        for _ in benchmark.scaledIterations { pair.sendRoundTrip() }
    }

    Benchmark("write-64KiB") { benchmark in
        let pair = LoopbackPair.shared
        for _ in benchmark.scaledIterations { pair.write(bytes: 64 << 10) }
    }

    Benchmark("empty-completion-queue-poll") { benchmark in
        let pair = LoopbackPair.shared
        for _ in benchmark.scaledIterations { blackHole(pair.pollEmpty()) }
    }

    // Registration allocates (a region is an object): reported, not gated.
    Benchmark(
        "register-deregister-1MiB",
        configuration: .init(metrics: dataPathMetrics, scalingFactor: .one, maxIterations: 200, thresholds: [:])
    ) { benchmark in
        let pair = LoopbackPair.shared
        for _ in benchmark.scaledIterations { pair.registerAndDeregister(bytes: 1 << 20) }
    }

}
