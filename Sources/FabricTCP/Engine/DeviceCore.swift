import CFabricShims
import Crypto
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Logging
import Synchronization

/// What the device's objects share: the key table, the job secret, the
/// queue pairs, the async events and the progress thread ("the card").
final class TCPDeviceCore: @unchecked Sendable {  // every mutable member is atomic or behind a lock
    let name: String
    /// The device's identity (FabricDevice.instance), never 0.
    let instance: UInt64
    /// Tagged connections and connects, for the tie-break of crossing
    /// connects (FabricSupport/ConnectionTags.swift).
    let tags: Locked<ConnectionTags>
    let capabilities: DeviceCapabilities
    let regions = RegionTable()
    let secret: SymmetricKey
    let secretSource: JobSecret.Source
    let logger: Logger
    /// Every object of the device refuses to work in a forked child.
    let forkDetection = ForkDetection()

    /// Threads sleeping in a completion queue's `wait`.
    let blockedWaiters = Atomic<Int>(0)
    /// When the application last drove progress (ns, monotonic).
    let lastApplicationProgress = Atomic<UInt64>(0)
    /// Payload bytes copied from the staging buffer (small payloads that
    /// arrived with their header); large payloads are never copied.
    let copiedBytes = Atomic<Int>(0)

    private struct Registry {
        var byNumber: [UInt32: QueuePairEngine] = [:]
        /// The same queue pairs as a list the progress thread can take
        /// without copying (an array reference, no allocation).
        var list: [QueuePairEngine] = []
        /// Whether the sockets are in the epoll set. Only while the progress
        /// thread sleeps on them: an epoll registration costs every arriving
        /// packet a callback, which busy-polling applications need not pay.
        var watching = false
        /// Counters of the queue pairs that are gone, so that device totals
        /// never go down; kept with the list so that a snapshot sees a
        /// leaving queue pair exactly once.
        var retired = QueuePairStatistics.zero
    }
    private let queuePairs = Locked(Registry())
    /// Publishes the counters for fabric-info; used by the progress thread
    /// only (and by `stop` once it has ended).
    private let publisher: CounterPublisher
    /// The profile's name, for the published counters.
    let profileName: String
    /// The emulated link and the fault script every queue pair starts with.
    let link: LinkShape
    let faults: FaultScript
    private let nextQueuePairNumber = Atomic<UInt32>(1)
    private let events = Locked<[AsyncEvent]>([])
    let poller: EventPoller
    let control: EventNotifier
    /// While the progress thread sleeps on the sockets: the deadline it
    /// sleeps until (.max: none). 0 while it only naps between sweeps.
    let threadSleepsUntil = Atomic<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    private let threadStarted = Atomic<Bool>(false)
    private var thread: SystemThread?

    /// The application counts as present (and drives progress itself) for
    /// this long after its last poll.
    static let handOffDelay: UInt64 = 2_000_000
    /// How often the progress thread looks around while the application
    /// polls: rarely, since each wake-up takes a core from a poller; less
    /// often still while a thread sleeps in `wait`.
    static let activeTick: UInt64 = 4_000_000
    static let waitingTick: UInt64 = 10_000_000

    /// A timer due sooner than this (nanoseconds) is waited for by looking
    /// again and again rather than by sleeping, in `wait` and on the
    /// progress thread: waking from a timed sleep costs about 8 µs on
    /// these machines over the sleep itself (measured by fabric-perf beside
    /// a shaped link), which would almost double a 10 µs link latency, and
    /// the waiter would barely have slept. Spinning for it costs at most
    /// this much processor time per timer. FABRIC_TCP_SPIN_BELOW sets it
    /// (0: always sleep).
    let spinBelow: UInt64
    static let spinThresholdVariable = "FABRIC_TCP_SPIN_BELOW"
    static let defaultSpinThreshold: UInt64 = 10_000

    /// The spin threshold FABRIC_TCP_SPIN_BELOW asks for (a duration: `5us`,
    /// `0`), else the default; a malformed value is refused, naming it.
    static func spinThreshold(from environment: [String: String]) throws(FabricError) -> Duration {
        try EmulationUnits.setting(spinThresholdVariable, in: environment, otherwise: .nanoseconds(defaultSpinThreshold)) {
            (text) throws(FabricError) in text == "0" ? .zero : try EmulationUnits.duration(text, setting: "spin threshold")
        }
    }

