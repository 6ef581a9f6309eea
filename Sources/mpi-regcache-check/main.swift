// Ranks for the registration cache's tests (docs/registration-cache.md):
// rank 0 sends a rendezvous-sized buffer to rank 1, both change the mapping
// under their buffer between transfers the way real programs do, obtain
// the same address again with new contents, and transfer again. Every
// round checks the bytes that arrived AND each side's cache counters (a
// hit, a miss after an invalidation, or a registration for one use), so
// a case fails on the software NIC too, where stale pages cannot arrive.
// Prints "rank R: CASE ok ..." or what differed, and exits 1.
//
//   mpi-regcache-check CASE...     runs the cases in order in one job
//
// With FABRIC_REGCACHE_INVALIDATION=off (wrong on purpose) the counters are
// not checked, and a case whose bytes arrive stale ends with "CASE STALE"
// instead of failing the job, so that one job shows which cases a cache
// without invalidation gets wrong (on a backend that pins pages).
//
// Cases:
//   reuse           the same buffer again, and a buffer inside it: hits
//   malloc-free     free + malloc above the mmap threshold
//   small-chunk     free + malloc of a heap chunk: a correct hit
//   munmap-fixed    munmap, then mmap(MAP_FIXED) at the same address
//   fixed-over      mmap(MAP_FIXED) straight over the cached range
//   partial-munmap  munmap of the last page of the range, mapped again
//   mremap-grow     mremap growing with MREMAP_MAYMOVE
//   mremap-shrink   mremap shrinking in place
//   mremap-onto     mremap(MREMAP_FIXED) of another mapping onto the range
//   dontneed        madvise(MADV_DONTNEED), then rewrite
//   madv-free       madvise(MADV_FREE), then rewrite
//   heap-trim       free at the top of the heap, malloc_trim(0), malloc again
//   fork            a child forks off and writes; the parent writes and sends
//   file-backed     a file mapping: registered per use, still correct (in
//                   tmpfs: shared memory, watched and cached)
//   storm           other threads malloc and free while transfers run
//   cap             (FABRIC_REGISTRATION_CAP=3M) eviction under the cap, and
//                   a buffer larger than the cap refused by name
//   no-monitor      (FABRIC_MEMORY_MONITOR=off) everything registered per use
//   pool            memory from allocateMemory: no cache lookup; freeMemory
//                   refuses anything else by name
import CFabricShims
import FabricRegistrationCache
import FabricSupport
import Foundation
import Glibc
import MPI
import RankCheck
import Synchronization

let megabyte = 1 << 20
let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
// mremap's flags (<sys/mman.h> under _GNU_SOURCE, which Glibc's module lacks).
let remapMayMove: Int32 = 1
let remapFixed: Int32 = 2

/// What one side's cache must have done in a round.
enum Expected: CustomStringConvertible {
    case hit
    /// A new registration, and (when `invalidated`) an entry dropped first.
    case miss(invalidated: Bool)
    case uncached
    /// Memory from `allocateMemory`: no lookup in the cache at all.
    case pool
    /// Not checked: heap memory an earlier case cached may still be
    /// cached, correctly (its pages stayed).
    case any

    var description: String {
        switch self {
        case .any: "anything"
        case .hit: "a hit"
        case .miss(let invalidated): invalidated ? "an invalidation and a miss" : "a miss"
        case .uncached: "a registration for one use"
        case .pool: "registered memory from the pool"
        }
    }
}

/// Stale bytes arrived while invalidation was switched off: the case ends
/// there (both ranks learn it in the same round) and the next one runs.
struct StaleData: Error {
    let finding: String
}

/// Rounds of rank 0 → rank 1 transfers with checked bytes and counters.
final class Rounds {
    let mpi: MPIRuntime
    let rank: Int
    let name: String
    private(set) var round = 0

    init(_ mpi: MPIRuntime, _ name: String) {
        self.mpi = mpi
        self.rank = mpi.rank
        self.name = name
    }

