import Glibc
import Logging
import Synchronization

/// The process's limit on open descriptors. Every connection costs
/// descriptors (a socket on tcp; an rdma_cm identifier and the verbs
/// objects' files on verbs), and the usual soft limit of 1024 is reached by
/// an MPI rank with a few hundred peers. Opening a device raises the soft
/// limit to the hard one, once per process, and logs it.
package enum DescriptorLimit {
    package struct Limits: Sendable, Equatable {
        /// The limit in force (soft).
        package var current: UInt64
        /// The most an unprivileged process may raise it to (hard).
        package var maximum: UInt64
    }

    /// The limits now.
    package static func read() -> Limits? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return Limits(current: UInt64(limit.rlim_cur), maximum: UInt64(limit.rlim_max))
    }

    private static let raised = Atomic<Bool>(false)

    /// Raises the soft limit to the hard one (once per process); logs what
    /// it did at info level, or why it could not at warning level.
    package static func raiseToMaximum(logger: Logger) {
        guard !raised.exchange(true, ordering: .relaxed) else { return }
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            logger.warning("cannot read the descriptor limit: \(String(cString: strerror(errno)))")
            return
        }
        guard limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.info("raised the open-descriptor limit from \(before) to \(limit.rlim_max) (each connection needs descriptors)")
        } else {
            logger.warning("cannot raise the open-descriptor limit from \(before) to \(limit.rlim_max): \(String(cString: strerror(errno))); at most about \(before / 2) connections fit")
        }
    }
}
