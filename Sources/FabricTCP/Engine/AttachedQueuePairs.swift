import CFabricShims
import FabricCore
import Glibc
import Synchronization

/// The queue pairs that report to one completion queue, and how a poll
/// finds the ones with work, at a cost in proportion to the work rather
/// than to the number of queue pairs:
/// - one queue pair is driven directly (an empty poll costs one `recv`
///   that finds nothing; no epoll registration slows its packets);
/// - with two or more, their sockets sit in the completion queue's epoll
///   set, which a poll asks without sleeping (one `epoll_wait`): only queue
///   pairs with input, or with stuck output and room again, are driven;
///   then those on the timer list whose timer is due (the list holds only
///   queue pairs with a timer: an owed acknowledgement, a response timeout,
///   an RNR retry, a held frame).
/// The same epoll set, with the completion queue's notifier, is what a
/// sleeper in `wait` or an event loop on `fileDescriptor` sleeps on.
final class AttachedQueuePairs: @unchecked Sendable {  // mutable state behind `members`'s lock; `poller` is thread-safe
    private struct Members {
        var list: [QueuePairEngine] = []
        var byNumber: [UInt32: QueuePairEngine] = [:]
        /// Queue pairs whose timer may be set (see `QueuePairEngine.timerListed`).
        var timed: [QueuePairEngine] = []
        /// Whether the sockets are in the epoll set: from the second queue
        /// pair on, or once someone sleeps through the set.
        var watching = false
    }
    private let members = Locked(Members())
    let poller: EventPoller
    /// Two or more queue pairs: polls go by readiness.
    private let byReadiness = Atomic<Bool>(false)
    /// Events one poll takes from the epoll set; more wait for the next poll.
    static let eventCapacity = 64
    /// Written only by the thread that holds `scanning`.
    private let events: UnsafeMutablePointer<epoll_event>
    /// One poller at a time reads readiness (several may poll a queue; the
    /// others find the work taken, as they would find completions taken).
    private let scanning = Atomic<Bool>(false)

    init(poller: EventPoller) {
        self.poller = poller
        events = .allocate(capacity: Self.eventCapacity)
    }

    deinit { events.deallocate() }

    var count: Int { members.withLock { $0.list.count } }

    func attach(_ queuePair: QueuePairEngine) {
        members.withLock { set in
            guard set.byNumber[queuePair.number.rawValue] == nil else { return }
            set.list.append(queuePair)
            set.byNumber[queuePair.number.rawValue] = queuePair
            if set.list.count > 1 && !set.watching {
                set.watching = true
                for member in set.list where member !== queuePair { watch(member) }
            }
            if set.watching { watch(queuePair) }
            byReadiness.store(set.list.count > 1, ordering: .releasing)
        }
    }

    func detach(_ queuePair: QueuePairEngine) {
        members.withLock { set in
            guard set.byNumber.removeValue(forKey: queuePair.number.rawValue) != nil else { return }
            set.list.removeAll { $0 === queuePair }
            set.timed.removeAll { $0 === queuePair }
            if set.watching { poller.remove(queuePair.socket) }
            byReadiness.store(set.list.count > 1, ordering: .releasing)
        }
    }

    /// Puts every socket into the epoll set (a sleeper is about to use it).
    func startWatching() {
        members.withLock { set in
            guard !set.watching else { return }
            set.watching = true
            for queuePair in set.list { watch(queuePair) }
        }
    }

    private func watch(_ queuePair: QueuePairEngine) {
        let writable = queuePair.watchingWritable.load(ordering: .relaxed)
        try? poller.add(queuePair.socket, token: UInt64(queuePair.number.rawValue), events: Self.interest(writable: writable))
    }

    static func interest(writable: Bool) -> UInt32 {
        writable ? .epollIn | .epollOut | .epollRDHup : .epollIn | .epollRDHup
    }

    /// Adds or removes interest in room to write on a queue pair's socket.
    func watch(_ queuePair: QueuePairEngine, writable: Bool) {
        members.withLock { set in
            if set.watching { poller.modify(queuePair.socket, token: UInt64(queuePair.number.rawValue), events: Self.interest(writable: writable)) }
        }
    }

