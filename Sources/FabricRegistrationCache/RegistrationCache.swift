import CFabricShims
import FabricCore
import FabricSupport
import Glibc

/// Registrations of user buffers kept for reuse, keyed by address range,
/// and never served once their pages are gone.
///
/// - A hit hands out an entry whose range contains the buffer (any buffer
///   inside an earlier one hits too); a miss watches the buffer's pages
///   with the process's `MemoryMonitor`, registers them, and caches the
///   entry. Entries are reference counted while transfers use them.
/// - Every call first applies the monitor's events: an entry whose pages
///   were unmapped, moved or emptied is dropped (deregistered once no
///   transfer holds it). The monitor guarantees that an unmap which has
///   returned is among those events, so a buffer freed and allocated
///   again at the same address is registered again, never served stale.
/// - Memory that cannot be watched (file-backed, watched by another
///   userfaultfd, no monitor) is registered for one use and deregistered at
///   release: never an entry that cannot be invalidated.
/// - Bytes registered through the cache stay under the configured cap:
///   unused entries are evicted, least recently used first, before a
///   registration fails with an error naming the cap.
///
/// Thread-safe: one lock over everything, held across registration too.
/// That is safe here because the monitor's thread takes no lock (a cache
/// that invalidated from the monitor's thread under its own lock could
/// deadlock with a thread that unmaps while holding it).
///
/// Not generic: the device is reached through one closure on a miss only,
/// so that a hit from another module runs specialised code (a generic
/// class's methods called across modules look up type metadata on every
/// call: measured at about 600 ns per hit). The stored properties are
/// `@exclusivity(unchecked)`: they are touched only under the lock.
public final class RegistrationCache: @unchecked Sendable {  // all mutable state under `lock`
    /// Registers memory on the device the cache was made for.
    public typealias Register = (UnsafeMutableRawPointer, Int, MemoryAccess) throws(FabricError) -> any FabricMemoryRegion

    private struct Entry {
        var start: UInt = 0
        var end: UInt = 0
        var region: (any FabricMemoryRegion)?
        /// The region's keys and extent, copied out so that a hit reads
        /// plain values (no existential copy, no reference counting).
        var lease = RegistrationLease(slot: -1, regionAddress: 0, regionLength: 0, localKey: LocalKey(rawValue: 0), remoteKey: RemoteKey(rawValue: 0))
        var access: MemoryAccess = []
        var references = 0
        var lastUse: UInt64 = 0
        /// Out of the index: its pages changed while in use, or it was
        /// registered for one use only. Deregistered at its last release.
        var invalid = false
        var uncached = false
    }

    public let configuration: RegistrationCacheConfiguration
    private let register: Register
    private let monitor: MemoryMonitor
    /// Whether entries can be cached at all: caching on and a monitor.
    public let watching: Bool
    /// Why not, when `watching` is false.
    public let uncachedReason: String?
    private let lockWord: UnsafeMutablePointer<UInt32>
    @exclusivity(unchecked) private var reader: MemoryMonitor.Reader
    @exclusivity(unchecked) private var index: RegistrationIndex
    @exclusivity(unchecked) private var entries: [Entry] = []
    @exclusivity(unchecked) private var freeSlots: [Int32] = []
    @exclusivity(unchecked) private var scratch: [Int32] = []
    @exclusivity(unchecked) private var tick: UInt64 = 0
    @exclusivity(unchecked) private var lostEventsSeen = MemoryMonitor.lostEventsGeneration
    @exclusivity(unchecked) private var counters = RegistrationCacheStatistics()
    @exclusivity(unchecked) private var pool: RegisteredMemoryPool

