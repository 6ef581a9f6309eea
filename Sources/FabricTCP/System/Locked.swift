// UNSAFE AREA: the lock every mutable structure of the software NIC sits
// behind. A futex lock (CFabricShims: one compare-and-swap to take, one
// exchange to release when uncontended, a fraction of a pthread mutex's
// instructions; a busy-polling thread takes several per poll) around a
// value that is only reachable through `withLock`. The lock word and the
// value live behind pointers, not in stored properties: the lock needs a
// stable address, and the hot path pays no dynamic exclusivity check (the
// lock already guarantees exclusive access).
import CFabricShims

final class Locked<Value: ~Copyable>: @unchecked Sendable {  // the value is only touched with the lock held
    private let word: UnsafeMutablePointer<UInt32>
    private let value: UnsafeMutablePointer<Value>

    init(_ initial: consuming Value) {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
        value = .allocate(capacity: 1)
        value.initialize(to: initial)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        word.deallocate()
    }

    @inline(__always)
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        fabric_lock(word)
        defer { fabric_unlock(word) }
        return try body(&value.pointee)
    }

    /// Runs `body` only if the lock is free at once; nil otherwise.
    @inline(__always)
    func withLockIfAvailable<Result>(_ body: (inout Value) -> Result) -> Result? {
        guard fabric_try_lock(word) != 0 else { return nil }
        defer { fabric_unlock(word) }
        return body(&value.pointee)
    }
}