    init(
        name: String, profile: DeviceProfile, link: LinkShape, faults: FaultScript, spinBelow: UInt64,
        secret explicitSecret: [UInt8]?, logger: Logger
    ) throws(FabricError) {
        self.name = name
        self.spinBelow = spinBelow
        let instance = UInt64.random(in: 1...UInt64.max)
        self.instance = instance
        tags = Locked(ConnectionTags(ownInstance: instance))
        profileName = profile.name
        self.link = link
        self.faults = faults
        publisher = CounterPublisher(path: CounterFiles.makePath(), device: name, profile: profile.name)
        let capabilities = profile.capabilities
        self.capabilities = capabilities
        self.logger = logger
        DescriptorLimit.raiseToMaximum(logger: logger)
        if let explicitSecret {
            (secret, secretSource) = (SymmetricKey(data: explicitSecret), .explicit)
        } else {
            (secret, secretSource) = try JobSecret.load()
        }
        poller = try EventPoller()
        control = try EventNotifier()
        try poller.add(control.fd, token: 0, events: .epollIn)
        if fabric_guard_install() != 0 {
            throw FabricError(.unavailable, "cannot install the fault guard for registered memory (sigaction failed)")
        }
    }

    @inline(__always)
    func checkNotForked() throws(FabricError) {
        try forkDetection.checkNotForked()
    }

    @inline(__always)
    @discardableResult
    func noteApplicationProgress() -> UInt64 {
        let now = MonotonicClock.now()
        lastApplicationProgress.store(now, ordering: .relaxed)
        return now
    }

    @inline(__always)
    func noteCopied(_ count: Int) {
        copiedBytes.wrappingAdd(count, ordering: .relaxed)
    }

    /// Drops a tie-break entry (a connect that failed, a request rejected,
    /// a queue pair gone).
    func forgetTag(_ record: ConnectionTags.RecordID?) {
        if let record { tags.withLock { $0.remove(record) } }
    }

    /// Queue pairs alive on the device.
    var queuePairCount: Int { queuePairs.withLock { $0.byNumber.count } }

    func makeQueuePairNumber() -> QueuePairNumber {
        QueuePairNumber(rawValue: nextQueuePairNumber.wrappingAdd(1, ordering: .relaxed).oldValue)
    }

    func register(_ queuePair: QueuePairEngine) {
        queuePairs.withLock {
            $0.byNumber[queuePair.number.rawValue] = queuePair
            $0.list.append(queuePair)
            if $0.watching { watch(queuePair) }
        }
        startThreadIfNeeded()
    }


    /// The device's counters now: totals and every live queue pair.
    func counterSnapshot() -> DeviceCounters {
        let (list, retired) = queuePairs.withLock { ($0.list, $0.retired) }
        var totals = retired
        var entries: [DeviceCounters.QueuePairEntry] = []
        for queuePair in list {
            let counters = queuePair.counters
            totals.add(counters)
            entries.append(DeviceCounters.QueuePairEntry(number: queuePair.number.rawValue, counters: counters))
        }
        return DeviceCounters(
            processID: SystemCalls.processID, device: name, profile: profileName,
            takenAt: SystemCalls.wallClockMilliseconds(), totals: totals, queuePairs: entries)
    }

    /// The queue pair leaves; its last counters stay in the device totals.
    func unregister(_ queuePair: QueuePairEngine, finalCounters: QueuePairStatistics) {
        poller.remove(queuePair.socket)
        queuePairs.withLock {
            $0.retired.add(finalCounters)
            $0.byNumber[queuePair.number.rawValue] = nil
            $0.list.removeAll { $0 === queuePair }
        }
    }

    private func watch(_ queuePair: QueuePairEngine) {
        if queuePair.inputEnded.load(ordering: .relaxed) { return }
        let writable = queuePair.watchingWritable.load(ordering: .relaxed)
        try? poller.add(queuePair.socket, token: UInt64(queuePair.number.rawValue), events: writable ? .epollIn | .epollOut | .epollRDHup : .epollIn | .epollRDHup)
    }