    /// A cache of registrations made by `register`.
    public init(configuration: RegistrationCacheConfiguration, monitor: MemoryMonitor = .shared, register: @escaping Register) {
        self.register = register
        pool = RegisteredMemoryPool(register: register)
        self.configuration = configuration
        self.monitor = monitor
        switch (configuration.caching, monitor.currentState) {
        case (false, _):
            watching = false
            uncachedReason = "caching is switched off (FABRIC_REGCACHE=off)"
        case (true, .unavailable(let reason)):
            watching = false
            uncachedReason = "no memory monitor: " + reason
        case (true, .watching):
            watching = true
            uncachedReason = nil
        }
        reader = MemoryMonitor.follow()
        index = RegistrationIndex(reservingCapacity: configuration.maxEntries)
        entries.reserveCapacity(configuration.maxEntries)
        freeSlots.reserveCapacity(configuration.maxEntries)
        scratch.reserveCapacity(configuration.maxEntries)
        lockWord = .allocate(capacity: 1)
        lockWord.initialize(to: 0)
    }

    /// A cache of registrations of `device` in `domain`.
    public convenience init<Device: FabricDevice>(
        device: Device, domain: Device.ProtectionDomain, configuration: RegistrationCacheConfiguration, monitor: MemoryMonitor = .shared
    ) {
        self.init(configuration: configuration, monitor: monitor) { (address, length, access) throws(FabricError) in
            try device.registerMemory(address, length: length, access: access, in: domain)
        }
    }

    deinit {
        close()
        lockWord.deallocate()
    }

    public var statistics: RegistrationCacheStatistics {
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        return counters
    }

    /// A registration covering [address, address + length) with at least
    /// `access`. Give it back with `release` once the transfer is over.
    public func acquire(_ address: UnsafeRawPointer, length: Int, access: MemoryAccess) throws(FabricError) -> RegistrationLease {
        guard length > 0 else {
            throw FabricError(.invalidArgument, "cannot register a buffer of \(length) bytes")
        }
        let start = UInt(bitPattern: address)
        let (end, overflow) = start.addingReportingOverflow(UInt(length))
        guard !overflow else {
            throw FabricError(.invalidArgument, "the buffer at \(address) of \(length) bytes wraps around the address space")
        }
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        if !pool.isEmpty, RegisteredMemoryPool.access.isSuperset(of: access), let lease = pool.lease(covering: start, end) {
            counters.poolTransfers += 1
            return lease
        }
        applyMonitorEvents()
        tick &+= 1
        if watching, let slot = findEntry(start, end, access) {
            counters.hits += 1
            let now = tick
            return entries.withUnsafeMutableBufferPointer { entries in
                entries[Int(slot)].references += 1
                entries[Int(slot)].lastUse = now
                return entries[Int(slot)].lease
            }
        }
        if watching, case .watched = monitor.watch(address, length: length) {
            return try cacheNewEntry(start: start, end: end, access: access)
        }
        return try registerOnce(start: start, end: end, access: access)
    }

    /// Gives back what `acquire` returned.
    public func release(_ lease: RegistrationLease) {
        guard lease.slot != RegistrationLease.poolSlot else { return }
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        applyMonitorEvents()
        let slot = Int(lease.slot)
        let unused = entries.withUnsafeMutableBufferPointer { entries in
            entries[slot].references -= 1
            return entries[slot].invalid && entries[slot].references == 0
        }
        if unused { discard(slot) }
    }

    // MARK: - Registered memory handed out

    /// `bytes` of memory registered once for every access, from the pool:
    /// transfers from it need no lookup. Counts toward the cap.
    public func allocateMemory(_ bytes: Int) throws(FabricError) -> UnsafeMutableRawBufferPointer {
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        let before = pool.registeredBytes
        let block = try pool.allocate(bytes) { (length) throws(FabricError) in try makeRoom(for: length, newEntry: false) }
        counters.registeredBytes += pool.registeredBytes - before
        counters.poolBytes = pool.registeredBytes
        return block
    }

    /// Gives back a block `allocateMemory` returned; anything else is
    /// refused with an error naming it.
    public func freeMemory(_ address: UnsafeMutableRawPointer) throws(FabricError) {
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        try pool.free(address)
    }

    /// What backs the pool's memory: explicit or transparent huge pages, or
    /// ordinary pages.
    public var poolPages: String {
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        return pool.pages.rawValue
    }