    /// With FABRIC_REGCACHE_INVALIDATION=off the counters are not
    /// checked: what must fail then, on a backend that pins pages, is
    /// the bytes.
    static let invalidation = getenv("FABRIC_REGCACHE_INVALIDATION").map { String(cString: $0) != "off" } ?? true

    /// memcmp against a filled page, page by page: a debug build's byte
    /// loop is slow in the emulated VM.
    static func allBytes(of buffer: UnsafeMutableRawBufferPointer, are value: UInt8) -> Bool {
        var page = [UInt8](repeating: value, count: 4096)
        return page.withUnsafeMutableBytes { page in
            var offset = 0
            while offset < buffer.count {
                let length = min(4096, buffer.count - offset)
                if memcmp(buffer.baseAddress! + offset, page.baseAddress!, length) != 0 { return false }
                offset += length
            }
            return true
        }
    }

    func byte(_ round: Int) -> UInt8 { UInt8(truncatingIfNeeded: round &* 37 &+ 11) }

    /// Rank 0 fills `buffer` with this round's byte and sends it; rank 1
    /// receives into its `buffer` and checks every byte. Then each checks
    /// its own counters against `expected`.
    func transfer(_ buffer: UnsafeMutableRawBufferPointer, expect expected: Expected, countersChecked: Bool = true) throws {
        round += 1
        let before = mpi.registrationCacheStatistics
        let value = byte(round)
        if rank == 0 {
            memset(buffer.baseAddress!, Int32(value), buffer.count)
            try mpi.send(UnsafeRawBufferPointer(buffer), to: 1, tag: round)
            // Rank 1 has checked the bytes before anyone checks counters:
            // a stale byte is what a failing round reports first.
            let verdict = try mpi.receive(UInt8.self, count: 1, from: 1, tag: MessageTag(round)).values
            if verdict != [1] { throw StaleData(finding: "\(name) round \(round): rank 1 received stale data") }
        } else {
            memset(buffer.baseAddress!, 0, buffer.count)
            let status = try mpi.receive(into: buffer, from: 0, tag: MessageTag(round))
            check(status.count == buffer.count, "\(name) round \(round): \(status.count) bytes arrived, \(buffer.count) expected")
            if !Self.allBytes(of: buffer, are: value), let wrong = buffer.firstIndex(where: { $0 != value }) {
                let finding = "\(name) round \(round): byte \(wrong) is \(buffer[wrong]), not \(value) (stale data?)"
                guard !Self.invalidation else { fail(finding) }
                try mpi.send([UInt8(0)], to: 0, tag: round)
                throw StaleData(finding: finding)
            }
            try mpi.send([UInt8(1)], to: 0, tag: round)
        }
        guard countersChecked, Self.invalidation else { return }
        let after = mpi.registrationCacheStatistics
        let hits = after.hits - before.hits
        let misses = after.misses - before.misses
        let uncached = after.uncachedRegistrations - before.uncachedRegistrations
        let pooled = after.poolTransfers - before.poolTransfers
        let invalidations = after.invalidations - before.invalidations
        let found = "hits +\(hits), misses +\(misses), uncached +\(uncached), invalidations +\(invalidations), pool +\(pooled)"
        let matches: Bool
        switch expected {
        case .hit: matches = hits == 1 && misses == 0 && uncached == 0
        case .miss(let invalidated): matches = hits == 0 && misses == 1 && uncached == 0 && (!invalidated || invalidations >= 1)
        case .uncached: matches = hits == 0 && misses == 0 && uncached == 1
        case .pool: matches = hits == 0 && misses == 0 && uncached == 0 && pooled == 1
        case .any: matches = true
        }
        check(matches, "\(name) round \(round) on rank \(rank): expected \(expected), found \(found)")
    }

