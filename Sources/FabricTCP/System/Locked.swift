// UNSAFE AREA: the lock every mutable structure of the software NIC sits
// behind. A pthread mutex (uncontended: one atomic each way) around a value
// that is only reachable through `withLock`. The value lives behind a
// pointer, not in a stored property, so that the hot path pays no dynamic
// exclusivity check: the mutex already guarantees exclusive access.
import Glibc

final class Locked<Value: ~Copyable>: @unchecked Sendable {  // the value is only touched with the mutex held
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let value: UnsafeMutablePointer<Value>

    init(_ initial: consuming Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        value = .allocate(capacity: 1)
        value.initialize(to: initial)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }

    /// Runs `body` only if the lock is free at once; nil otherwise.
    @inline(__always)
    func withLockIfAvailable<Result>(_ body: (inout Value) -> Result) -> Result? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return body(&value.pointee)
    }
}
