import Glibc
import Synchronization

/// The epochs of one-sided communication: fences (active target, every
/// rank), post/start/complete/wait (active target, groups), and locks
/// (passive target: the target takes no part). A lock is a word of the
/// target's control block (`WindowControl`) changed with the fabric's
/// atomics: shared holders add one, an exclusive holder sets a high bit
/// when the word is zero; a holder that finds the other kind there backs
/// off and tries again. Flushes wait for this rank's operations to
/// complete at their targets.
extension MPIRuntime {
    // MARK: - Fence

    /// Completes every operation of the epoch that ends here on every rank,
    /// and opens the next one unless `noSucceed` (MPI_Win_fence).
    public func fence(_ assertions: FenceAssertions = [], on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            let passive = state.epochs.withLock { !$0.locks.isEmpty || $0.lockAll }
            guard !passive else { throw MPIError(.windowSynchronization, "a fence on \(window) while this rank holds a lock on it") }
            try completeOperations(on: state, targets: nil)
            try barrier(state.communicator)
            state.epochs.withLock { $0.fenceOpen = !assertions.contains(.noSucceed) }
        } catch {
            try raise(error) as Void
        }
    }

    // MARK: - Passive target

    /// Starts an access epoch on `target` alone (MPI_Win_lock); returns once
    /// the lock is held.
    public func lock(_ type: WindowLock, target: Int, on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            try checkTarget(target, state, "a lock")
            try state.epochs.withLock { (epochs) throws(MPIError) in
                guard epochs.locks[target] == nil, !epochs.lockAll else {
                    throw MPIError(.windowSynchronization, "a lock of rank \(target) of \(window), which this rank has locked already")
                }
            }
            try take(type, on: state, target: target)
            state.epochs.withLock {
                $0.locks[target] = type
                $0.forgetAttachedRanges(of: target)
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Completes this rank's operations on `target` and ends the epoch
    /// (MPI_Win_unlock).
    public func unlock(target: Int, on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            try checkTarget(target, state, "an unlock")
            guard let type = state.epochs.withLock({ $0.locks[target] }) else {
                throw MPIError(.windowSynchronization, "an unlock of rank \(target) of \(window), which this rank has not locked")
            }
            try completeOperations(on: state, target: target)
            try give(type, on: state, target: target)
            state.epochs.withLock { $0.locks[target] = nil }
        } catch {
            try raise(error) as Void
        }
    }

    /// A shared lock on every rank of the window (MPI_Win_lock_all).
    public func lockAll(on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            try state.epochs.withLock { (epochs) throws(MPIError) in
                guard epochs.locks.isEmpty, !epochs.lockAll else {
                    throw MPIError(.windowSynchronization, "a lock-all of \(window) while this rank holds a lock on it")
                }
            }
            for target in state.targets.indices { try take(.shared, on: state, target: target) }
            state.epochs.withLock {
                $0.lockAll = true
                $0.forgetAttachedRanges()
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// MPI_Win_unlock_all.
    public func unlockAll(on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard state.epochs.withLock({ $0.lockAll }) else {
                throw MPIError(.windowSynchronization, "an unlock-all of \(window) without a lock-all")
            }
            try completeOperations(on: state, targets: nil)
            for target in state.targets.indices { try give(.shared, on: state, target: target) }
            state.epochs.withLock { $0.lockAll = false }
        } catch {
            try raise(error) as Void
        }
    }

    /// Waits until this rank's operations on `target` are complete there
    /// (MPI_Win_flush); `nil`: on every rank (MPI_Win_flush_all).
    public func flush(target: Int? = nil, on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            if let target { try checkTarget(target, state, "a flush") }
            if let target { try completeOperations(on: state, target: target) } else { try completeOperations(on: state, targets: nil) }
        } catch {
            try raise(error) as Void
        }
    }

    /// MPI_Win_flush_local and MPI_Win_flush_local_all: the origin buffers
    /// may be reused. (A work request completes here only once done at the
    /// target, so this is a flush.)
    public func flushLocal(target: Int? = nil, on window: Window) throws(MPIError) {
        try flush(target: target, on: window)
    }

    /// Orders this rank's loads and stores on its window memory with the
    /// one-sided operations around them (MPI_Win_sync).
    public func synchronize(_ window: Window) throws(MPIError) {
        do throws(MPIError) {
            _ = try windows.state(of: window)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } catch {
            try raise(error) as Void
        }
    }

    private func take(_ type: WindowLock, on state: WindowState, target: Int) throws(MPIError) {
        let word = word(state, target: target, offset: WindowControl.epochLockOffset, control: true)
        try keepTrying { () throws(MPIError) in
            switch type {
            case .shared:
                if try fetchAndAdd(word, 1) & WindowControl.exclusive == 0 { return true }
                _ = try fetchAndAdd(word, UInt64.max)  // minus one: back off
                return false
            case .exclusive:
                return try compareAndSwap(word, compare: 0, swap: WindowControl.exclusive) == 0
            }
        }
    }

    private func give(_ type: WindowLock, on state: WindowState, target: Int) throws(MPIError) {
        let word = word(state, target: target, offset: WindowControl.epochLockOffset, control: true)
        _ = try fetchAndAdd(word, type == .shared ? UInt64.max : 0 &- WindowControl.exclusive)
    }

    private func checkTarget(_ target: Int, _ state: WindowState, _ what: String) throws(MPIError) {
        guard state.targets.indices.contains(target) else {
            throw MPIError(.invalidRank, "\(what) of rank \(target) of \(state.window), whose ranks are 0 to \(state.targets.count - 1)")
        }
    }

    // MARK: - Post, start, complete, wait

    /// Opens this rank's memory to the window ranks in `origins` until
    /// `waitForOrigins` (MPI_Win_post): each is told it may start.
    public func post(to origins: Group, on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            let ranks = try windowRanks(of: origins, state, "a post")
            try state.epochs.withLock { (epochs) throws(MPIError) in
                guard epochs.exposureGroup == nil else { throw MPIError(.windowSynchronization, "a post on \(window) while an earlier post is not waited for") }
                epochs.exposureGroup = ranks
            }
            for origin in ranks { try send([UInt8](), to: origin, tag: Self.postTag, on: state.communicator) }
        } catch {
            try raise(error) as Void
        }
    }

    /// Starts an access epoch on the window ranks in `targets`, once each
    /// has posted (MPI_Win_start).
    public func start(to targets: Group, on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            let ranks = try windowRanks(of: targets, state, "a start")
            guard state.epochs.withLock({ $0.accessGroup == nil }) else {
                throw MPIError(.windowSynchronization, "a start on \(window) while an earlier start is not completed")
            }
            for target in ranks { _ = try receive(UInt8.self, count: 0, from: MessageSource(target), tag: MessageTag(Self.postTag), on: state.communicator) }
            state.epochs.withLock {
                $0.accessGroup = Set(ranks)
                $0.forgetAttachedRanges()
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Ends the access epoch `start` opened: its operations complete at
    /// their targets, and each target is told (MPI_Win_complete).
    public func complete(on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard let group = state.epochs.withLock({ $0.accessGroup }) else {
                throw MPIError(.windowSynchronization, "a complete on \(window) without a start")
            }
            let targets = group.sorted()
            try completeOperations(on: state, targets: targets)
            for target in targets { try send([UInt8](), to: target, tag: Self.completeTag, on: state.communicator) }
            state.epochs.withLock { $0.accessGroup = nil }
        } catch {
            try raise(error) as Void
        }
    }

    /// Ends the exposure epoch `post` opened, once every origin has
    /// completed (MPI_Win_wait).
    public func waitForOrigins(on window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard let origins = state.epochs.withLock({ $0.exposureGroup }) else {
                throw MPIError(.windowSynchronization, "a wait on \(window) without a post")
            }
            for origin in origins { _ = try receive(UInt8.self, count: 0, from: MessageSource(origin), tag: MessageTag(Self.completeTag), on: state.communicator) }
            state.epochs.withLock { $0.exposureGroup = nil }
        } catch {
            try raise(error) as Void
        }
    }

    /// Whether every origin has completed, ending the exposure epoch if so
    /// (MPI_Win_test).
    public func testOrigins(on window: Window) throws(MPIError) -> Bool {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard let origins = state.epochs.withLock({ $0.exposureGroup }) else {
                throw MPIError(.windowSynchronization, "a test on \(window) without a post")
            }
            var remaining: [Int] = []
            for origin in origins {
                if try probeIfArrived(from: MessageSource(origin), tag: MessageTag(Self.completeTag), on: state.communicator) != nil {
                    _ = try receive(UInt8.self, count: 0, from: MessageSource(origin), tag: MessageTag(Self.completeTag), on: state.communicator)
                } else {
                    remaining.append(origin)
                }
            }
            state.epochs.withLock { $0.exposureGroup = remaining.isEmpty ? nil : remaining }
            return remaining.isEmpty
        } catch {
            return try raise(error)
        }
    }

    /// The notices of post/start/complete/wait, on the window's own communicator.
    private static let postTag = 1
    private static let completeTag = 2

    private func windowRanks(of group: Group, _ state: WindowState, _ what: String) throws(MPIError) -> [Int] {
        var ranks: [Int] = []
        for worldRank in group.worldRanks {
            guard let rank = state.communicator.worldRanks.firstIndex(of: worldRank) else {
                throw MPIError(.invalidRank, "\(what) on \(state.window) naming world rank \(worldRank), which is not in the window")
            }
            ranks.append(rank)
        }
        return ranks
    }
}
