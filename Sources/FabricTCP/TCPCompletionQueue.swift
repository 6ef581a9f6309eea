import CFabricShims
import FabricCore
import Glibc
import Synchronization

/// The software NIC's completion queue. Polling an empty queue drives the
/// progress of the queue pairs that report here, on the caller's thread: a
/// busy-polling application moves its own bytes with no thread hop.
public final class TCPCompletionQueue: FabricCompletionQueue, @unchecked Sendable {  // state behind locks or atomics; descriptors immutable
    public let capacity: Int
    let device: TCPDeviceCore
    private let ring: Locked<CompletionRing>
    /// The ring's count, published under its lock: a poll that finds the
    /// queue empty (most polls of a busy-polling receiver) takes no lock.
    /// A completion pushed meanwhile is found by the next look.
    private let queued = Atomic<Int>(0)
    /// Wakes a sleeper when a completion is added by another thread.
    private let notifier: EventNotifier
    /// Holds the notifier and the sockets of the attached queue pairs: the
    /// descriptor a sleeper waits on.
    private let poller: EventPoller
    private let armed = Atomic<Bool>(false)
    /// Set once `fileDescriptor` was asked for: an event loop may sleep on
    /// it, so every completion another thread adds must make it readable.
    private let descriptorMode = Atomic<Bool>(false)
    /// The notifier was signalled for the descriptor and not drained yet
    /// (so that a stream of completions costs one signal, not one each).
    private let descriptorSignalled = Atomic<Bool>(false)
    /// The queue pairs that report here, and how a poll finds their work.
    let attached: AttachedQueuePairs
    /// When the application last polled here (ns, monotonic), and how many
    /// threads sleep in `wait`: the progress thread leaves alone the queue
    /// pairs of a queue someone attends to.
    private let lastPolled = Atomic<UInt64>(0)
    private let sleepers = Atomic<Int>(0)

    init(device: TCPDeviceCore, capacity: Int) throws(FabricError) {
        self.device = device
        self.capacity = capacity
        ring = Locked(CompletionRing(capacity: capacity))
        notifier = try EventNotifier()
        poller = try EventPoller()
        try poller.add(notifier.fd, token: 0, events: .epollIn)
        attached = AttachedQueuePairs(poller: poller)
    }

    public var fileDescriptor: Int32 {
        attached.startWatching()
        descriptorMode.store(true, ordering: .sequentiallyConsistent)
        return poller.fd
    }

    func attach(_ queuePair: QueuePairEngine) { attached.attach(queuePair) }

    func detach(_ queuePair: QueuePairEngine) { attached.detach(queuePair) }

    /// Adds or removes interest in room to write on a queue pair's socket.
    func watch(_ queuePair: QueuePairEngine, writable: Bool) { attached.watch(queuePair, writable: writable) }

    /// Whether the application attends to this queue (polled it within
    /// `age` nanoseconds, or sleeps in `wait`): then its queue pairs need no
    /// help from the progress thread.
    func isAttended(now: UInt64, within age: UInt64) -> Bool {
        if sleepers.load(ordering: .relaxed) > 0 { return true }
        let last = lastPolled.load(ordering: .relaxed)
        return last >= now || now - last < age
    }

    /// Adds a completion (called with the producing queue pair's lock held).
    /// Returns false on overrun.
    @inline(__always)
    func push(_ completion: Completion) -> Bool {
        let pushed = ring.withLock { ring in
            let pushed = ring.push(completion)
            queued.store(ring.count, ordering: .releasing)
            return pushed
        }
        if armed.load(ordering: .relaxed) && armed.exchange(false, ordering: .acquiringAndReleasing) {
            notifier.signal()
        } else if descriptorMode.load(ordering: .relaxed) && !descriptorSignalled.exchange(true, ordering: .acquiringAndReleasing) {
            notifier.signal()
        }
        return pushed
    }

    public func poll(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        if descriptorMode.load(ordering: .relaxed) && descriptorSignalled.load(ordering: .acquiring) {
            // Drain before clearing the flag: a completion pushed in between
            // finds the flag still set and is popped below; one pushed after
            // signals again. (The other order could leave the flag set with
            // the descriptor quiet, and the next completion would not wake.)
            notifier.drain()
            descriptorSignalled.store(false, ordering: .releasing)
        }
        let found = take(into: buffer)
        if found > 0 { return found }
        // One round moves at most a budget of bytes per queue pair (well
        // under the progress thread's hand-off delay), so one stamp suffices.
        let now = device.noteApplicationProgress()
        lastPolled.store(now, ordering: .relaxed)
        attached.progress(now: now)
        return take(into: buffer)
    }

    @inline(__always)
    private func take(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        guard queued.load(ordering: .acquiring) > 0 else { return 0 }
        return ring.withLock { ring in
            let found = ring.pop(into: buffer)
            queued.store(ring.count, ordering: .releasing)
            return found
        }
    }

