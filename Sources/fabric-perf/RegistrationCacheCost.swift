import ArgumentParser
import CAllocationCounter
import Fabric
import FabricRegistrationCache
@_spi(InstructionCounting) import FabricSupport
import Foundation
import Glibc

/// What the registration cache costs (docs/registration-cache.md): a hit
/// (acquire and release of a cached buffer), a miss beside a plain
/// registration of the same fresh memory, and the memory monitor's cost on
/// an munmap, of watched memory and of memory nobody watches. Every figure
/// is a median over interleaved repetitions, with the spread of the
/// repetitions' own medians.
struct RegistrationCacheCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regcache",
        abstract: "Cost of the registration cache on the chosen backend: hits, misses against plain registration, the monitor's cost on munmap.")

    @Option(help: "Sizes for misses, comma-separated (suffixes K, M; at most 256 MiB).")
    var sizes = "64K,1M,16M"

    @Option(name: .customLong("reps"), help: "Interleaved repetitions (at least 1).")
    var repetitions = 10

    @Option(help: "Hits timed per repetition.")
    var hits = 100_000

    @Flag(help: "Only run --hits hits once, untimed, for an instruction counter (callgrind): run it with --hits N and with --hits 0 and divide the difference by N. Under valgrind, which lacks userfaultfd, the cache pretends to watch (the hit path is the same).")
    var hitsOnly = false

    func run() throws {
        let sizeList = try parseSizeList(sizes, maximum: 256 << 20, maximumText: "256 MiB")
        guard repetitions >= 1, hits >= 0 else { throw ValidationError("--reps must be at least 1 and --hits at least 0") }
        let device = try Fabric.openDefaultDevice()
        try measure(device, sizes: sizeList)
    }

    private func measure<D: FabricDevice>(_ device: D, sizes: [Int]) throws {
        let domain = try device.allocateProtectionDomain()
        let configuration = try RegistrationCacheConfiguration.fromEnvironment(for: device.capabilities.memoryModel)
        // Under valgrind (no userfaultfd) the counting run pretends to
        // watch: the hit path is the same.
        let monitor = hitsOnly && MemoryMonitor.shared.currentState != .watching ? MemoryMonitor.pretendingForInstructionCounts() : MemoryMonitor.shared
        let cache = RegistrationCache(device: device, domain: domain, configuration: configuration, monitor: monitor)
        guard cache.watching else { throw PerfError("the cache does not cache here: \(cache.uncachedReason ?? "")") }
        let megabyte = 1 << 20
        let cached = try freshMemory(megabyte)
        defer { munmap(cached, megabyte) }
        cache.release(try cache.acquire(cached, length: megabyte, access: .remoteRead))
        if hitsOnly {
            for _ in 0..<hits { cache.release(try cache.acquire(cached, length: megabyte, access: .remoteRead)) }
            return
        }
        var hitNanoseconds = Samples()
        var hitMedians = Samples()
        var allocations: UInt64 = 0
        var misses: [Int: (cache: Samples, plain: Samples)] = [:]
        var munmapWatched = Samples()
        var munmapUnwatched = Samples()
        for _ in 0..<repetitions {
            // Hits, in batches of 100 so that the clock's cost stays out.
            var batch = Samples()
            allocation_counter_enable(1)
            let before = allocation_counter_count()
            for _ in 0..<max(1, hits / 100) {
                let start = now()
                for _ in 0..<100 { cache.release(try cache.acquire(cached, length: megabyte, access: .remoteRead)) }
                batch.append(Double(now() - start) / 100)
            }
            allocations += allocation_counter_count() - before
            allocation_counter_enable(0)
            hitMedians.append(batch.median)
            for value in batch.values { hitNanoseconds.append(value) }
            // A miss against a plain registration of fresh memory, in turn.
            for size in sizes {
                var entry = misses[size] ?? (Samples(), Samples())
                let forCache = try freshMemory(size)
                var start = now()
                let lease = try cache.acquire(forCache, length: size, access: .remoteRead)
                entry.cache.append(Double(now() - start) / 1000)
                cache.release(lease)
                munmap(forCache, size)
                let plain = try freshMemory(size)
                start = now()
                let region = try device.registerMemory(plain, length: size, access: [.localWrite, .remoteRead, .remoteWrite], in: domain)
                entry.plain.append(Double(now() - start) / 1000)
                try region.deregister()
                munmap(plain, size)
                misses[size] = entry
            }
            // The monitor on munmap of 64 KiB, watched and not.
            for watched in [true, false] {
                let memory = try freshMemory(65536)
                if watched, MemoryMonitor.shared.watch(memory, length: 65536) != .watched { throw PerfError("could not watch 64 KiB") }
                let start = now()
                munmap(memory, 65536)
                (watched ? { munmapWatched.append($0) } : { munmapUnwatched.append($0) })(Double(now() - start) / 1000)
            }
        }
        let totalHits = Double(repetitions * max(1, hits / 100) * 100)
        print("registration cache on \(device.backendName) device \(device.name): \(repetitions) interleaved repetitions; load average \(loadAverage())")
        print(String(format: "hit (acquire + release, 1 MiB buffer): %.1f ns median (repetitions' medians %.1f-%.1f), %.3f allocations per hit",
                     hitNanoseconds.median, hitMedians.minimum, hitMedians.maximum, Double(allocations) / totalHits))
        print("size      miss-us   plain-register-us   miss/plain   miss-us-per-MiB")
        for size in sizes {
            let entry = misses[size]!
            print(formatSize(size).padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: "%7.1f   %17.1f   %10.2f   %15.1f", entry.cache.median, entry.plain.median, entry.cache.median / entry.plain.median,
                         entry.cache.median / (Double(size) / Double(megabyte))))
        }
        print(String(format: "munmap of 64 KiB: watched %.2f us, unwatched %.2f us median (monitor's cost %.2f us)",
                     munmapWatched.median, munmapUnwatched.median, munmapWatched.median - munmapUnwatched.median))
        let statistics = cache.statistics
        print("cache counters: hits \(statistics.hits), misses \(statistics.misses), invalidations \(statistics.invalidations), evictions \(statistics.evictions)")
    }
}
