import Synchronization

/// The collectives in flight on this rank, each a schedule with the
/// point-to-point requests of its current round. `advance` moves every
/// one as far as the transport has got: it is called from every wait and
/// test of the runtime, so that a nonblocking collective progresses under
/// MPI's progress rule (whatever the program waits for), and a blocking
/// collective is its nonblocking form waited for.
///
/// Lock order: this table's lock, then the transport's; the transport
/// never calls back here.
final class CollectiveProgress: @unchecked Sendable {  // all mutable state under `lock`
    private struct Entry {
        var generation: UInt32 = 0
        var inUse = false
        var schedule: CollectiveSchedule?
        /// Where the round whose transfers are in flight begins in the
        /// schedule's steps, and where it ends (-1: none started).
        var roundStart = -1
        var roundEnd = -1
        var pending: [Pending] = []
        /// Deferred sends in flight: waited for at a `sendsComplete`
        /// step and before the collective completes.
        var deferred: [Pending] = []
        var complete = false
        var error: MPIError?
        /// The tag of its messages: its number on the communicator.
        var tag = 0
    }

    /// A transfer of the current round in flight.
    private struct Pending {
        let request: Request
        /// Receives: the rank it comes from and the bytes it must bring
        /// (every block's size is known to both sides: a difference is a
        /// count that differs between ranks). Sends: -1.
        let peer: Int
        let expected: Int
    }

    private let transport: PointToPointTransport
    private let allocator: ScratchAllocator
    private let lock = ProgressLock()
    /// Collectives started and not yet complete, and failed ones still
    /// draining: a wait with none skips the lock.
    private let running = Atomic<Int>(0)
    @exclusivity(unchecked) private var entries: [Entry] = []
    @exclusivity(unchecked) private var freeEntries: [UInt32] = []
    /// The next collective's number on each internal context: its
    /// messages' tag. Every rank starts a communicator's collectives in
    /// the same order, so the numbers agree.
    /// (Contexts are small numbers, given out in order.)
    @exclusivity(unchecked) private var sequences: [Int] = []
    /// Schedules that failed with transfers still in flight: their memory
    /// is given back once those have ended.
    @exclusivity(unchecked) private var draining: [(pending: [Request], schedule: CollectiveSchedule)] = []

    init(transport: PointToPointTransport) {
        self.transport = transport
        allocator = ScratchAllocator(transport: transport)
    }

    var scratchAllocator: ScratchAllocator { allocator }

    /// Starts `schedule`; its request completes when its last round has.
    func start(_ schedule: CollectiveSchedule) throws(MPIError) -> Request {
        lock.lock()
        defer { lock.unlock() }
        let context = Int(schedule.communicator.internalContext)
        if sequences.count <= context { sequences += Array(repeating: 0, count: context + 1 - sequences.count) }
        let tag = sequences[context]
        sequences[context] = tag == MessageTag.upperBound ? 0 : tag + 1
        let index: UInt32
        if let reused = freeEntries.popLast() {
            index = reused
        } else {
            index = UInt32(entries.count)
            entries.append(Entry())
        }
        entries[Int(index)].inUse = true
        entries[Int(index)].schedule = schedule
        entries[Int(index)].roundStart = -1
        entries[Int(index)].roundEnd = -1
        entries[Int(index)].pending.removeAll(keepingCapacity: true)
        entries[Int(index)].deferred.removeAll(keepingCapacity: true)
        entries[Int(index)].complete = false
        entries[Int(index)].error = nil
        entries[Int(index)].tag = tag
        running.add(1, ordering: .relaxed)
        step(index)
        return Request(index: index, generation: entries[Int(index)].generation | Request.collectiveMark)
    }

    /// Moves every collective in flight as far as its transfers allow.
    func advance() {
        guard running.load(ordering: .relaxed) > 0 else { return }
        lock.lock()
        defer { lock.unlock() }
        for index in entries.indices where entries[index].inUse && !entries[index].complete {
            step(UInt32(index))
        }
        draining.removeAll { drained in
            guard drained.pending.allSatisfy({ (try? transport.isFinished($0)) ?? true }) else { return false }
            for request in drained.pending { _ = transport.collect(request) }
            var schedule = drained.schedule
            schedule.releaseScratch(to: allocator)
            running.subtract(1, ordering: .relaxed)
            return true
        }
    }

    func isFinished(_ request: Request) throws(MPIError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return try entry(request).complete
    }

    /// The status of a complete collective (its error, if any); the
    /// request names nothing afterwards.
    func collect(_ request: Request) -> MessageStatus {
        lock.lock()
        defer { lock.unlock() }
        let index = Int(request.index)
        let status = MessageStatus(source: -1, tag: -1, count: 0, error: entries[index].error)
        entries[index].inUse = false
        entries[index].error = nil
        entries[index].generation = (entries[index].generation &+ 1) & ~Request.collectiveMark
        freeEntries.append(request.index)
        return status
    }

