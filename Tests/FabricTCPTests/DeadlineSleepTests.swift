import CFabricShims
import FabricCore
@_spi(FabricInternals) import FabricSupport
import FabricTestSupport
import Glibc
import Logging
import Testing

@_spi(FabricInternals) @testable import FabricTCP

/// The sleeps that honour nanosecond deadlines (System/Sleeping.swift): they
/// never end before their deadline, they do end after it, and readiness
/// ends them sooner. Both ways of sleeping on an epoll set are covered:
/// epoll_pwait2 where the kernel has it, and the ppoll fallback. Only
/// lower bounds are checked tightly; the upper bounds are generous (the
/// precision below a millisecond is a benchmark's figure, docs/benchmarks.md).
@Suite("sleeps with nanosecond deadlines")
struct DeadlineSleepTests {
    /// Lengths of sleep that a millisecond timeout would round: well under,
    /// just under and over a millisecond.
    static let lengths: [UInt64] = [20_000, 300_000, 1_200_000]
    /// What "it wakes" allows: far more than any of the sleeps.
    static let generous: UInt64 = 5_000_000_000

    @Test("ppoll: a quiet descriptor sleeps until the deadline and not less; a ready one ends the sleep at once")
    func ppollDeadlines() throws {
        let notifier = try EventNotifier()
        for length in Self.lengths {
            let start = MonotonicClock.now()
            let deadline = start + length
            #expect(SystemCalls.poll(notifier.fd, events: Int16(POLLIN), until: deadline) == 0)
            let end = MonotonicClock.now()
            #expect(end >= deadline, "woke \(deadline - end) ns early from a sleep of \(length) ns")
            #expect(end - start < Self.generous)
        }
        // A deadline already passed: no sleep at all.
        #expect(SystemCalls.poll(notifier.fd, events: Int16(POLLIN), until: MonotonicClock.now() - 1) == 0)
        // Ready before a far deadline: the sleep ends with the event.
        notifier.signal()
        let start = MonotonicClock.now()
        #expect(SystemCalls.poll(notifier.fd, events: Int16(POLLIN), until: start + 60_000_000_000) & Int16(POLLIN) != 0)
        #expect(MonotonicClock.now() - start < Self.generous)
        // And with no deadline at all.
        #expect(SystemCalls.poll(notifier.fd, events: Int16(POLLIN), until: .max) & Int16(POLLIN) != 0)
    }

    @Test("an epoll set with epoll_pwait2 sleeps to the deadline and wakes for an event",
          .enabled(if: EpollDeadlineSleep.kernelHasPwait2, "the kernel has no epoll_pwait2 (Linux before 5.11, or a seccomp filter that refuses it)"))
    func epollPwait2Deadlines() throws {
        try checkEpollDeadlines(.pwait2)
    }

    @Test("an epoll set with the ppoll fallback sleeps to the deadline and wakes for an event")
    func epollFallbackDeadlines() throws {
        try checkEpollDeadlines(.ppollOnSet)
    }

