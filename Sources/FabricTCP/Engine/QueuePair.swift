import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// The engine of a queue pair: one TCP connection. All its state lives in
/// `core`, behind one lock; posting takes it, and so does progress (the
/// application's polls and the progress thread, which only tries it and
/// never waits). The completion queues and the progress thread hold the
/// engine; the application holds the `TCPQueuePair` in front of it.
final class QueuePairEngine: @unchecked Sendable {  // mutable state behind `core`'s lock; the rest is immutable or atomic
    let number: QueuePairNumber
    let limits: QueuePairLimits
    let socket: Int32
    let device: TCPDeviceCore
    let sendCQ: TCPCompletionQueue
    let receiveCQ: TCPCompletionQueue
    let usesSharedReceiveQueue: Bool
    let core: Locked<QueuePairCore>
    /// The engine's next timer (RNR retry, owed ack, response timeout).
    let deadline = Atomic<UInt64>(.max)
    /// When progress last ran, for the progress thread's hand-off.
    let lastProgress = Atomic<UInt64>(0)
    /// Whether a link or fault rules are emulated: then posting may set a
    /// timer (a frame held back), which the engine must publish.
    let emulated: Bool
    /// The progress thread also watches this socket for room to write.
    let watchingWritable = Atomic<Bool>(false)
    /// On which completion queues' timer lists the engine is (bit 1: the
    /// send queue's, bit 2: the receive queue's; see AttachedQueuePairs).
    /// A queue pair with a timer must be on them: with several queue pairs
    /// a poll drives only those with input or a due timer.
    let timerListed = Atomic<UInt8>(0)
    private let timerListMask: UInt8
    private let detached = Atomic<Bool>(false)
    /// Posting threads that announced themselves and have not yet queued
    /// their requests. One that queues while others wait for the lock
    /// leaves the sending to them: the last of a convoy of posting threads
    /// sends every frame queued meanwhile in one sendmsg, where each would
    /// have made its own call ("posts made while a send is in progress").
    let postersWaiting = Atomic<Int>(0)
    /// The peer's side of the stream ended (or reading failed): the socket
    /// is readable for good, so no sleeper watches it any more (a
    /// level-triggered wait on it would return at once, again and again).
    let inputEnded = Atomic<Bool>(false)

    /// The connection's entry in the device's tie-break table, if tagged.
    private let tagRecord: ConnectionTags.RecordID?

    init(socket: Int32, number: QueuePairNumber, device: TCPDeviceCore, setup: QueuePairSetup<TCPDevice>, tagRecord: ConnectionTags.RecordID? = nil) {
        self.socket = socket
        self.tagRecord = tagRecord
        self.number = number
        self.limits = setup.limits
        self.device = device
        self.sendCQ = setup.sendCompletionQueue
        self.receiveCQ = setup.receiveCompletionQueue
        self.usesSharedReceiveQueue = setup.sharedReceiveQueue != nil
        let emulation = LinkEmulation(link: device.link, faults: device.faults, queuePair: number.rawValue, retry: setup.retry)
        emulated = emulation != nil
        timerListMask = setup.sendCompletionQueue === setup.receiveCompletionQueue ? 1 : 3
        core = Locked(QueuePairCore(
            fd: socket, number: number, device: device, sendCQ: setup.sendCompletionQueue,
            receiveCQ: setup.receiveCompletionQueue, sharedReceiveQueue: setup.sharedReceiveQueue,
            domain: ObjectIdentifier(setup.protectionDomain), limits: setup.limits, retry: setup.retry,
            emulation: emulation))
    }

    deinit {
        SystemCalls.close(socket)
    }

    var state: QueuePairState { core.withLock { $0.state } }

    /// Connected: the engine starts moving bytes.
    func activate() {
        SystemCalls.setNonBlocking(socket)
        core.withLock { $0.state = .readyToSend }
        // The completion queues first: a timer set as soon as the progress
        // thread knows the engine must find it attached there, or its
        // timer-list bits would be set with no list holding it.
        sendCQ.attach(self)
        if receiveCQ !== sendCQ { receiveCQ.attach(self) }
        device.register(self)
    }