    /// The status if complete, without using the request up.
    func peekStatus(_ request: Request) throws(MPIError) -> MessageStatus? {
        lock.lock()
        defer { lock.unlock() }
        let entry = try entry(request)
        return entry.complete ? MessageStatus(source: -1, tag: -1, count: 0, error: entry.error) : nil
    }

    private func entry(_ request: Request) throws(MPIError) -> Entry {
        let index = Int(request.index)
        guard index < entries.count, entries[index].inUse, entries[index].generation | Request.collectiveMark == request.generation else {
            throw MPIError(.invalidRequest, "\(request) is not in progress (completed already, or not started here)")
        }
        return entries[index]
    }

    // MARK: - Running a schedule

    /// Runs the entry's schedule on: while its round's transfers have all
    /// ended, the round's local steps, then the next round's transfers.
    private func step(_ index: UInt32) {
        let i = Int(index)
        while true {
            for transfer in entries[i].pending {
                guard (try? transport.isFinished(transfer.request)) ?? true else { return }
            }
            var failure: MPIError?
            for transfer in entries[i].pending {
                let status = transport.collect(transfer.request)
                if failure == nil, let error = status.error { failure = error }
                if failure == nil, transfer.expected >= 0, status.count != transfer.expected {
                    failure = MPIError(.truncated, "rank \(transfer.peer) sent \(status.count) bytes where this rank expected \(transfer.expected) (a count or datatype that differs between the ranks)")
                }
            }
            entries[i].pending.removeAll(keepingCapacity: true)
            if let failure { return finish(index, failure) }
            let steps = entries[i].schedule!.steps
            if entries[i].roundStart >= 0 {
                for localStep in steps[entries[i].roundStart..<entries[i].roundEnd] where !localStep.isTransfer { localStep.run() }
            }
            // The next round: up to the next end of round (or the end,
            // once the deferred sends have completed too).
            let start = entries[i].roundEnd + 1
            guard start < steps.count else {
                guard entries[i].deferred.isEmpty else {
                    // A last wait, with no local steps to run after it.
                    swap(&entries[i].pending, &entries[i].deferred)
                    entries[i].roundStart = -1
                    continue
                }
                return finish(index, nil)
            }
            var end = start
            while end < steps.count, !steps[end].isEndOfRound { end += 1 }
            entries[i].roundStart = start
            entries[i].roundEnd = end
            do throws(MPIError) {
                try startTransfers(steps[start..<end], of: index)
            } catch {
                return finish(index, error)
            }
        }
    }

    private func startTransfers(_ round: ArraySlice<CollectiveSchedule.Step>, of index: UInt32) throws(MPIError) {
        let i = Int(index)
        let own = entries[i].schedule!.communicator.internalCommunicator
        let tag = entries[i].tag
        var posted = false
        for step in round {
            switch step {
            case .receive(let buffer, let source):
                let request = try transport.startReceive(buffer, MessageSource(source), MessageTag(tag), own)
                posted = true
                entries[i].pending.append(Pending(request: request, peer: source, expected: buffer.capacity))
            case .send(let buffer, let destination, let deferred):
                let request = try transport.startSend(buffer, destination, tag, own, false)
                posted = true
                if deferred {
                    entries[i].deferred.append(Pending(request: request, peer: destination, expected: -1))
                } else {
                    entries[i].pending.append(Pending(request: request, peer: destination, expected: -1))
                }
            case .sendsComplete:
                entries[i].pending += entries[i].deferred
                entries[i].deferred.removeAll(keepingCapacity: true)
            default:
                break
            }
        }
        // The round's frames leave now: a blocking collective may return
        // (or a nonblocking one be left to compute beside) right after.
        if posted { transport.flush() }
    }

    /// Ends the entry's collective: its request completes (with `error`,
    /// if one), its memory is given back, at once or, after a failure,
    /// once the transfers still in flight have ended.
    private func finish(_ index: UInt32, _ error: MPIError?) {
        let i = Int(index)
        entries[i].complete = true
        entries[i].error = error.map { MPIError($0.kind, "\(entries[i].schedule!.name) failed: \($0.message)") }
        running.subtract(1, ordering: .relaxed)
        var schedule = entries[i].schedule!
        entries[i].schedule = nil
        let inFlight = entries[i].pending + entries[i].deferred
        entries[i].pending.removeAll(keepingCapacity: true)
        entries[i].deferred.removeAll(keepingCapacity: true)
        if inFlight.isEmpty {
            schedule.releaseScratch(to: allocator)
        } else {
            // Receives that can never match are withdrawn; the rest end
            // on their own or with their connection.
            for transfer in inFlight { try? transport.cancel(transfer.request) }
            draining.append((inFlight.map(\.request), schedule))
            running.add(1, ordering: .relaxed)
        }
    }
}