    /// Drives the attached queue pairs that have work, skipping any another
    /// thread is already driving.
    func progressAttached(now: UInt64) { attached.progress(now: now) }

    var isEmpty: Bool { ring.withLock { $0.count == 0 } }

    public func wait(timeout: Duration?) throws(FabricError) -> Bool {
        if !isEmpty { return true }
        device.blockedWaiters.wrappingAdd(1, ordering: .relaxed)
        sleepers.wrappingAdd(1, ordering: .relaxed)
        defer {
            sleepers.wrappingSubtract(1, ordering: .relaxed)
            device.blockedWaiters.wrappingSubtract(1, ordering: .relaxed)
            lastPolled.store(device.noteApplicationProgress(), ordering: .relaxed)
        }
        // Arm, then look once more: a completion another thread adds from
        // now on signals the notifier. Bytes already waiting in a socket
        // need no look: the sleep below is level-triggered and returns at once.
        armed.store(true, ordering: .sequentiallyConsistent)
        if !isEmpty {
            armed.store(false, ordering: .relaxed)
            return true
        }
        let limit = timeout.map { MonotonicClock.now() &+ MonotonicClock.nanoseconds($0) }
        // The thread's timer slack, while lowered for a timed sleep (see
        // TimerSlack), to be given back on the way out.
        var slackBefore: UInt64? = nil
        defer { if let slackBefore { TimerSlack.set(slackBefore) } }
        // When this wait last ran a progress round itself.
        var lastRound: UInt64? = nil
        var events = epoll_event()
        while true {
            // Sleep no longer than the nearest timer of an attached queue
            // pair (an RNR retry, an owed acknowledgement, a response
            // timeout, a frame the emulated link holds), to the nanosecond.
            var deadline = attached.nearestDeadline()
            // A timer that the last round left in the past is one it could
            // not serve: its queue pair was busy on another thread (which
            // serves it), or its output waits for room in the socket (which
            // wakes this sleep). Look again a millisecond later, as this
            // sleep always did, rather than spin on it.
            if let lastRound, deadline <= lastRound { deadline = lastRound &+ Self.unservedTimerPause }
            if let limit { deadline = min(deadline, limit) }
            if deadline != .max && slackBefore == nil, let slack = TimerSlack.current {
                slackBefore = slack
                TimerSlack.set(TimerSlack.precise)
            }
            // A deadline closer than the spin threshold is not slept for:
            // the round below runs now, and the loop looks again.
            if deadline &- MonotonicClock.now() >= device.spinBelow {
                let woken = sleep(until: deadline, &events)
                if woken.notified { notifier.drain() }
                if woken.any { break }
            }
            let now = MonotonicClock.now()
            lastRound = now
            progressAttached(now: now)
            if !isEmpty { break }
            if let limit, MonotonicClock.now() >= limit {
                armed.store(false, ordering: .relaxed)
                return false
            }
        }
        armed.store(false, ordering: .relaxed)
        return true
    }

    /// How long `wait` pauses on a timer that its own progress round could
    /// not serve (see there).
    static let unservedTimerPause: UInt64 = 1_000_000

    /// Sleeps until a socket or the notifier is readable; true if one is.
    /// With one queue pair, poll(2) on its socket and the notifier puts the
    /// thread straight on the socket's wait queue (one wake-up step less
    /// than through the epoll set, which serves the general case: there a
    /// queue pair whose output waits for room has EPOLLOUT registered, see
    /// `TCPDeviceCore.wantsWritable`).
    /// The sleep ends at `deadline` (nanoseconds, monotonic; .max: none).
    private func sleep(until deadline: UInt64, _ events: inout epoll_event) -> (any: Bool, notified: Bool) {
        if let only = attached.onlyMember {
            // Output stuck in a full socket needs a wake-up when it drains.
            let events = only.hasPendingOutput ? Int16(POLLIN) | Int16(POLLOUT) : Int16(POLLIN)
            // A socket whose input ended is readable for good: not watched
            // (a negative descriptor is skipped by poll).
            let socket = only.inputEnded.load(ordering: .relaxed) ? -1 : only.socket
            var descriptors = (
                pollfd(fd: socket, events: events, revents: 0),
                pollfd(fd: notifier.fd, events: Int16(POLLIN), revents: 0))
            let n = withUnsafeMutablePointer(to: &descriptors) {
                $0.withMemoryRebound(to: pollfd.self, capacity: 2) { SystemCalls.poll($0, 2, until: deadline) }
            }
            return (n > 0, descriptors.1.revents != 0)
        }
        attached.startWatching()
        let n = poller.wait(&events, capacity: 1, until: deadline)
        return (n > 0, n > 0 && events.data.u64 == 0)
    }
}
