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
final class AttachedQueuePairs: @unchecked Sendable {  // see the comments on `members` and `scan`
    private struct Members {
        var list: [QueuePairEngine] = []
        var byNumber: [UInt32: QueuePairEngine] = [:]
        /// Queue pairs that asked to join the timer list since the last scan.
        var joining: [QueuePairEngine] = []
        /// Whether the sockets are in the epoll set: from the second queue
        /// pair on, or once someone sleeps through the set.
        var watching = false
    }
    /// Membership, behind its lock; `list` keeps every engine alive.
    private let members = Locked(Members())
    /// What a readiness scan uses, touched only by the thread that holds
    /// `scanning` (and by `detach`, which takes it too): so a scan can use
    /// engines through unretained references (epoll tokens and the timer
    /// list) while none of them can leave.
    private struct Scan {
        var timed: [Unmanaged<QueuePairEngine>] = []
        /// Takes the joining list in exchange for an empty one (both keep
        /// their capacity: admitting engines allocates nothing).
        var admitting: [QueuePairEngine] = []
    }
    private let scan: UnsafeMutablePointer<Scan>
    private let scanning = Atomic<Bool>(false)
    /// Engines waiting in `joining`.
    private let joiningCount = Atomic<Int>(0)
    let poller: EventPoller
    /// Two or more queue pairs: polls go by readiness.
    private let byReadiness = Atomic<Bool>(false)
    /// The address of the only queue pair (0 with none or several), set
    /// under the membership lock. A poll drives it through this unretained
    /// address while it holds `scanning`, which `detach` takes before the
    /// engine can go: a lock, a copy of the list and a retain and release
    /// of it cost a busy-polling application four atomic operations per
    /// poll.
    private let single = Atomic<UInt>(0)
    /// Events one poll takes from the epoll set; more wait for the next poll.
    static let eventCapacity = 64
    private let events: UnsafeMutablePointer<epoll_event>

    init(poller: EventPoller) {
        self.poller = poller
        events = .allocate(capacity: Self.eventCapacity)
        scan = .allocate(capacity: 1)
        scan.initialize(to: Scan())
    }

    deinit {
        events.deallocate()
        scan.deinitialize(count: 1)
        scan.deallocate()
    }

    var count: Int { members.withLock { $0.list.count } }

