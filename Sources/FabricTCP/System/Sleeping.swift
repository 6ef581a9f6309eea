// UNSAFE AREA: sleeps with deadlines finer than a millisecond. poll(2) and
// epoll_wait(2) take whole milliseconds, so a 10 µs timer (a held frame of
// an emulated link, an owed acknowledgement at 20 µs) slept through them
// wakes about a millisecond late. These take a deadline in nanoseconds of
// CLOCK_MONOTONIC (MonotonicClock) instead: ppoll(2) for a few descriptors,
// and for an epoll set epoll_pwait2(2) where the kernel has it (Linux 5.11),
// else ppoll(2) on the set's own descriptor. The timeout passed is the time
// left from a clock reading taken before the call, and the kernel counts it
// from its own later start, so a sleep never ends before its deadline (a
// sleeper woken early would only look, find the timer not due, and sleep
// again).
import CFabricShims
import Glibc

extension timespec {
    /// The time from `now` until `deadline` (nanoseconds, monotonic); zero
    /// when the deadline has passed.
    init(from now: UInt64, until deadline: UInt64) {
        let left = deadline > now ? deadline - now : 0
        self.init(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
    }
}

extension SystemCalls {
    /// ppoll(2) on `count` descriptors until `deadline` (nanoseconds,
    /// monotonic; .max: no limit). The number ready, 0 at the deadline or
    /// when interrupted (callers look again), -1 on failure.
    @inline(__always)
    static func poll(_ descriptors: UnsafeMutablePointer<pollfd>, _ count: Int, until deadline: UInt64) -> Int32 {
        let n: Int32
        if deadline == .max {
            n = fabric_ppoll(descriptors, nfds_t(count), nil)
        } else {
            var timeout = timespec(from: MonotonicClock.now(), until: deadline)
            n = fabric_ppoll(descriptors, nfds_t(count), &timeout)
        }
        return n < 0 && errno == EINTR ? 0 : n
    }

    /// ppoll(2) on one descriptor until `deadline`; its returned events (0
    /// if none).
    static func poll(_ fd: Int32, events: Int16, until deadline: UInt64) -> Int16 {
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        return poll(&descriptor, 1, until: deadline) > 0 ? descriptor.revents : 0
    }
}

/// The calling thread's timer slack: how much later than asked the kernel
/// may end its timed sleeps (ppoll, epoll_pwait2), to wake several sleepers
/// at once. The default, 50 µs, would add up to 50 µs to every short
/// sleep, five times a 10 µs link latency. (A timerfd has no slack.)
enum TimerSlack {
    /// The least the kernel takes: 1 ns (0 would mean "the default").
    static let precise: UInt64 = 1

    /// The calling thread's slack, or nil if it cannot be read.
    static var current: UInt64? {
        let slack = fabric_timer_slack()
        return slack >= 0 ? UInt64(slack) : nil
    }

    /// Sets the calling thread's slack.
    static func set(_ nanoseconds: UInt64) {
        _ = fabric_set_timer_slack(UInt(nanoseconds))
    }
}

/// How a sleep on an epoll set honours a deadline in nanoseconds.
enum EpollDeadlineSleep: Equatable, Sendable {
    /// epoll_pwait2(2) (Linux 5.11 and later): the set, with a nanosecond
    /// timeout; one system call.
    case pwait2
    /// ppoll(2) on the set's own descriptor, which is readable while one of
    /// its events is ready, then epoll_wait(2) without sleeping to take the
    /// events: two system calls per wake-up, on any kernel.
    case ppollOnSet

    /// `FABRIC_TCP_EPOLL_SLEEP=ppoll` makes every epoll set of the process
    /// use the fallback (to test or measure it on a kernel that has
    /// epoll_pwait2); `pwait2` or unset: epoll_pwait2 if the kernel has it.
    static let environmentVariable = "FABRIC_TCP_EPOLL_SLEEP"

    /// Whether the kernel has epoll_pwait2: asked once, with a zero
    /// timeout on a new, empty set. A kernel without it answers ENOSYS; a
    /// seccomp filter older than the call (a container's) answers EPERM.
    static let kernelHasPwait2: Bool = {
        let probe = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard probe >= 0 else { return false }
        defer { SystemCalls.close(probe) }
        var event = epoll_event()
        var zero = timespec()
        return fabric_epoll_pwait2(probe, &event, 1, &zero) >= 0
    }()

    /// The method of this process: epoll_pwait2 if the kernel has it and
    /// the environment does not ask for the fallback.
    static let detected: EpollDeadlineSleep = {
        if let asked = getenv(environmentVariable), String(cString: asked) == "ppoll" { return .ppollOnSet }
        return kernelHasPwait2 ? .pwait2 : .ppollOnSet
    }()
}

extension EventPoller {
    /// Waits until an event or `deadline` (nanoseconds, monotonic; .max: no
    /// limit); the number of events taken, 0 at the deadline, when
    /// interrupted or on failure (callers look again).
    func wait(_ events: UnsafeMutablePointer<epoll_event>, capacity: Int, until deadline: UInt64) -> Int {
        if deadline == .max { return wait(events, capacity: capacity, timeoutMilliseconds: -1) }
        switch deadlineSleep {
        case .pwait2:
            var timeout = timespec(from: MonotonicClock.now(), until: deadline)
            let n = fabric_epoll_pwait2(fd, events, Int32(capacity), &timeout)
            return n < 0 ? 0 : Int(n)
        case .ppollOnSet:
            while true {
                if SystemCalls.poll(fd, events: Int16(POLLIN), until: deadline) == 0 { return 0 }
                let n = wait(events, capacity: capacity, timeoutMilliseconds: 0)
                // Another thread may have taken the events first: sleep on
                // until the deadline, as epoll_pwait2 would.
                if n > 0 || MonotonicClock.now() >= deadline { return n }
            }
        }
    }
}
