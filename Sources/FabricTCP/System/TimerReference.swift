// UNSAFE AREA: a raw timerfd sleep, the reference fabric-perf puts beside a
// latency measured in blocking mode on an emulated link. A sleeper in the
// engine waits for a held frame's time as this sleep waits for its
// deadline, so one such wake-up is what sleeping may add to the link's
// latency; measured in the same run, it carries that run's conditions (a
// busy machine, a virtual machine's timer).
import CFabricShims
import Glibc

/// Timed sleeps on a timerfd: CLOCK_MONOTONIC, armed with an absolute
/// deadline, no timer slack; each timed from the clock reading the deadline
/// is computed from to the return of the read that reports the expiry.
@_spi(FabricInternals)
public enum TimerWakeUp {
    /// How long each of `count` sleeps of `nanoseconds` took, in
    /// nanoseconds; nil if no timerfd can be made.
    public static func measure(sleeping nanoseconds: UInt64, count: Int) -> [UInt64]? {
        let fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC))
        guard fd >= 0 else { return nil }
        defer { SystemCalls.close(fd) }
        var durations: [UInt64] = []
        durations.reserveCapacity(count)
        for _ in 0..<count {
            let start = MonotonicClock.now()
            var setting = itimerspec(it_interval: timespec(), it_value: timespec(from: 0, until: start + nanoseconds))
            guard timerfd_settime(fd, Int32(TFD_TIMER_ABSTIME), &setting, nil) == 0 else { return nil }
            var expirations: UInt64 = 0
            while Glibc.read(fd, &expirations, 8) != 8 {
                if errno != EINTR { return nil }
            }
            durations.append(MonotonicClock.now() - start)
        }
        return durations
    }
}