    func done(_ extra: String = "") {
        let s = mpi.registrationCacheStatistics
        print("rank \(rank): \(name) ok after \(round) rounds: hits \(s.hits), misses \(s.misses), invalidations \(s.invalidations), evictions \(s.evictions), uncached \(s.uncachedRegistrations)\(extra); backend \(mpi.backend)")
    }
}

func mapAnonymous(_ length: Int, at address: UnsafeMutableRawPointer? = nil) -> UnsafeMutableRawBufferPointer {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | (address == nil ? 0 : MAP_FIXED)
    let pointer = mmap(address, length, PROT_READ | PROT_WRITE, flags, -1, 0)
    check(pointer != MAP_FAILED, "mmap of \(length) bytes: \(String(cString: strerror(errno)))")
    if let address { check(pointer == address, "mmap(MAP_FIXED) did not map at \(address)") }
    return UnsafeMutableRawBufferPointer(start: pointer, count: length)
}

func unmap(_ buffer: UnsafeMutableRawBufferPointer) {
    check(munmap(buffer.baseAddress, buffer.count) == 0, "munmap: \(String(cString: strerror(errno)))")
}

/// A heap buffer from malloc, as a program would have it.
func allocate(_ length: Int) -> UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer(start: malloc(length)!, count: length)
}

// MARK: - The cases

func reuse(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    try r.transfer(buffer, expect: .hit)
    let inside = UnsafeMutableRawBufferPointer(rebasing: buffer[pageSize + 100..<(megabyte / 2)])
    try r.transfer(inside, expect: .hit)
    unmap(buffer)
}

func mallocFree(_ r: Rounds) throws {
    // A fixed threshold: glibc otherwise raises it after the first free,
    // and the next malloc of this size would come from the heap.
    fabric_malloc_thresholds(128 * 1024, 0)
    let size = 2 * megabyte
    var buffer = allocate(size)
    let first = buffer.baseAddress!
    try r.transfer(buffer, expect: .miss(invalidated: false))
    var reused = 0
    for _ in 0..<4 {
        free(buffer.baseAddress)
        buffer = allocate(size)
        if buffer.baseAddress == first { reused += 1 }
        // The old pages are gone whether or not the address came back.
        try r.transfer(buffer, expect: .miss(invalidated: true))
    }
    free(buffer.baseAddress)
    r.done(", the address came back \(reused) of 4 times")
}

func smallChunk(_ r: Rounds) throws {
    // Below the threshold, on the heap: a freed chunk keeps its pages and
    // the cached registration stays right for the next chunk there.
    fabric_malloc_thresholds(Int32(64 * megabyte), Int32(256 * megabyte))
    let size = 96 * 1024
    let guardChunk = allocate(64)  // keeps the chunk off the heap's top
    var buffer = allocate(size)
    let first = buffer.baseAddress!
    let fence = allocate(64)
    try r.transfer(buffer, expect: .any)
    free(buffer.baseAddress)
    buffer = allocate(size)
    check(buffer.baseAddress == first, "malloc did not return the freed chunk (test set-up)")
    try r.transfer(buffer, expect: .hit)
    free(buffer.baseAddress)
    free(fence.baseAddress)
    free(guardChunk.baseAddress)
}

func munmapFixed(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    unmap(buffer)
    let again = mapAnonymous(megabyte, at: buffer.baseAddress)
    try r.transfer(again, expect: .miss(invalidated: true))
    try r.transfer(again, expect: .hit)
    unmap(again)
}

func fixedOver(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    let again = mapAnonymous(megabyte, at: buffer.baseAddress)
    try r.transfer(again, expect: .miss(invalidated: true))
    unmap(again)
}

func partialMunmap(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    let lastPage = buffer.baseAddress! + megabyte - pageSize
    check(munmap(lastPage, pageSize) == 0, "munmap of the last page")
    _ = mapAnonymous(pageSize, at: lastPage)
    try r.transfer(buffer, expect: .miss(invalidated: true))
    unmap(buffer)
}