    /// A queue pair whose timer may be set joins the timer list.
    func listTimer(_ queuePair: QueuePairEngine) {
        members.withLock { set in
            guard set.byNumber[queuePair.number.rawValue] != nil, !set.timed.contains(where: { $0 === queuePair }) else { return }
            set.timed.append(queuePair)
        }
    }

    /// This queue's bit in a queue pair's `timerListed`.
    @inline(__always)
    private func bit(of queuePair: QueuePairEngine) -> UInt8 {
        queuePair.sendCQ.attached === self ? 1 : 2
    }

    // MARK: - Progress

    /// Drives the queue pairs that have work (see the type's comment).
    @inline(__always)
    func progress(now: UInt64) {
        if !byReadiness.load(ordering: .relaxed) {
            progressEach(now: now)
        } else {
            progressReady(now: now)
        }
    }

    /// Zero or one queue pair: drive it.
    @inline(__always)
    private func progressEach(now: UInt64) {
        let list = members.withLock { $0.list }
        // The copy holds every engine for the round: the loop needs no
        // reference of its own (two atomic operations per engine per poll).
        list.withUnsafeBufferPointer { engines in
            for index in engines.indices {
                Unmanaged.passUnretained(engines[index])._withUnsafeGuaranteedRef {
                    $0.progress(by: .application, now: now)
                }
            }
        }
    }

    @inline(never)
    private func progressReady(now: UInt64) {
        guard !scanning.exchange(true, ordering: .acquiring) else { return }
        defer { scanning.store(false, ordering: .releasing) }
        let count = poller.wait(events, capacity: Self.eventCapacity, timeoutMilliseconds: 0)
        for index in 0..<count {
            let token = events[index].data.u64
            // Token 0 is the notifier: its owner drains it.
            guard token != 0, let queuePair = members.withLock({ $0.byNumber[UInt32(truncatingIfNeeded: token)] }) else { continue }
            queuePair.progress(by: .application, now: now)
        }
        progressDueTimers(now: now)
    }

    /// Drives the queue pairs on the timer list whose timer is due, and
    /// drops from the list those that have none.
    private func progressDueTimers(now: UInt64) {
        let timed = members.withLock { set -> [QueuePairEngine] in
            var index = 0
            while index < set.timed.count {
                let queuePair = set.timed[index]
                if queuePair.deadline.load(ordering: .relaxed) == .max {
                    // Clear our bit, then look again: a timer set meanwhile
                    // either sees the bit clear (and lists itself again) or
                    // is seen here.
                    let mine = bit(of: queuePair)
                    queuePair.timerListed.bitwiseAnd(~mine, ordering: .sequentiallyConsistent)
                    if queuePair.deadline.load(ordering: .sequentiallyConsistent) == .max {
                        set.timed.swapAt(index, set.timed.count - 1)
                        set.timed.removeLast()
                        continue
                    }
                    queuePair.timerListed.bitwiseOr(mine, ordering: .relaxed)
                }
                index += 1
            }
            return set.timed
        }
        timed.withUnsafeBufferPointer { engines in
            for index in engines.indices where engines[index].deadline.load(ordering: .relaxed) <= now {
                Unmanaged.passUnretained(engines[index])._withUnsafeGuaranteedRef {
                    $0.progress(by: .application, now: now)
                }
            }
        }
    }

    /// The nearest timer of the attached queue pairs (.max: none).
    func nearestDeadline() -> UInt64 {
        members.withLock { set in
            var nearest = UInt64.max
            // Zero or one queue pair is not listed (its timers are seen by
            // driving it); several are, when they have a timer.
            let candidates = set.list.count > 1 ? set.timed : set.list
            for queuePair in candidates { nearest = min(nearest, queuePair.deadline.load(ordering: .relaxed)) }
            return nearest
        }
    }

    /// The only queue pair, if exactly one is attached (a sleeper then
    /// waits on its socket directly).
    var onlyMember: QueuePairEngine? {
        members.withLock { $0.list.count == 1 ? $0.list[0] : nil }
    }
}