    @inline(__always)
    func postSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        try device.checkNotForked()
        // What can be checked without the lock: the request's shape.
        try WorkRequestValidation.check(request, limits: limits, capabilities: device.capabilities, on: number)
        if emulated { return try postSendEmulated(request) }
        postersWaiting.wrappingAdd(1, ordering: .relaxed)
        let result = try core.withLock { (core) throws(FabricError) -> PostResult in
            let queued: Result<PostResult, FabricError>
            do throws(FabricError) { queued = .success(try core.queueSend(request)) } catch { queued = .failure(error) }
            if lastPoster() { core.sendQueued() }
            return try queued.get()
        }
        noteRequestsInFlight()
        return result
    }

    /// Called under the lock once a poster queued its requests: whether no
    /// other poster waits to queue more (then this one sends them all).
    @inline(__always)
    private func lastPoster() -> Bool {
        postersWaiting.wrappingSubtract(1, ordering: .relaxed).newValue == 0
    }

    /// Posts the requests as one batch: each is checked first (none is
    /// posted if one is refused, as the verbs backend does), then they are
    /// queued under one lock and leave in as few sendmsg calls as fit.
    func postSend(_ requests: UnsafeBufferPointer<SendWorkRequest>) throws(FabricError) -> Int {
        try device.checkNotForked()
        for request in requests {
            try WorkRequestValidation.check(request, limits: limits, capabilities: device.capabilities, on: number)
        }
        if requests.isEmpty { return 0 }
        if emulated {
            let (posted, next) = try core.withLock { (core) throws(FabricError) -> (Int, UInt64) in
                (try core.postSend(requests), core.nextDeadline())
            }
            publishEmulatedDeadline(next)
            return posted
        }
        postersWaiting.wrappingAdd(1, ordering: .relaxed)
        let posted = try core.withLock { (core) throws(FabricError) -> Int in
            var queued = 0
            var failure: FabricError?
            for request in requests {
                do throws(FabricError) {
                    guard try core.queueSend(request) == .posted else { break }
                } catch {
                    failure = error
                    break
                }
                queued += 1
            }
            if lastPoster() { core.sendQueued() }
            if let failure { throw failure }
            return queued
        }
        if posted > 0 { noteRequestsInFlight() }
        return posted
    }

    @inline(__always)
    private func noteRequestsInFlight() {
        // A request in flight needs its response timer watched: a deadline
        // of 0 makes the next poll drive this queue pair, which then
        // computes the real one (a post does not: it would cost every post
        // a clock reading). The deadline is published before the timer
        // bits are read: a scan dropping this queue pair from its timer
        // list clears its bit before it reads the deadline, so one of the
        // two sees the other and the request never goes without a timer.
        if deadline.load(ordering: .relaxed) == .max { deadline.store(0, ordering: .sequentiallyConsistent) }
        if timerListed.load(ordering: .sequentiallyConsistent) != timerListMask { listTimer() }
    }

    /// Joins the timer lists of both completion queues.
    @inline(never)
    func listTimer() {
        let before = timerListed.bitwiseOr(timerListMask, ordering: .sequentiallyConsistent).oldValue
        if before & 1 == 0 { sendCQ.attached.listTimer(self) }
        if timerListMask & 2 != 0 && before & 2 == 0 { receiveCQ.attached.listTimer(self) }
    }

    /// Posting on an emulated link may hold the frame back: its release
    /// time becomes the engine's timer at once.
    private func postSendEmulated(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        let (result, next) = try core.withLock { (core) throws(FabricError) -> (PostResult, UInt64) in
            (try core.postSend(request), core.nextDeadline())
        }
        publishEmulatedDeadline(next)
        return result
    }

    private func publishEmulatedDeadline(_ next: UInt64) {
        if next < deadline.load(ordering: .relaxed) {
            deadline.store(next, ordering: .sequentiallyConsistent)
            device.timerMoved(to: next)
        }
        if next != .max && timerListed.load(ordering: .sequentiallyConsistent) != timerListMask { listTimer() }
    }

    @inline(__always)
    func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult {
        try device.checkNotForked()
        try WorkRequestValidation.check(request, limits: limits, usesSharedReceiveQueue: usesSharedReceiveQueue, on: number)
        return try core.withLock { (core) throws(FabricError) -> PostResult in try core.postReceive(request) }
    }

    /// One round of progress if no other thread is driving this queue pair.
    @inline(__always)
    func progress(by driver: ProgressDriver, now: UInt64) {
        // The deadline is stored under the lock: stored after it, it could
        // overwrite the 0 a post made in between (its request then had no
        // timer).
        if let (next, stuck, moved, ended) = core.withLockIfAvailable({ core -> (UInt64, Bool, Bool, Bool) in
            let next = core.progress(by: driver, now: now)
            let moved = deadline.load(ordering: .relaxed) != next
            if moved { deadline.store(next, ordering: .sequentiallyConsistent) }
            return (next, core.outputStuck, moved, core.input.ended)
        }) {
            if ended && !inputEnded.load(ordering: .relaxed) { stopWatchingInput() }
            if moved {
                if next != .max {
                    device.timerMoved(to: next)
                    if timerListed.load(ordering: .sequentiallyConsistent) != timerListMask { listTimer() }
                }
            }
            lastProgress.store(now, ordering: .relaxed)
            // The output drained: stop watching for room to write.
            if !stuck && watchingWritable.load(ordering: .relaxed) { device.stopWatchingWritable(self) }
        }
    }

    /// The input ended: out of every epoll set, and out of the single
    /// queue pair's sleep (see `inputEnded`).
    @inline(never)
    private func stopWatchingInput() {
        inputEnded.store(true, ordering: .sequentiallyConsistent)
        device.stopWatching(self)
        sendCQ.attached.stopWatching(self)
        if receiveCQ !== sendCQ { receiveCQ.attached.stopWatching(self) }
    }

    /// Whether output is waiting for the socket to drain.
    var hasPendingOutput: Bool {
        core.withLock { $0.outputWaitsForSocket }
    }

    func disconnect() {
        if device.forkDetection.isForkedChild { return }
        core.withLock { core in
            if core.state == .readyToSend {
                core.queueDisconnect()
                core.enterError(.flushed, .disconnected)
            }
            core.shutdownSocket()
        }
        detach()
    }

    /// The owner let go: end the connection abruptly and leave.
    func close() {
        // In a forked child the socket is shared with the parent: shutting it
        // down would end the parent's connection. Only let go of it.
        if device.forkDetection.isForkedChild { return }
        core.withLock { core in
            if core.state == .readyToSend { core.enterError(.flushed, .disconnected) }
            core.socketShut = true
            SystemCalls.shutdown(core.fd)
        }
        detach()
    }

    /// Leaves the completion queues and the progress thread's set.
    func detach() {
        guard !detached.exchange(true, ordering: .acquiringAndReleasing) else { return }
        sendCQ.detach(self)
        if receiveCQ !== sendCQ { receiveCQ.detach(self) }
        device.unregister(self, finalCounters: counters)
        device.forgetTag(tagRecord)
    }

    /// The most READs and atomics this queue pair had in flight at once.
    var outstandingReadAtomicsHighWater: Int {
        core.withLock { $0.outstandingReadAtomicsHighWater }
    }

    /// How often a large SEND was read ahead into its receive, and how
    /// often what was read ahead was another frame.
    var readAhead: (hits: Int, misses: Int) {
        core.withLock { ($0.readAheadHits, $0.readAheadMisses) }
    }

    /// Counters of this queue pair.
    var counters: QueuePairStatistics {
        core.withLock { $0.counters }
    }
}