func mremapGrow(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    // A neighbour right after it forces the move.
    let neighbour = mmap(buffer.baseAddress! + megabyte, pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
    let moved = fabric_mremap(buffer.baseAddress, megabyte, 2 * megabyte, remapMayMove, nil)
    check(moved != MAP_FAILED, "mremap: \(String(cString: strerror(errno)))")
    check(moved != buffer.baseAddress, "mremap grew the buffer in place (test set-up: it must move)")
    let grown = UnsafeMutableRawBufferPointer(start: moved, count: 2 * megabyte)
    try r.transfer(grown, expect: .miss(invalidated: true))
    // Something new at the old address is registered anew too.
    let old = mapAnonymous(megabyte, at: buffer.baseAddress)
    try r.transfer(old, expect: .miss(invalidated: false))
    unmap(grown)
    unmap(old)
    if neighbour != MAP_FAILED { munmap(neighbour, pageSize) }
}

func mremapShrink(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    let shrunk = fabric_mremap(buffer.baseAddress, megabyte, megabyte / 2, 0, nil)
    check(shrunk == buffer.baseAddress, "mremap did not shrink in place")
    let half = UnsafeMutableRawBufferPointer(start: shrunk, count: megabyte / 2)
    try r.transfer(half, expect: .miss(invalidated: true))
    // Grown back in place, the second half is new pages under the range
    // the first entry covered.
    let regrown = fabric_mremap(shrunk, megabyte / 2, megabyte, 0, nil)
    check(regrown == buffer.baseAddress, "mremap did not grow back in place (test set-up)")
    try r.transfer(buffer, expect: .miss(invalidated: false))
    unmap(buffer)
}

func mremapOnto(_ r: Rounds) throws {
    let target = mapAnonymous(megabyte)
    try r.transfer(target, expect: .miss(invalidated: false))
    let source = mapAnonymous(megabyte)
    memset(source.baseAddress!, 0x5a, megabyte)
    let moved = fabric_mremap(source.baseAddress, megabyte, megabyte, remapMayMove | remapFixed, target.baseAddress)
    check(moved == target.baseAddress, "mremap(MREMAP_FIXED): \(String(cString: strerror(errno)))")
    try r.transfer(target, expect: .miss(invalidated: true))
    unmap(target)
}

func dontNeed(_ r: Rounds, advice: Int32) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    check(madvise(buffer.baseAddress, megabyte, advice) == 0, "madvise: \(String(cString: strerror(errno)))")
    try r.transfer(buffer, expect: .miss(invalidated: true))
    unmap(buffer)
}

func heapTrim(_ r: Rounds) throws {
    fabric_malloc_thresholds(Int32(64 * megabyte), Int32(256 * megabyte))  // no trim but ours
    let size = 2 * megabyte
    var buffer = allocate(size)
    let first = buffer.baseAddress!
    try r.transfer(buffer, expect: .any)
    free(buffer.baseAddress)
    _ = fabric_malloc_trim()
    buffer = allocate(size)
    try r.transfer(buffer, expect: .miss(invalidated: true))
    free(buffer.baseAddress)
    r.done(buffer.baseAddress == first ? ", the address came back" : ", at another address")
}

func forkCase(_ r: Rounds) throws {
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .miss(invalidated: false))
    let child = fork()
    check(child >= 0, "fork: \(String(cString: strerror(errno)))")
    if child == 0 {
        memset(buffer.baseAddress!, 0x77, megabyte)
        _exit(0)
    }
    var status: Int32 = 0
    _ = waitpid(child, &status, 0)
    try r.transfer(buffer, expect: .hit)
    unmap(buffer)
}