    /// Deregisters every entry no transfer holds (all of them when the
    /// owner closes, after its transfers ended), and the pool.
    public func close() {
        fabric_lock(lockWord)
        defer { fabric_unlock(lockWord) }
        counters.registeredBytes -= pool.registeredBytes
        counters.poolBytes = 0
        pool.close()
        for slot in entries.indices where entries[slot].region != nil && entries[slot].references == 0 {
            if !entries[slot].invalid { index.remove(slot: Int32(slot), start: entries[slot].start) }
            discard(slot)
        }
    }

    private func findEntry(_ start: UInt, _ end: UInt, _ access: MemoryAccess) -> Int32? {
        entries.withUnsafeBufferPointer { entries in
            index.find(containing: start, end) { entries[Int($0)].access.isSuperset(of: access) }
        }
    }

    private func lease(_ slot: Int32) -> RegistrationLease {
        entries.withUnsafeBufferPointer { $0[Int(slot)].lease }
    }

    // MARK: - Misses

    private func cacheNewEntry(start: UInt, end: UInt, access: MemoryAccess) throws(FabricError) -> RegistrationLease {
        // Whole pages: the registration pins (or on tcp, covers) them
        // anyway, and a later buffer elsewhere on them then hits.
        let page = UInt(pageSize)
        let first = start & ~(page - 1)
        let last = (end + page - 1) & ~(page - 1)
        let length = Int(last - first)
        // Every entry in use, none to evict: this buffer is registered for
        // its one transfer rather than refused.
        guard counters.entries < configuration.maxEntries || hasIdleEntry else {
            return try registerOnce(start: start, end: end, access: access)
        }
        try makeRoom(for: length, newEntry: true)
        let base = UnsafeMutableRawPointer(bitPattern: first)!
        // Exactly the access asked: a send's pages stay readable by peers
        // while cached, never writable (a buffer used both ways gets two
        // entries).
        let region = try registerEvictingOnFailure(base, length, access)
        // A device that reads current pages revokes the keys itself the
        // moment the monitor reports them gone, even before we drop the entry.
        region.revokeWhenPagesChange()
        let slot = newSlot(Entry(start: first, end: last, region: region, access: region.access, references: 1, lastUse: tick))
        index.insert(RegistrationIndex.Span(start: first, end: last, slot: slot))
        counters.misses += 1
        counters.entries += 1
        counters.registeredBytes += length
        return lease(slot)
    }

    private func registerOnce(start: UInt, end: UInt, access: MemoryAccess) throws(FabricError) -> RegistrationLease {
        let length = Int(end - start)
        try makeRoom(for: length, newEntry: false)
        let region = try registerEvictingOnFailure(UnsafeMutableRawPointer(bitPattern: start)!, length, access)
        let slot = newSlot(Entry(start: start, end: end, region: region, access: access, references: 1, lastUse: tick, invalid: true, uncached: true))
        counters.uncachedRegistrations += 1
        counters.registeredBytes += length
        return lease(slot)
    }

    private func newSlot(_ entry: Entry) -> Int32 {
        var entry = entry
        let slot = freeSlots.popLast() ?? Int32(entries.count)
        let region = entry.region.unsafelyUnwrapped
        entry.lease = RegistrationLease(
            slot: slot, regionAddress: UInt64(UInt(bitPattern: region.address)), regionLength: region.length,
            localKey: region.localKey, remoteKey: region.remoteKey)
        if Int(slot) == entries.count { entries.append(entry) } else { entries[Int(slot)] = entry }
        return slot
    }

    /// Registers; if the device refuses (on verbs the kernel's memlock
    /// limit also counts memory registered outside the cache, such as the
    /// MPI engine's slots), evicts every unused entry and tries once more.
    private func registerEvictingOnFailure(_ base: UnsafeMutableRawPointer, _ length: Int, _ access: MemoryAccess) throws(FabricError) -> any FabricMemoryRegion {
        do {
            return try register(base, length, access)
        } catch {
            guard hasIdleEntry else { throw error }
            for slot in entries.indices where isIdle(slot) {
                index.remove(slot: Int32(slot), start: entries[slot].start)
                discard(slot)
                counters.evictions += 1
            }
            return try register(base, length, access)
        }
    }