    private func checkEpollDeadlines(_ method: EpollDeadlineSleep) throws {
        let poller = try EventPoller(deadlineSleep: method)
        #expect(poller.deadlineSleep == method)
        let notifier = try EventNotifier()
        try poller.add(notifier.fd, token: 7, events: .epollIn)
        var event = epoll_event()
        for length in Self.lengths {
            let start = MonotonicClock.now()
            let deadline = start + length
            #expect(poller.wait(&event, capacity: 1, until: deadline) == 0)
            let end = MonotonicClock.now()
            #expect(end >= deadline, "woke \(deadline - end) ns early from a sleep of \(length) ns (\(method))")
            #expect(end - start < Self.generous)
        }
        #expect(poller.wait(&event, capacity: 1, until: MonotonicClock.now() - 1) == 0)
        // An event from another thread in the middle of a long sleep.
        let signaller = try #require(try? SystemThread.start {
            var pause = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            nanosleep(&pause, nil)
            notifier.signal()
        }.get())
        let start = MonotonicClock.now()
        #expect(poller.wait(&event, capacity: 1, until: start + 60_000_000_000) == 1)
        #expect(event.data.u64 == 7)
        #expect(MonotonicClock.now() - start < Self.generous)
        signaller.join()
        // Still ready (level-triggered), with no deadline.
        #expect(poller.wait(&event, capacity: 1, until: .max) == 1)
        notifier.drain()
        #expect(poller.wait(&event, capacity: 1, until: MonotonicClock.now() + 50_000) == 0)
    }

    @Test("FABRIC_TCP_EPOLL_SLEEP=ppoll chooses the fallback for the process, and otherwise the kernel decides")
    func processChoice() {
        let asked = getenv(EpollDeadlineSleep.environmentVariable).map { String(cString: $0) }
        if asked == "ppoll" {
            #expect(EpollDeadlineSleep.detected == .ppollOnSet)
        } else {
            #expect(EpollDeadlineSleep.detected == (EpollDeadlineSleep.kernelHasPwait2 ? .pwait2 : .ppollOnSet))
        }
    }

    @Test("a raw timerfd sleep, fabric-perf's reference, never ends before its length")
    func timerReference() throws {
        let durations = try #require(TimerWakeUp.measure(sleeping: 50_000, count: 20))
        #expect(durations.count == 20)
        for duration in durations {
            #expect(duration >= 50_000, "a timerfd sleep of 50 us took \(duration) ns")
            #expect(duration < Self.generous)
        }
    }

    /// A device that spins for timers due within `spinBelow`.
    private func device(link: LinkShape = .unshaped, spinBelow: Duration) throws -> TCPDevice {
        try TCPDevice(explicitSecret: testSecret, profile: nil, link: link, faults: FaultScript(rules: []), spinBelow: spinBelow, logger: Logger(label: "test"))
    }

    @Test("a completion queue's timed wait ends no sooner than its timeout and gives the thread its timer slack back",
          arguments: [Duration.zero, .milliseconds(1)])
    func waitTimeoutAndSlack(spinBelow: Duration) throws {
        let device = try device(spinBelow: spinBelow)
        #expect(device.core.spinBelow == spinBelow.wholeNanoseconds)
        let queue = try device.createCompletionQueue(capacity: 16)
        // A slack of the thread's own, which the wait lowers while it sleeps.
        let before = try #require(TimerSlack.current)
        TimerSlack.set(70_000)
        defer { TimerSlack.set(before) }
        for length in [Duration.microseconds(40), .microseconds(700)] {
            let start = MonotonicClock.now()
            #expect(try queue.wait(timeout: length) == false)
            let elapsed = MonotonicClock.now() - start
            #expect(elapsed >= length.wholeNanoseconds, "returned after \(elapsed) ns of \(length)")
            #expect(elapsed < Self.generous)
            #expect(TimerSlack.current == 70_000)
        }
    }

    @Test("FABRIC_TCP_SPIN_BELOW sets the spin threshold, naming itself when malformed; 10 us by default")
    func spinSetting() throws {
        #expect(TCPDeviceCore.defaultSpinThreshold == 10_000)
        #expect(try TCPDeviceCore.spinThreshold(from: [:]) == .microseconds(10))
        #expect(try TCPDeviceCore.spinThreshold(from: ["FABRIC_TCP_SPIN_BELOW": "25us"]) == .microseconds(25))
        #expect(try TCPDeviceCore.spinThreshold(from: ["FABRIC_TCP_SPIN_BELOW": "0"]) == .zero)
        #expect(throws: FabricError.self) { try TCPDeviceCore.spinThreshold(from: ["FABRIC_TCP_SPIN_BELOW": "fast"]) }
        do {
            _ = try TCPDeviceCore.spinThreshold(from: ["FABRIC_TCP_SPIN_BELOW": "5"])
            Issue.record("a threshold without a unit was taken")
        } catch {
            #expect(error.message.contains("FABRIC_TCP_SPIN_BELOW=5"), "\(error.message)")
        }
        if getenv(TCPDeviceCore.spinThresholdVariable) == nil {
            #expect(try TCPDevice(secret: testSecret).core.spinBelow == TCPDeviceCore.defaultSpinThreshold)
        }
        #expect(try device(spinBelow: .microseconds(25)).core.spinBelow == 25_000)
    }

    @Test("a shaped link's held frames leave on time with blocking waits, whether the waiter sleeps or spins for them",
          arguments: [Duration.zero, .milliseconds(5)])
    func heldFramesWithBlockingWaits(spinBelow: Duration) throws {
        let link = try LinkShape.parse("latency=300us")
        let pair = try connect(client: device(link: link, spinBelow: spinBelow), server: device(link: link, spinBelow: spinBelow), host: "127.0.0.1")
        let source = Buffer(64)
        let sourceRegion = try pair.client.register(source)
        let target = Buffer(64)
        let targetRegion = try pair.server.register(target)
        // The client's WRITE is held 300 us and only its own `wait` can let
        // it go; the server's progress thread answers, its acknowledgement
        // held 300 us too.
        for id in 1...5 {
            source.fillPattern(seed: UInt8(id))
            let start = MonotonicClock.now()
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(id), operation: .write(targetRegion.remote()), local: .single(sourceRegion.element())))
            let written = try #require(try pair.client.sendCQ.next(timeout: .seconds(20)), "no completion for WRITE \(id) within 20 s")
            let took = MonotonicClock.now() - start
            #expect(written.status == .success)
            #expect(took >= 600_000, "WRITE \(id) took \(took) ns")
            #expect(target.matchesPattern(seed: UInt8(id)))
        }
        withExtendedLifetime((sourceRegion, targetRegion)) {}
    }
}