    /// A queue pair whose input ended leaves the epoll set for good.
    func stopWatching(_ queuePair: QueuePairEngine) {
        queuePairs.withLock { if $0.watching { poller.remove(queuePair.socket) } }
    }

    /// Puts the sockets into the epoll set or takes them out (on the progress
    /// thread's changes of mode only).
    private func watchSockets(_ on: Bool) {
        queuePairs.withLock { registry in
            guard registry.watching != on else { return }
            registry.watching = on
            for queuePair in registry.list {
                if on { watch(queuePair) } else { poller.remove(queuePair.socket) }
            }
        }
    }

    /// A queue pair's socket is full: let the progress thread finish the
    /// write when the application is away.
    /// Also the completion queues' descriptors become readable when the
    /// socket has room again: output is work a sleeper must wake up for.
    func wantsWritable(_ number: QueuePairNumber) {
        if let queuePair = queuePairs.withLock({ $0.byNumber[number.rawValue] }),
           !queuePair.inputEnded.load(ordering: .relaxed), !queuePair.watchingWritable.exchange(true, ordering: .relaxed) {
            poller.modify(queuePair.socket, token: UInt64(number.rawValue), events: .epollIn | .epollOut | .epollRDHup)
            queuePair.sendCQ.watch(queuePair, writable: true)
            if queuePair.receiveCQ !== queuePair.sendCQ { queuePair.receiveCQ.watch(queuePair, writable: true) }
        }
    }

    func stopWatchingWritable(_ queuePair: QueuePairEngine) {
        guard queuePair.watchingWritable.exchange(false, ordering: .relaxed) else { return }
        poller.modify(queuePair.socket, token: UInt64(queuePair.number.rawValue), events: .epollIn | .epollRDHup)
        queuePair.sendCQ.watch(queuePair, writable: false)
        if queuePair.receiveCQ !== queuePair.sendCQ { queuePair.receiveCQ.watch(queuePair, writable: false) }
    }

    func postEvent(_ event: AsyncEvent) {
        events.withLock { $0.append(event) }
        logger.debug("async event", metadata: ["event": "\(event)"])
    }

    func pollEvent() -> AsyncEvent? {
        events.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }

    // MARK: - The progress thread

    private func startThreadIfNeeded() {
        guard !threadStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        switch SystemThread.start({ self.runProgressThread() }) {
        case .success(let started):
            thread = started
        case .failure(let failure):
            threadStarted.store(false, ordering: .relaxed)
            logger.error("cannot start the progress thread: \(failure.text); one-sided operations progress only while the application polls")
        }
    }