    private func isIdle(_ slot: Int) -> Bool {
        entries[slot].region != nil && !entries[slot].invalid && entries[slot].references == 0
    }

    private var hasIdleEntry: Bool { entries.indices.contains { isIdle($0) } }

    /// Evicts unused entries, least recently used first, until `length`
    /// more bytes (and, for a new entry, one more entry) fit; throws when
    /// they cannot.
    private func makeRoom(for length: Int, newEntry: Bool) throws(FabricError) {
        guard length <= configuration.capacityBytes else {
            throw capExceeded(length)
        }
        while counters.registeredBytes + length > configuration.capacityBytes
            || (newEntry && counters.entries >= configuration.maxEntries)
        {
            var oldest = -1
            for slot in entries.indices where isIdle(slot) {
                if oldest < 0 || entries[slot].lastUse < entries[oldest].lastUse { oldest = slot }
            }
            guard oldest >= 0 else {
                if counters.registeredBytes + length > configuration.capacityBytes { throw capExceeded(length) }
                throw FabricError(.limitExceeded, "all \(configuration.maxEntries) registration cache entries are in use by transfers (FABRIC_REGCACHE_ENTRIES raises the number)")
            }
            index.remove(slot: Int32(oldest), start: entries[oldest].start)
            discard(oldest)
            counters.evictions += 1
        }
    }

    private func capExceeded(_ length: Int) -> FabricError {
        let cachedIdle = entries.reduce(0) { $0 + ($1.region != nil && $1.references == 0 ? $1.region!.length : 0) }
        return FabricError(
            .limitExceeded,
            "registering \(length) more bytes would exceed the registration cap of \(configuration.capacityBytes) bytes (\(configuration.capacitySource)); "
                + "transfers in progress hold \(counters.registeredBytes - cachedIdle) bytes. Raise the cap with `ulimit -l` on verbs, "
                + "or with FABRIC_REGISTRATION_CAP up to the default")
    }

    // MARK: - Invalidation

    /// Drops every entry the monitor's events touch since the last call.
    @inline(__always)
    private func applyMonitorEvents() {
        if reader.hasNews || MemoryMonitor.lostEventsGeneration != lostEventsSeen { applyMonitorEventsSlow() }
    }

    private func applyMonitorEventsSlow() {
        let lost = MemoryMonitor.lostEventsGeneration
        var outcome = lost != lostEventsSeen ? MemoryMonitor.Reader.Outcome.overflowed : .current
        lostEventsSeen = lost
        if reader.drain({ start, end, _ in
            guard configuration.invalidation else { return }
            scratch.removeAll(keepingCapacity: true)
            index.forEachOverlapping(start, end) { scratch.append($0) }
            for slot in scratch { invalidate(Int(slot)) }
        }) == .overflowed {
            outcome = .overflowed
        }
        if outcome == .overflowed, configuration.invalidation {
            counters.overflows += 1
            for slot in entries.indices where entries[slot].region != nil && !entries[slot].invalid { invalidate(slot) }
        }
    }

    private func invalidate(_ slot: Int) {
        index.remove(slot: Int32(slot), start: entries[slot].start)
        counters.invalidations += 1
        if entries[slot].references == 0 {
            discard(slot)
        } else {
            entries[slot].invalid = true
        }
    }

    /// Deregisters the entry in `slot` (already out of the index) and frees
    /// the slot.
    private func discard(_ slot: Int) {
        guard let region = entries[slot].region else { return }
        counters.registeredBytes -= region.length
        if !entries[slot].uncached { counters.entries -= 1 }
        try? region.deregister()
        entries[slot] = Entry()
        freeSlots.append(Int32(slot))
    }

    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
}
