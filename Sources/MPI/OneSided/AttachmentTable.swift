import FabricCore
import Glibc
import Synchronization

/// A range of memory a rank attached to a dynamic window, as peers reach it.
struct AttachedRange: Sendable, Equatable {
    let address: UInt64
    let length: Int
    let key: RemoteKey

    func covers(_ range: Range<UInt64>) -> Bool {
        range.lowerBound >= address && range.upperBound <= address &+ UInt64(length)
    }
}

/// A dynamic window's list of the ranges this rank attached
/// (MPI_Win_attach), kept in registered memory that peers READ to learn
/// where they may go and with which key (the target takes no part): word
/// 0 is a version, odd while the list changes; word 1 the number of
/// ranges; then an address, a length and a key per range. A reader that
/// finds the version odd, or changed by the time it read the list, reads
/// again.
final class AttachmentTable: Sendable {
    static let capacity = 128
    static let bytes = 16 + capacity * 24

    /// The list as peers read it (this rank writes it under `attached`).
    nonisolated(unsafe) let memory: UnsafeMutableRawPointer
    private let attached = Mutex<[(range: AttachedRange, registration: WindowMemoryRegistration)]>([])

    init() {
        var memory: UnsafeMutableRawPointer?
        precondition(posix_memalign(&memory, 64, Self.bytes) == 0, "no memory for a dynamic window's attachment table")
        memory!.initializeMemory(as: UInt8.self, repeating: 0, count: Self.bytes)
        self.memory = memory!
    }

    deinit { free(memory) }

    /// Adds a registered range; refused when the list is full or the range
    /// overlaps one attached already.
    func attach(_ range: AttachedRange, _ registration: WindowMemoryRegistration) throws(MPIError) {
        try attached.withLock { (list) throws(MPIError) in
            guard list.count < Self.capacity else {
                throw MPIError(.invalidArgument, "an attach beyond \(Self.capacity) ranges on one dynamic window")
            }
            let new = range.address..<(range.address &+ UInt64(range.length))
            if let overlapping = list.first(where: { new.overlaps($0.range.address..<($0.range.address &+ UInt64($0.range.length))) }) {
                throw MPIError(.invalidArgument, "an attach of \(range.length) bytes at 0x\(String(range.address, radix: 16)) overlapping the range attached at 0x\(String(overlapping.range.address, radix: 16))")
            }
            list.append((range, registration))
            publish(list.map(\.range))
        }
    }

    /// Removes the range attached at `address` and gives its registration
    /// back (its key is revoked by the caller).
    func detach(at address: UInt64) throws(MPIError) -> WindowMemoryRegistration {
        try attached.withLock { (list) throws(MPIError) in
            guard let index = list.firstIndex(where: { $0.range.address == address }) else {
                throw MPIError(.invalidArgument, "a detach of 0x\(String(address, radix: 16)), where no range of this dynamic window starts")
            }
            let removed = list.remove(at: index)
            publish(list.map(\.range))
            return removed.registration
        }
    }

    /// Every registration still attached (the window is being freed).
    func detachAll() -> [WindowMemoryRegistration] {
        attached.withLock { list in
            defer {
                list.removeAll()
                publish([])
            }
            return list.map(\.registration)
        }
    }

    /// Writes the list where peers read it: the version goes odd, the
    /// ranges change, the version goes even.
    private func publish(_ ranges: [AttachedRange]) {
        let words = memory.assumingMemoryBound(to: UInt64.self)
        let version = UnsafeMutableRawPointer(words).assumingMemoryBound(to: Atomic<UInt64>.self)
        let before = version.pointee.load(ordering: .relaxed)
        version.pointee.store(before &+ 1, ordering: .sequentiallyConsistent)
        words[1] = UInt64(ranges.count)
        for (index, range) in ranges.enumerated() {
            words[2 + 3 * index] = range.address
            words[3 + 3 * index] = UInt64(range.length)
            words[4 + 3 * index] = UInt64(range.key.rawValue)
        }
        version.pointee.store(before &+ 2, ordering: .sequentiallyConsistent)
    }

    /// The ranges in a copy of a table, with its version; nil when the
    /// copy was taken while the list changed (odd version, or a count past
    /// the capacity).
    static func ranges(in copy: UnsafeRawPointer) -> (version: UInt64, ranges: [AttachedRange])? {
        let version = copy.load(as: UInt64.self)
        let count = Int(truncatingIfNeeded: copy.load(fromByteOffset: 8, as: UInt64.self))
        guard version % 2 == 0, (0...capacity).contains(count) else { return nil }
        let ranges = (0..<count).map { index in
            AttachedRange(address: copy.load(fromByteOffset: 16 + 24 * index, as: UInt64.self),
                          length: Int(truncatingIfNeeded: copy.load(fromByteOffset: 24 + 24 * index, as: UInt64.self)),
                          key: RemoteKey(rawValue: UInt32(truncatingIfNeeded: copy.load(fromByteOffset: 32 + 24 * index, as: UInt64.self))))
        }
        return (version, ranges)
    }
}