    /// A queue pair's timer now falls before the progress thread's wake-up:
    /// wake it (once; happens when the application returns after an absence).
    @inline(__always)
    func timerMoved(to deadline: UInt64) {
        if deadline < threadSleepsUntil.load(ordering: .sequentiallyConsistent) {
            if threadSleepsUntil.exchange(0, ordering: .acquiringAndReleasing) != 0 {
                control.signal()
            }
        }
    }

    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        control.signal()
        if threadStarted.load(ordering: .relaxed) {
            thread?.join()
            publisher.remove()
        }
    }

    /// How often the progress thread publishes changed counters.
    static let publishInterval: UInt64 = 1_000_000_000

    /// Publishes the counters if they changed since the last time, with no
    /// allocation (the list of queue pairs is shared, not copied).
    private func publishCounters() {
        let (list, retired) = queuePairs.withLock { ($0.list, $0.retired) }
        publisher.publish(retired: retired) { visit in
            for queuePair in list { visit(queuePair.number.rawValue, queuePair.counters) }
        }
    }

    /// The card: while the application polls (or sleeps in `wait`), it only
    /// looks after queue pairs nobody drives; when the application is away
    /// it sleeps on every socket and serves one-sided operations itself.
    private func runProgressThread() {
        // Its timed sleeps end when asked (a held frame 10 µs ahead), not up
        // to the default slack of 50 µs later (see TimerSlack).
        TimerSlack.set(TimerSlack.precise)
        let capacity = 64
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        var nextPublish: UInt64 = 0
        // The earliest time the last sweep found a timer it will serve.
        var nextSweptTimer = UInt64.max
        while !stopping.load(ordering: .relaxed) {
            let now = MonotonicClock.now()
            if now >= nextPublish {
                publishCounters()
                nextPublish = now + Self.publishInterval
            }
            let waiting = blockedWaiters.load(ordering: .relaxed) > 0
            // The application may have stamped a time after our reading.
            let lastPoll = lastApplicationProgress.load(ordering: .relaxed)
            let polling = lastPoll >= now || now - lastPoll < Self.handOffDelay
            if waiting || polling {
                // Stay off the sockets: waking on every arrival would steal
                // the core the application is polling on.
                watchSockets(false)
                let tick = waiting ? Self.waitingTick : Self.activeTick
                // The application handles the timers of the queue pairs it
                // drives; the sweep below covers the ones it does not, and
                // a timer of those due before the tick wakes the nap.
                let wake = min(now &+ tick, nextSweptTimer)
                if SystemCalls.poll(control.fd, events: Int16(POLLIN), until: wake) != 0 { control.drain() }
                nextSweptTimer = sweep(olderThan: Self.handOffDelay)
                continue
            }
            nextSweptTimer = .max
            watchSockets(true)
            // Wake for the next publication too: the counters of a process
            // whose application is away still reach fabric-info.
            let deadline = min(nearestDeadline(), nextPublish)
            threadSleepsUntil.store(deadline, ordering: .sequentiallyConsistent)
            // A deadline set meanwhile by the application is seen here or
            // wakes us (see `timerMoved`).
            let wake = min(deadline, nearestDeadline())
            // A timer due within the spin threshold: no sleep, the sweep
            // below drives every queue pair, and the loop looks again.
            let count = wake &- MonotonicClock.now() < spinBelow ? 0 : poller.wait(events, capacity: capacity, until: wake)
            threadSleepsUntil.store(0, ordering: .relaxed)
            let after = MonotonicClock.now()
            for i in 0..<count {
                let token = events[i].data.u64
                if token == 0 { control.drain(); continue }
                guard let queuePair = queuePairs.withLock({ $0.byNumber[UInt32(truncatingIfNeeded: token)] }) else { continue }
                queuePair.progress(by: .progressThread, now: after)
                if events[i].events & .epollOut != 0 && !queuePair.hasPendingOutput {
                    stopWatchingWritable(queuePair)
                }
            }
            if count == 0 { _ = sweep(olderThan: 0) }
        }
    }

    /// Drives the queue pairs that no one drove for `age` nanoseconds (all of
    /// them for 0: their timers are due and the application is away).
    /// For an age, returns when the earliest timer among the queue pairs it
    /// looks after will be due and theirs to serve (no sooner than `age`
    /// after their last progress); .max if none. A timer it could not serve
    /// now (the queue pair was busy) is left to the next tick, so that a
    /// nap never ends at a time already passed.
    private func sweep(olderThan age: UInt64) -> UInt64 {
        let now = MonotonicClock.now()
        let list = queuePairs.withLock { $0.list }
        var nextTimer = UInt64.max
        for queuePair in list {
            if age == 0 {
                queuePair.progress(by: .progressThread, now: now)
                continue
            }
            // A queue the application polls drives its queue pairs by
            // readiness: those with nothing to do are rightly left alone.
            if queuePair.sendCQ.isAttended(now: now, within: age) || queuePair.receiveCQ.isAttended(now: now, within: age) { continue }
            let last = queuePair.lastProgress.load(ordering: .relaxed)
            if last < now && now - last >= age {
                queuePair.progress(by: .progressThread, now: now)
            }
            let deadline = queuePair.deadline.load(ordering: .relaxed)
            if deadline != .max {
                let due = max(deadline, queuePair.lastProgress.load(ordering: .relaxed) &+ age)
                if due > now { nextTimer = min(nextTimer, due) }
            }
        }
        return nextTimer
    }

    private func nearestDeadline() -> UInt64 {
        queuePairs.withLock { table in
            var nearest = UInt64.max
            for queuePair in table.list { nearest = min(nearest, queuePair.deadline.load(ordering: .relaxed)) }
            return nearest
        }
    }
}
