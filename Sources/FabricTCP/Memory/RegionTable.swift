import CFabricShims
import FabricCore
import Synchronization

/// The software NIC's record of one registration: what the table maps keys
/// to and what in-flight transfers hold on to.
///
/// Its `state` counts transfers in progress (in steps of 2) and carries an
/// "invalid" bit. A transfer begins with `beginAccess` (fails once the bit is
/// set), makes one non-blocking system call, and ends with `endAccess`.
/// Deregistration sets the bit and waits for the count to drain, which takes
/// at most one such call: after it returns, no byte of the range is touched.
/// The record stored at `slot`, without a reference of its own: the caller
/// must know that the slot keeps it alive while it is used (a queue entry
/// under the queue pair's lock). Reading `slot.pointee` into a constant
/// instead costs a retain and a release, two atomic operations per use on
/// the data path. (`Optional<Unmanaged<RegionRecord>>` and
/// `Optional<RegionRecord>` are both one pointer, nil as zero.)
@inline(__always)
func unretainedRecord(at slot: UnsafeMutablePointer<RegionRecord?>) -> Unmanaged<RegionRecord>? {
    UnsafeRawPointer(slot).load(as: Unmanaged<RegionRecord>?.self)
}

final class RegionRecord: Sendable {
    let base: UInt64
    let length: UInt64
    let access: MemoryAccess
    let localKey: UInt32
    let remoteKey: UInt32
    let domain: ObjectIdentifier
    private let state = Atomic<Int>(0)

    init(base: UInt64, length: UInt64, access: MemoryAccess, localKey: UInt32, remoteKey: UInt32, domain: ObjectIdentifier) {
        self.base = base
        self.length = length
        self.access = access
        self.localKey = localKey
        self.remoteKey = remoteKey
        self.domain = domain
    }

    @inline(__always)
    func beginAccess() -> Bool {
        let old = state.wrappingAdd(2, ordering: .acquiring).oldValue
        if old & 1 != 0 {
            state.wrappingSubtract(2, ordering: .releasing)
            return false
        }
        return true
    }

    @inline(__always)
    func endAccess() {
        state.wrappingSubtract(2, ordering: .releasing)
    }

    var isValid: Bool { state.load(ordering: .acquiring) & 1 == 0 }

    /// Marks the record invalid and waits until no transfer is inside it.
    func invalidate() {
        markInvalid()
        waitUntilUnused()
    }

    /// Sets the invalid bit: no transfer begins in the record after this.
    func markInvalid() {
        state.bitwiseOr(1, ordering: .sequentiallyConsistent)
    }

    /// Waits until the transfers inside the (invalid) record have ended:
    /// at most one non-blocking system call each.
    func waitUntilUnused() {
        var spins = 0
        while state.load(ordering: .acquiring) != 1 {
            spins += 1
            if spins > 1000 { SystemCalls.yield() }
        }
    }

    /// Whether [address, address+count) lies inside the region (no overflow).
    @inline(__always)
    func contains(address: UInt64, count: UInt64) -> Bool {
        guard address >= base else { return false }
        let offset = address - base
        return offset <= length && count <= length - offset
    }
}

import FabricSupport
import Glibc

/// The device's key table: local and remote keys to their records.
///
/// Records whose pages the process's memory monitor watches (a
/// registration cache said so: `follow`) are revoked as soon as the
/// monitor reports their pages gone, before the next remote access is
/// checked: this NIC reads the current mapping, so without it a peer
/// holding an old key would reach whatever was mapped there next. The
/// check costs two loads per remote access while nothing happens.
final class RegionTable: Sendable {
    private struct Maps {
        var byLocalKey: [UInt32: RegionRecord] = [:]
        var byRemoteKey: [UInt32: RegionRecord] = [:]
        /// Records to revoke when their pages go, with the first monitor
        /// event that concerns them (earlier ones were about the memory
        /// mapped there before they were registered).
        var followed: [ObjectIdentifier: (record: RegionRecord, since: UInt64)] = [:]
        var monitor = MemoryMonitor.follow()
    }
    private let maps = Locked(Maps())
    /// The monitor events the table has applied (its reader's position),
    /// readable without the lock.
    private let monitorPosition = Atomic<UInt64>(MemoryMonitor.follow().position)

    var count: Int { maps.withLock { $0.byLocalKey.count } }

    /// Revokes `record` when the monitor reports its pages gone.
    func follow(_ record: RegionRecord) {
        let since = MemoryMonitor.nextEvent
        maps.withLock { $0.followed[ObjectIdentifier(record)] = (record, since) }
    }

    /// Applies the monitor's news, if there is any.
    @inline(__always)
    private func revokeUnmappedRecords() {
        if fabric_memory_monitor_has_news(monitorPosition.load(ordering: .acquiring)) != 0 { revokeUnmappedRecordsSlow() }
    }