func fileBacked(_ r: Rounds) throws {
    var template = Array("/tmp/regcache-check-XXXXXX".utf8CString)
    let descriptor = mkstemp(&template)
    check(descriptor >= 0, "mkstemp")
    unlink(template)
    check(ftruncate(descriptor, off_t(megabyte)) == 0, "ftruncate")
    // Two megabytes of anonymous memory, the second replaced by the file:
    // the whole is a buffer spanning two mappings, one not watchable.
    let both = mapAnonymous(2 * megabyte)
    let pointer = mmap(both.baseAddress! + megabyte, megabyte, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, descriptor, 0)
    check(pointer == both.baseAddress! + megabyte, "mmap of a file")
    let file = UnsafeMutableRawBufferPointer(start: pointer, count: megabyte)
    // A file in tmpfs is shared memory, which userfaultfd does watch: then
    // it is cached like anonymous memory. (The monitor is asked first.)
    let watchable = MemoryMonitor.shared.watch(file.baseAddress!, length: megabyte) == .watched
    try r.transfer(file, expect: watchable ? .miss(invalidated: false) : .uncached)
    try r.transfer(file, expect: watchable ? .hit : .uncached)
    try r.transfer(both, expect: watchable ? .miss(invalidated: false) : .uncached)
    if watchable { print("rank \(r.rank): the file is in tmpfs (shared memory): watched and cached") }
    unmap(both)
    close(descriptor)
}

/// Threads that malloc, touch and free buffers of all sizes (many above
/// the mmap threshold: unmaps the monitor sees) until told to stop.
final class Storm: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchGroup()

    init(threads count: Int) {
        for seed in 0..<count {
            finished.enter()
            Thread { [self] in
                var state = UInt64(seed + 1) &* 0x9e37_79b9_7f4a_7c15
                while !stopping.load(ordering: .relaxed) {
                    state ^= state << 13
                    state ^= state >> 7
                    state ^= state << 17
                    let size = 1 << (12 + Int(state % 10))  // 4 KiB to 2 MiB
                    if let block = malloc(size) {
                        memset(block, 1, min(size, 65536))
                        free(block)
                    }
                    // Busy, yet leaving the cores to the transfers (the VM
                    // has two, and emulates them).
                    usleep(20)
                }
                finished.leave()
            }.start()
        }
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
    }
}

func storm(_ r: Rounds) throws {
    fabric_malloc_thresholds(128 * 1024, 0)
    let threads = Storm(threads: 2)
    let kept = mapAnonymous(megabyte)
    for round in 0..<60 {
        if round % 2 == 0 {
            try r.transfer(kept, expect: round == 0 ? .miss(invalidated: false) : .hit)
        } else {
            // A fresh malloc each time: new pages at an old address, or
            // heap pages that stayed (a correct hit): the bytes decide.
            let buffer = allocate(megabyte + round * 4096)
            try r.transfer(buffer, expect: .any)
            free(buffer.baseAddress)
        }
    }
    threads.stop()
    unmap(kept)
    let invalidations = r.mpi.registrationCacheStatistics.invalidations
    check(!Rounds.invalidation || invalidations >= 20, "only \(invalidations) invalidations while 30 buffers were freed")
}

func cap(_ r: Rounds) throws {
    let state = r.mpi.registrationCacheState
    check(state.capacityBytes == 3 * megabyte, "the cap is \(state.capacityBytes) bytes, FABRIC_REGISTRATION_CAP=3M asked 3 MiB")
    let buffers = (0..<5).map { _ in mapAnonymous(megabyte) }
    for pass in 0..<2 {
        for buffer in buffers {
            try r.transfer(buffer, expect: .miss(invalidated: false))
            let registered = r.mpi.registrationCacheStatistics.registeredBytes
            check(registered <= 3 * megabyte, "pass \(pass): \(registered) bytes registered, over the 3 MiB cap")
        }
    }
    check(r.mpi.registrationCacheStatistics.evictions >= 7, "only \(r.mpi.registrationCacheStatistics.evictions) evictions under the cap")
    // Larger than the cap: refused by name, on the sender (the receiver
    // never posts its receive).
    if r.rank == 0 {
        let large = mapAnonymous(4 * megabyte)
        do {
            try r.mpi.send(UnsafeRawBufferPointer(large), to: 1, tag: 999)
            fail("a send of 4 MiB under a 3 MiB cap was not refused")
        } catch {
            check(error.message.contains("registration cap of 3145728 bytes"), "the refusal does not name the cap: \(error.message)")
            print("rank 0: refused as expected: \(error.message)")
        }
        unmap(large)
    }
    buffers.forEach(unmap)
}

