/// What a registration cache has done, for programs (through the MPI
/// runtime) and the info tool. Every test of the cache checks these beside
/// the bytes it moved, so that it can fail on a backend where stale pages
/// cannot be seen.
public struct RegistrationCacheStatistics: Sendable, Equatable {
    /// Acquisitions served by an entry already registered.
    public var hits = 0
    /// Acquisitions that registered and cached a new entry.
    public var misses = 0
    /// Unused entries deregistered to make room (entries or bytes).
    public var evictions = 0
    /// Entries dropped because the memory monitor reported their pages
    /// unmapped, moved or emptied (and all entries at once after a missed
    /// event, see `overflows`).
    public var invalidations = 0
    /// Times the monitor's ring lapped the cache, which then forgot all.
    public var overflows = 0
    /// Acquisitions registered for one use and deregistered at release:
    /// memory that cannot be watched (file-backed, watched by another
    /// userfaultfd, no monitor, caching switched off).
    public var uncachedRegistrations = 0
    /// Acquisitions of memory the library handed out (`allocateMemory`):
    /// no lookup in the cache, no watch.
    public var poolTransfers = 0
    /// Bytes registered through the cache right now (cached, in use, and
    /// the pool's chunks).
    public var registeredBytes = 0
    /// Bytes of the pool's chunks (registered once, carved into blocks).
    public var poolBytes = 0
    /// Entries in the cache right now.
    public var entries = 0

    public init() {}
}
