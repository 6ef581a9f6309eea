import CFabricShims
import FabricCore
import Glibc
import Synchronization

/// A fixed ring of completions. No allocation after creation.
struct CompletionRing: ~Copyable {
    let storage: UnsafeMutablePointer<Completion>
    let capacity: Int
    var head = 0
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: .empty, count: capacity)
    }

    deinit {
        storage.deinitialize(count: capacity)
        storage.deallocate()
    }

    /// False when full (an overrun).
    @inline(__always)
    mutating func push(_ completion: Completion) -> Bool {
        guard count < capacity else { return false }
        var index = head + count
        if index >= capacity { index -= capacity }
        storage[index] = completion
        count += 1
        return true
    }

    @inline(__always)
    mutating func pop(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        let n = min(count, buffer.count)
        for i in 0..<n {
            buffer[i] = storage[head]
            head += 1
            if head == capacity { head = 0 }
        }
        count -= n
        return n
    }
}

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
    private struct Attached {
        var list: [QueuePairEngine] = []
        /// Whether the sockets are in the epoll set: only once someone sleeps
        /// through it (a registration costs every arriving packet a callback,
        /// which busy-polling applications need not pay).
        var watching = false
    }
    private let attached = Locked(Attached())

    init(device: TCPDeviceCore, capacity: Int) throws(FabricError) {
        self.device = device
        self.capacity = capacity
        ring = Locked(CompletionRing(capacity: capacity))
        notifier = try EventNotifier()
        poller = try EventPoller()
        try poller.add(notifier.fd, token: 0, events: .epollIn)
    }

    public var fileDescriptor: Int32 {
        startWatching()
        descriptorMode.store(true, ordering: .sequentiallyConsistent)
        return poller.fd
    }

    private func startWatching() {
        attached.withLock { set in
            guard !set.watching else { return }
            set.watching = true
            for queuePair in set.list { add(queuePair) }
        }
    }

    private func add(_ queuePair: QueuePairEngine) {
        let writable = queuePair.watchingWritable.load(ordering: .relaxed)
        try? poller.add(queuePair.socket, token: UInt64(queuePair.number.rawValue), events: writable ? .epollIn | .epollOut | .epollRDHup : .epollIn | .epollRDHup)
    }

    func attach(_ queuePair: QueuePairEngine) {
        attached.withLock { set in
            if !set.list.contains(where: { $0 === queuePair }) {
                set.list.append(queuePair)
                if set.watching { add(queuePair) }
            }
        }
    }

    func detach(_ queuePair: QueuePairEngine) {
        attached.withLock { set in
            if let index = set.list.firstIndex(where: { $0 === queuePair }) {
                set.list.remove(at: index)
                if set.watching { poller.remove(queuePair.socket) }
            }
        }
    }

    /// Adds or removes interest in room to write on a queue pair's socket.
    func watch(_ queuePair: QueuePairEngine, writable: Bool) {
        let events: UInt32 = writable ? .epollIn | .epollOut | .epollRDHup : .epollIn | .epollRDHup
        attached.withLock { set in
            if set.watching { poller.modify(queuePair.socket, token: UInt64(queuePair.number.rawValue), events: events) }
        }
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
        progressAttached(now: device.noteApplicationProgress())
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

    /// Drives every attached queue pair once, skipping any another thread is
    /// already driving.
    func progressAttached(now: UInt64) {
        let queuePairs = attached.withLock { $0.list }
        // The copy holds every engine for the round: the loop needs no
        // reference of its own to each (two atomic operations per engine
        // per poll, which a busy-polling receiver pays millions of times).
        queuePairs.withUnsafeBufferPointer { engines in
            for index in engines.indices {
                Unmanaged.passUnretained(engines[index])._withUnsafeGuaranteedRef {
                    $0.progress(by: .application, now: now)
                }
            }
        }
    }

    var isEmpty: Bool { ring.withLock { $0.count == 0 } }

    public func wait(timeout: Duration?) throws(FabricError) -> Bool {
        if !isEmpty { return true }
        device.blockedWaiters.wrappingAdd(1, ordering: .relaxed)
        defer {
            device.blockedWaiters.wrappingSubtract(1, ordering: .relaxed)
            device.noteApplicationProgress()
        }
        // Arm, then look once more: a completion another thread adds from
        // now on signals the notifier. Bytes already waiting in a socket
        // need no look: the sleep below is level-triggered and returns at once.
        armed.store(true, ordering: .sequentiallyConsistent)
        if !isEmpty {
            armed.store(false, ordering: .relaxed)
            return true
        }
        let start = MonotonicClock.now()
        let limit = timeout.map { start &+ MonotonicClock.nanoseconds($0) }
        var events = epoll_event()
        while true {
            // Sleep no longer than the nearest timer of an attached queue
            // pair (an RNR retry, an owed acknowledgement, a response timeout).
            let now = MonotonicClock.now()
            var deadline = nearestDeadline()
            if let limit { deadline = min(deadline, limit) }
            let milliseconds: Int32 = deadline == .max ? -1 : Int32(min((deadline > now ? deadline - now : 0) / 1_000_000 + 1, 60_000))
            let woken = sleep(milliseconds, &events)
            if woken.notified { notifier.drain() }
            if woken.any { break }
            progressAttached(now: MonotonicClock.now())
            if !isEmpty { break }
            if let limit, MonotonicClock.now() >= limit {
                armed.store(false, ordering: .relaxed)
                return false
            }
        }
        armed.store(false, ordering: .relaxed)
        return true
    }

    /// Sleeps until a socket or the notifier is readable; true if one is.
    /// With one queue pair, poll(2) on its socket and the notifier puts the
    /// thread straight on the socket's wait queue (one wake-up step less
    /// than through the epoll set, which serves the general case).
    private func sleep(_ milliseconds: Int32, _ events: inout epoll_event) -> (any: Bool, notified: Bool) {
        let list = attached.withLock { $0.list }
        // Output stuck in a full socket needs a wake-up when it drains.
        let writing = list.contains { $0.hasPendingOutput }
        if list.count == 1 {
            let events = writing ? Int16(POLLIN) | Int16(POLLOUT) : Int16(POLLIN)
            var descriptors = (
                pollfd(fd: list[0].socket, events: events, revents: 0),
                pollfd(fd: notifier.fd, events: Int16(POLLIN), revents: 0))
            let n = withUnsafeMutablePointer(to: &descriptors) {
                $0.withMemoryRebound(to: pollfd.self, capacity: 2) { Glibc.poll($0, 2, milliseconds) }
            }
            return (n > 0, descriptors.1.revents != 0)
        }
        startWatching()
        let n = poller.wait(&events, capacity: 1, timeoutMilliseconds: writing && (milliseconds < 0 || milliseconds > 1) ? 1 : milliseconds)
        return (n > 0, n > 0 && events.data.u64 == 0)
    }

    private func nearestDeadline() -> UInt64 {
        attached.withLock { list in
            var nearest = UInt64.max
            for queuePair in list.list { nearest = min(nearest, queuePair.deadline.load(ordering: .relaxed)) }
            return nearest
        }
    }
}