func noMonitor(_ r: Rounds) throws {
    let state = r.mpi.registrationCacheState
    check(!state.caching && (state.uncachedReason ?? "").contains("FABRIC_MEMORY_MONITOR=off"), "the cache says \(state)")
    let buffer = mapAnonymous(megabyte)
    try r.transfer(buffer, expect: .uncached)
    unmap(buffer)
    let again = mapAnonymous(megabyte, at: buffer.baseAddress)
    try r.transfer(again, expect: .uncached)
    check(r.mpi.registrationCacheStatistics.registeredBytes == 0, "bytes stay registered without a cache")
    unmap(again)
}

func pool(_ r: Rounds) throws {
    let first = try r.mpi.allocateMemory(megabyte)
    try r.transfer(first, expect: .pool)
    try r.transfer(UnsafeMutableRawBufferPointer(rebasing: first[4096..<(megabyte / 2)]), expect: .pool)
    try r.mpi.freeMemory(first)
    let second = try r.mpi.allocateMemory(2 * megabyte)
    try r.transfer(second, expect: .pool)
    try r.mpi.freeMemory(second)
    let outside = mapAnonymous(megabyte)
    do {
        try r.mpi.freeMemory(outside)
        fail("freeMemory took memory the library did not hand out")
    } catch let error as MPIError {
        check(error.message.contains("is not a block of registered memory this library handed out"), "the refusal does not say why: \(error.message)")
    }
    unmap(outside)
    r.done(", pages: \(r.mpi.registeredMemoryPages)")
}

// MARK: - Main

let cases: [String: (Rounds) throws -> Void] = [
    "reuse": reuse, "malloc-free": mallocFree, "small-chunk": smallChunk, "munmap-fixed": munmapFixed,
    "fixed-over": fixedOver, "partial-munmap": partialMunmap, "mremap-grow": mremapGrow,
    "mremap-shrink": mremapShrink, "mremap-onto": mremapOnto,
    "dontneed": { r in try dontNeed(r, advice: MADV_DONTNEED) },
    "madv-free": { r in try dontNeed(r, advice: MADV_FREE) },
    "heap-trim": heapTrim, "fork": forkCase, "file-backed": fileBacked, "storm": storm, "cap": cap, "no-monitor": noMonitor, "pool": pool,
]
let names = CommandLine.arguments.dropFirst().isEmpty ? ["reuse"] : Array(CommandLine.arguments.dropFirst())
for name in names where cases[name] == nil {
    fail("unknown case \(name); cases: \(cases.keys.sorted().joined(separator: " "))")
}
do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    check(mpi.size == 2, "runs on 2 ranks")
    var stale: [String] = []
    for name in names {
        let rounds = Rounds(mpi, name)
        let started = ContinuousClock.now
        defer { if getenv("REGCACHE_CHECK_TIMES") != nil { print("rank \(mpi.rank): \(name) took \(ContinuousClock.now - started)") } }
        do {
            try cases[name]!(rounds)
            if !["malloc-free", "heap-trim", "pool"].contains(name) { rounds.done() }
        } catch let finding as StaleData {
            print("rank \(mpi.rank): \(name) STALE with invalidation off: \(finding.finding)")
            stale.append(name)
        }
    }
    if !Rounds.invalidation { print("rank \(mpi.rank): stale data with invalidation off in: \(stale.joined(separator: " "))") }
    try mpi.finalize()
} catch {
    fail("\(names.joined(separator: " ")): \(error)")
}
