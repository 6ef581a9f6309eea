import CFabricShims
import Glibc

/// The process's watch over its own address space: which watched ranges
/// were unmapped, remapped or emptied (MADV_DONTNEED, MADV_FREE), so that a
/// registration cache never serves a region whose pages are gone.
///
/// One per process, shared by every user of registrations: a range can be
/// watched by one userfaultfd only (the kernel answers EBUSY to a second).
/// The events come from userfaultfd in write-protect registration mode with
/// no page ever protected, so no page fault is forwarded; the kernel makes
/// the thread that unmaps a watched range wait until the monitor's thread
/// has read the event, and `MemoryMonitor.Reader` waits for a batch being
/// read to be published: an unmap that has returned is always seen by the
/// next `drain`. The thread and its ring live in C (memory_monitor.c says
/// why). Nothing here patches libc. docs/registration-cache.md has the
/// whole mechanism and its limits.
public final class MemoryMonitor: Sendable {
    /// Whether the monitor runs, and if not, why.
    public enum State: Sendable, Equatable {
        case watching
        case unavailable(reason: String)
    }

    /// What `watch` found.
    public enum WatchOutcome: Sendable, Equatable {
        case watched
        /// The range cannot be watched (file-backed memory, another
        /// watcher, the monitor is off): it must not be cached.
        case refused(reason: String)
    }

    public let state: State
    private let fork = ForkDetection()

    /// The process's monitor, started on first use. `FABRIC_MEMORY_MONITOR=off`
    /// makes it unavailable (as where the kernel or a container forbids
    /// userfaultfd), for tests and for users who prefer no cache.
    public static let shared = MemoryMonitor()

    /// Pretends to watch without a userfaultfd: for counting a cache's
    /// instructions under valgrind, which does not implement userfaultfd.
    /// The cache's hit path is the same (the ring's counters are read and
    /// stay 0); nothing is ever invalidated, so it is wrong for anything
    /// but counting.
    @_spi(InstructionCounting) public static func pretendingForInstructionCounts() -> MemoryMonitor {
        MemoryMonitor(pretending: true)
    }

    private let pretending: Bool

    private init(pretending: Bool) {
        self.pretending = pretending
        state = .watching
    }

    private init() {
        pretending = false
        let switchedOff = getenv("FABRIC_MEMORY_MONITOR").map { String(cString: $0) == "off" } ?? false
        let status = fabric_memory_monitor_start(switchedOff ? 1 : 0)
        if status == 0 {
            state = .watching
        } else if switchedOff {
            state = .unavailable(reason: "switched off by FABRIC_MEMORY_MONITOR=off")
        } else {
            state = .unavailable(reason: Self.whyUnavailable(status))
        }
    }

    /// The reason a user reads (mpiinfo, the cache's state). EPERM for a
    /// user-mode-only userfaultfd comes from a seccomp filter, in practice
    /// a container engine's default profile.
    private static func whyUnavailable(_ status: Int32) -> String {
        let text = "userfaultfd is not available here: \(String(cString: strerror(status)))"
        guard status == EPERM else { return text }
        return text + " (a seccomp filter refuses it; the default profiles of podman, Docker and Kubernetes do: docs/containers.md shows the profile that allows it)"
    }

    /// The state as this process sees it: a fork() child has no monitor
    /// thread (and the kernel does not carry the watch into it).
    public var currentState: State {
        fork.isForkedChild ? .unavailable(reason: "this process is a fork() child of the one the monitor runs in") : state
    }

    /// Watches the pages holding [address, address + length).
    public func watch(_ address: UnsafeRawPointer, length: Int) -> WatchOutcome {
        if case .unavailable(let reason) = currentState { return .refused(reason: reason) }
        if pretending { return .watched }
        let status = fabric_memory_monitor_watch(address, length)
        switch status {
        case 0: return .watched
        case EINVAL: return .refused(reason: "the range is not all anonymous memory (file-backed or special mappings cannot be watched)")
        case EBUSY: return .refused(reason: "another userfaultfd watches part of the range")
        default: return .refused(reason: "userfaultfd refused the range: \(String(cString: strerror(status)))")
        }
    }

    /// The sequence number the next event will have: a region watched and
    /// registered now is concerned only by events from this one on (the
    /// earlier ones are about what was mapped there before).
    public static var nextEvent: UInt64 { fabric_memory_monitor_head() }

    /// Tells the registration caches that a follower lost events and
    /// revoked every key it followed (the software NIC's key table after
    /// its ring overflowed): they forget their entries too, rather than
    /// hand out revoked keys.
    public static func announceLostEvents() {
        fabric_memory_monitor_announce_lost()
    }

    /// Moves when a follower announced lost events (see above).
    @inlinable
    public static var lostEventsGeneration: UInt64 { fabric_memory_monitor_lost_generation() }

    /// A reader of the events published from now on, whether or not the
    /// monitor runs yet (it sees the first events if it starts later),
    /// without starting it.
    public static func follow() -> Reader {
        Reader(cursor: fabric_memory_monitor_head())
    }

    /// Events the monitor has seen so far.
    public var counters: Counters {
        var values: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &values) { fabric_memory_monitor_counters($0.baseAddress!.assumingMemoryBound(to: UInt64.self)) }
        return Counters(unmaps: Int(values.0), removes: Int(values.1), remaps: Int(values.2), pageFaults: Int(values.3))
    }

    public struct Counters: Sendable, Equatable {
        public var unmaps: Int
        public var removes: Int
        /// mremap moves (each also unmaps at its destination if watched).
        public var remaps: Int
        /// Page faults forwarded to the monitor: 0 unless the kernel
        /// behaves unlike the kernels measured (write-protect mode, no page
        /// protected).
        public var pageFaults: Int
    }

    /// One follower of the monitor's events, with its own place in them.
    /// Not thread-safe: its owner drains it under its own lock.
    public struct Reader: Sendable {
        @usableFromInline var cursor: UInt64

        fileprivate init(cursor: UInt64) { self.cursor = cursor }

        /// The events this reader has seen.
        public var position: UInt64 { cursor }

        /// What `drain` found.
        public enum Outcome: Sendable, Equatable {
            case current
            /// Events were missed (the ring lapped this reader): forget
            /// everything derived from watched memory.
            case overflowed
        }

        /// Calls `body` with every range unmapped since the last drain
        /// (start and end addresses) and the event's sequence number (the
        /// `position` a reader had just before it). Cheap when nothing
        /// happened: two atomic loads. Allocates nothing.
        @inline(__always)
        public mutating func drain(_ body: (UInt, UInt, UInt64) -> Void) -> Outcome {
            if fabric_memory_monitor_has_news(cursor) == 0 { return .current }
            return drainSlow(body)
        }

        /// Whether `drain` would find anything (two loads, inlined into
        /// the caller: the cache asks at every call).
        @inlinable
        public var hasNews: Bool { fabric_memory_monitor_has_news(cursor) != 0 }

        private mutating func drainSlow(_ body: (UInt, UInt, UInt64) -> Void) -> Outcome {
            withUnsafeTemporaryAllocation(of: fabric_unmapped_range.self, capacity: 64) { ranges -> Outcome in
                while true {
                    var overflowed: Int32 = 0
                    let first = cursor
                    let count = fabric_memory_monitor_read(&cursor, ranges.baseAddress!, ranges.count, &overflowed)
                    if overflowed != 0 { return .overflowed }
                    if count == 0 { return .current }
                    for (offset, range) in ranges[0..<count].enumerated() { body(UInt(range.start), UInt(range.end), first + UInt64(offset)) }
                }
            }
        }
    }
}
