import Glibc

/// The lock that makes the point-to-point engine usable from several
/// threads at once (MPI_THREAD_MULTIPLE): one thread at a time starts
/// operations or advances them. A pthread mutex, because callers hold it
/// across code that throws and returns values a closure-based lock would
/// have to carry out.
final class ProgressLock: @unchecked Sendable {  // the mutex is the synchronisation
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
}