    private func revokeUnmappedRecordsSlow() {
        let revoked: [RegionRecord] = maps.withLock { maps in
            var reader = maps.monitor
            var gone: [RegionRecord] = []
            let followed = maps.followed
            let outcome = reader.drain { start, end, sequence in
                for (record, since) in followed.values
                where sequence >= since && record.base < UInt64(end) && UInt64(start) < record.base + record.length {
                    gone.append(record)
                }
            }
            // Events were missed: every followed record may be stale, and
            // the caches that hand out their keys must forget them too.
            if outcome == .overflowed {
                gone = followed.values.map(\.record)
                MemoryMonitor.announceLostEvents()
            }
            // Invalid before the position moves: a check that finds no
            // news must not find these records valid either.
            for record in gone {
                record.markInvalid()
                maps.byLocalKey[record.localKey] = nil
                maps.byRemoteKey[record.remoteKey] = nil
                maps.followed[ObjectIdentifier(record)] = nil
            }
            maps.monitor = reader
            monitorPosition.store(reader.position, ordering: .releasing)
            return gone
        }
        // Outside the lock: a transfer already inside a record ends first.
        for record in revoked { record.waitUntilUnused() }
    }

    func insert(_ record: RegionRecord) {
        maps.withLock {
            $0.byLocalKey[record.localKey] = record
            $0.byRemoteKey[record.remoteKey] = record
        }
    }

    func remove(_ record: RegionRecord) {
        maps.withLock {
            $0.byLocalKey[record.localKey] = nil
            $0.byRemoteKey[record.remoteKey] = nil
            $0.followed[ObjectIdentifier(record)] = nil
        }
    }

    /// The same check, trying first the record this queue pair's peer used
    /// last. A deregistered record fails `isValid` and falls through to the
    /// table, which no longer knows its key.
    @inline(__always)
    func checkRemote(key: UInt32, address: UInt64, length: UInt64, right: MemoryAccess, domain: ObjectIdentifier, cache: inout RegionRecord?) -> Result<RegionRecord, CompletionDetail> {
        revokeUnmappedRecords()
        if let record = cache, record.remoteKey == key, record.domain == domain, record.isValid,
           record.access.contains(right), record.contains(address: address, count: length) {
            return .success(record)
        }
        let result = lookUpRemote(key: key, address: address, length: length, right: right, domain: domain)
        if case .success(let record) = result { cache = record }
        return result
    }

    /// Checks a peer's access: key known, same protection domain, right
    /// granted, range inside. Nothing is touched before this passes.
    @inline(__always)
    func checkRemote(key: UInt32, address: UInt64, length: UInt64, right: MemoryAccess, domain: ObjectIdentifier) -> Result<RegionRecord, CompletionDetail> {
        revokeUnmappedRecords()
        return lookUpRemote(key: key, address: address, length: length, right: right, domain: domain)
    }

    /// The table's part of the check, once the monitor's news is applied.
    @inline(__always)
    private func lookUpRemote(key: UInt32, address: UInt64, length: UInt64, right: MemoryAccess, domain: ObjectIdentifier) -> Result<RegionRecord, CompletionDetail> {
        guard let record = maps.withLock({ $0.byRemoteKey[key] }) else { return .failure(.unknownKey) }
        guard record.domain == domain else { return .failure(.keyOfAnotherProtectionDomain) }
        guard record.access.contains(right) else { return .failure(.accessNotGranted) }
        guard record.contains(address: address, count: length) else { return .failure(.outOfBounds) }
        return .success(record)
    }

    /// The same check, trying first the record the caller used last (a
    /// queue pair posts from the same region again and again): no lock and
    /// no hash then. A deregistered record fails `isValid` and falls through
    /// to the table, which no longer knows its key.
    @inline(__always)
    func checkLocal(_ element: ScatterGatherElement, needsWrite: Bool, domain: ObjectIdentifier, cache: inout RegionRecord?) -> Result<RegionRecord, CompletionDetail> {
        if let record = cache, record.localKey == element.localKey.rawValue, record.domain == domain, record.isValid,
           !needsWrite || record.access.contains(.localWrite),
           record.contains(address: element.address, count: UInt64(element.length)) {
            return .success(record)
        }
        let result = checkLocal(element, needsWrite: needsWrite, domain: domain)
        if case .success(let record) = result { cache = record }
        return result
    }

    /// Checks a local scatter element of a work request.
    @inline(__always)
    func checkLocal(_ element: ScatterGatherElement, needsWrite: Bool, domain: ObjectIdentifier) -> Result<RegionRecord, CompletionDetail> {
        guard let record = maps.withLock({ $0.byLocalKey[element.localKey.rawValue] }) else { return .failure(.unknownKey) }
        guard record.domain == domain else { return .failure(.keyOfAnotherProtectionDomain) }
        if needsWrite && !record.access.contains(.localWrite) { return .failure(.accessNotGranted) }
        guard record.contains(address: element.address, count: UInt64(element.length)) else { return .failure(.outOfBounds) }
        return .success(record)
    }
}