    /// An engine's epoll token: its address (0 is the notifier's).
    @inline(__always)
    private static func token(_ queuePair: QueuePairEngine) -> UInt64 {
        UInt64(UInt(bitPattern: Unmanaged.passUnretained(queuePair).toOpaque()))
    }

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
            publishSingle(set.list)
        }
    }

    /// Publishes the only member's address (called under the membership
    /// lock, after every change of the list).
    private func publishSingle(_ list: [QueuePairEngine]) {
        let address = list.count == 1 ? UInt(bitPattern: Unmanaged.passUnretained(list[0]).toOpaque()) : 0
        single.store(address, ordering: .releasing)
    }

    func detach(_ queuePair: QueuePairEngine) {
        // No scan may be using the engine's unretained references meanwhile
        // (a scan is short and never blocks).
        while scanning.exchange(true, ordering: .acquiring) { SystemCalls.yield() }
        defer { scanning.store(false, ordering: .releasing) }
        scan.pointee.timed.removeAll { $0.takeUnretainedValue() === queuePair }
        members.withLock { set in
            guard set.byNumber.removeValue(forKey: queuePair.number.rawValue) != nil else { return }
            set.list.removeAll { $0 === queuePair }
            set.joining.removeAll { $0 === queuePair }
            if set.watching { poller.remove(queuePair.socket) }
            byReadiness.store(set.list.count > 1, ordering: .releasing)
            publishSingle(set.list)
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
        if queuePair.inputEnded.load(ordering: .relaxed) { return }
        let writable = queuePair.watchingWritable.load(ordering: .relaxed)
        try? poller.add(queuePair.socket, token: Self.token(queuePair), events: Self.interest(writable: writable))
    }

    static func interest(writable: Bool) -> UInt32 {
        writable ? .epollIn | .epollOut | .epollRDHup : .epollIn | .epollRDHup
    }

    /// A queue pair whose input ended leaves the epoll set for good.
    func stopWatching(_ queuePair: QueuePairEngine) {
        members.withLock { set in
            if set.watching { poller.remove(queuePair.socket) }
        }
    }

    /// Adds or removes interest in room to write on a queue pair's socket.
    func watch(_ queuePair: QueuePairEngine, writable: Bool) {
        members.withLock { set in
            if set.watching && !queuePair.inputEnded.load(ordering: .relaxed) { poller.modify(queuePair.socket, token: Self.token(queuePair), events: Self.interest(writable: writable)) }
        }
    }

    /// A queue pair whose timer may be set joins the timer list (at the
    /// next scan).
    func listTimer(_ queuePair: QueuePairEngine) {
        members.withLock { set in
            guard set.byNumber[queuePair.number.rawValue] != nil, !set.joining.contains(where: { $0 === queuePair }) else { return }
            set.joining.append(queuePair)
            joiningCount.store(set.joining.count, ordering: .releasing)
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

    /// Zero or one queue pair: drive it, unless another thread is driving
    /// it already (it would take the completions) or it is leaving.
    @inline(__always)
    private func progressEach(now: UInt64) {
        if single.load(ordering: .relaxed) == 0 { return }
        guard !scanning.exchange(true, ordering: .acquiring) else { return }
        // Read again under the flag: `detach` may have cleared it before.
        let address = single.load(ordering: .acquiring)
        if let engine = UnsafeRawPointer(bitPattern: address) {
            Unmanaged<QueuePairEngine>.fromOpaque(engine)._withUnsafeGuaranteedRef {
                $0.progress(by: .application, now: now)
            }
        }
        scanning.store(false, ordering: .releasing)
    }

    /// Several queue pairs: those the epoll set reports, then due timers.
    /// Another thread scanning already: it does the work, as it would take
    /// the completions.
    @inline(never)
    private func progressReady(now: UInt64) {
        guard !scanning.exchange(true, ordering: .acquiring) else { return }
        defer { scanning.store(false, ordering: .releasing) }
        let count = poller.wait(events, capacity: Self.eventCapacity, timeoutMilliseconds: 0)
        for index in 0..<count {
            let token = events[index].data.u64
            // Token 0 is the notifier: its owner drains it.
            guard token != 0, let address = UnsafeRawPointer(bitPattern: UInt(token)) else { continue }
            Unmanaged<QueuePairEngine>.fromOpaque(address)._withUnsafeGuaranteedRef {
                $0.progress(by: .application, now: now)
            }
        }
        if joiningCount.load(ordering: .relaxed) > 0 { admitJoining() }
        progressDueTimers(now: now)
    }

    /// Moves the engines that asked to join into the scan's timer list.
    @inline(never)
    private func admitJoining() {
        members.withLock { set in
            swap(&set.joining, &scan.pointee.admitting)
            joiningCount.store(0, ordering: .relaxed)
        }
        for queuePair in scan.pointee.admitting where !scan.pointee.timed.contains(where: { $0.takeUnretainedValue() === queuePair }) {
            scan.pointee.timed.append(Unmanaged.passUnretained(queuePair))
        }
        scan.pointee.admitting.removeAll(keepingCapacity: true)
    }

    /// Drives the listed queue pairs whose timer is due (once per round: a
    /// queue pair the epoll set reported was driven already), and drops
    /// from the list those that have no timer.
    @inline(__always)
    private func progressDueTimers(now: UInt64) {
        var index = 0
        while index < scan.pointee.timed.count {
            let reference = scan.pointee.timed[index]
            let due = reference._withUnsafeGuaranteedRef { queuePair -> Bool? in
                let deadline = queuePair.deadline.load(ordering: .relaxed)
                if deadline == .max { return dropFromTimers(queuePair) ? nil : false }
                return deadline <= now && queuePair.lastProgress.load(ordering: .relaxed) != now
            }
            guard let due else {
                scan.pointee.timed.swapAt(index, scan.pointee.timed.count - 1)
                scan.pointee.timed.removeLast()
                continue
            }
            if due { reference._withUnsafeGuaranteedRef { $0.progress(by: .application, now: now) } }
            index += 1
        }
    }

    /// Whether a queue pair with no timer leaves the list: clear our bit,
    /// then look again; a timer set meanwhile either sees the bit clear
    /// (and asks to join again) or is seen here (and the queue pair stays).
    @inline(never)
    private func dropFromTimers(_ queuePair: QueuePairEngine) -> Bool {
        let mine = bit(of: queuePair)
        queuePair.timerListed.bitwiseAnd(~mine, ordering: .sequentiallyConsistent)
        if queuePair.deadline.load(ordering: .sequentiallyConsistent) == .max { return true }
        queuePair.timerListed.bitwiseOr(mine, ordering: .relaxed)
        return false
    }

    /// The nearest timer of the attached queue pairs (.max: none). On the
    /// sleeping path only, so it may look at each.
    func nearestDeadline() -> UInt64 {
        members.withLock { set in
            var nearest = UInt64.max
            for queuePair in set.list { nearest = min(nearest, queuePair.deadline.load(ordering: .relaxed)) }
            return nearest
        }
    }

    /// The only queue pair, if exactly one is attached (a sleeper then
    /// waits on its socket directly).
    var onlyMember: QueuePairEngine? {
        members.withLock { $0.list.count == 1 ? $0.list[0] : nil }
    }
}
