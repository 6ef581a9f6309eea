import CFabricShims
import Fabric
import FabricCore
import FabricRegistrationCache
import FabricSupport
import FabricTCP
import FabricTestSupport
import Glibc
import Testing

/// The cache over a software NIC device, alone: hits, misses, eviction
/// order, the cap, invalidation of entries in use, per-use registration;
/// and the NIC refusing a remote key whose pages went away.
@Suite(.serialized)
struct RegistrationCacheTests {
    let megabyte = 1 << 20

    private func map(_ length: Int, at address: UnsafeMutableRawPointer? = nil) -> UnsafeMutableRawPointer {
        let pointer = mmap(address, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (address == nil ? 0 : MAP_FIXED), -1, 0)!
        precondition(pointer != MAP_FAILED)
        return pointer
    }

    private func cache(
        _ device: TCPDevice, capacity: Int = 64 << 20, entries: Int = 16, caching: Bool = true
    ) throws -> RegistrationCache {
        let configuration = RegistrationCacheConfiguration(capacityBytes: capacity, capacitySource: "the test", maxEntries: entries, caching: caching)
        return RegistrationCache(device: device, domain: try device.allocateProtectionDomain(), configuration: configuration)
    }

    @Test("a buffer inside a cached one hits; wider access than cached or a wider range misses")
    func hitsAndMisses() throws {
        let device = try TCPOpener().open()
        let cache = try cache(device)
        try #require(cache.watching)
        let buffer = map(megabyte)
        defer { munmap(buffer, megabyte) }
        let first = try cache.acquire(buffer, length: megabyte, access: .remoteRead)
        let inside = try cache.acquire(buffer + 4096 + 8, length: 1000, access: .remoteRead)
        #expect(inside.remoteKey == first.remoteKey && inside.regionAddress == first.regionAddress)
        // Exactly the access asked is registered: a receive into the same
        // pages gets an entry of its own.
        let receive = try cache.acquire(buffer, length: 1000, access: .localWrite)
        #expect(receive.localKey != first.localKey)
        cache.release(receive)
        #expect(try inside.element(at: buffer + 4096 + 8, length: 1000).address == UInt64(UInt(bitPattern: buffer + 4096 + 8)))
        #expect(first.remote(at: buffer + 100).address == UInt64(UInt(bitPattern: buffer + 100)))
        cache.release(first)
        cache.release(inside)
        var statistics = cache.statistics
        #expect(statistics.hits == 1 && statistics.misses == 2 && statistics.entries == 2 && statistics.registeredBytes == megabyte + 4096)
        let atomic = try cache.acquire(buffer, length: 64, access: [.localWrite, .remoteAtomic])
        cache.release(atomic)
        statistics = cache.statistics
        #expect(statistics.misses == 3, "remote atomic access was not in the first entries: \(statistics)")
        #expect(throws: FabricError.self) { try cache.acquire(buffer, length: 0, access: .remoteRead) }
    }

    @Test("eviction takes the least recently used entry that no transfer holds")
    func leastRecentlyUsed() throws {
        let device = try TCPOpener().open()
        let cache = try cache(device, entries: 2)
        let a = map(65536), b = map(65536), c = map(65536)
        defer { for p in [a, b, c] { munmap(p, 65536) } }
        let leaseA = try cache.acquire(a, length: 65536, access: .remoteRead)
        cache.release(try cache.acquire(b, length: 65536, access: .remoteRead))
        cache.release(try cache.acquire(c, length: 65536, access: .remoteRead))  // evicts b: a is held
        cache.release(leaseA)
        #expect(cache.statistics.evictions == 1)
        cache.release(try cache.acquire(a, length: 65536, access: .remoteRead))
        cache.release(try cache.acquire(c, length: 65536, access: .remoteRead))
        #expect(cache.statistics.hits == 2, "a and c stayed; b went")
        cache.release(try cache.acquire(b, length: 65536, access: .remoteRead))  // evicts a, used before c
        cache.release(try cache.acquire(c, length: 65536, access: .remoteRead))
        #expect(cache.statistics.hits == 3 && cache.statistics.evictions == 2)
    }

    @Test("the cap: unused entries go first; what still does not fit is refused naming the cap; nothing is lost")
    func cap() throws {
        let device = try TCPOpener().open()
        let cache = try cache(device, capacity: 2 * megabyte)
        let a = map(megabyte), b = map(megabyte), c = map(megabyte)
        defer { for p in [a, b, c] { munmap(p, megabyte) } }
        let leaseA = try cache.acquire(a, length: megabyte, access: .remoteRead)
        let leaseB = try cache.acquire(b, length: megabyte, access: .remoteRead)
        do {
            _ = try cache.acquire(c, length: megabyte, access: .remoteRead)
            Issue.record("a third megabyte under a 2 MiB cap with two held was accepted")
        } catch {
            #expect(error.message.contains("registration cap of 2097152 bytes (the test)") && error.message.contains("transfers in progress hold 2097152 bytes"), "\(error)")
        }
        cache.release(leaseB)
        let leaseC = try cache.acquire(c, length: megabyte, access: .remoteRead)
        #expect(cache.statistics.evictions == 1 && cache.statistics.registeredBytes == 2 * megabyte)
        cache.release(leaseA)
        cache.release(leaseC)
    }

    @Test("pages unmapped under an entry in use: dropped at once, deregistered when its transfer gives it back")
    func invalidatedWhileInUse() throws {
        let device = try TCPOpener().open()
        let cache = try cache(device)
        try #require(cache.watching)
        let buffer = map(megabyte)
        let lease = try cache.acquire(buffer, length: megabyte, access: .remoteRead)
        munmap(buffer, megabyte)
        let again = map(megabyte, at: buffer)
        defer { munmap(again, megabyte) }
        let fresh = try cache.acquire(again, length: megabyte, access: .remoteRead)
        #expect(fresh.remoteKey != lease.remoteKey)
        #expect(cache.statistics.invalidations == 1 && cache.statistics.registeredBytes == 2 * megabyte)
        cache.release(lease)
        #expect(cache.statistics.registeredBytes == megabyte && cache.statistics.entries == 1)
        cache.release(fresh)
    }

    @Test("caching off: every acquisition registers for one use, and releasing deregisters")
    func uncached() throws {
        let device = try TCPOpener().open()
        let cache = try cache(device, caching: false)
        #expect(!cache.watching && (cache.uncachedReason ?? "").contains("FABRIC_REGCACHE=off"))
        let buffer = map(65536)
        defer { munmap(buffer, 65536) }
        let lease = try cache.acquire(buffer, length: 65536, access: .remoteRead)
        cache.release(lease)
        let statistics = cache.statistics
        #expect(statistics.uncachedRegistrations == 1 && statistics.registeredBytes == 0 && statistics.hits == 0)
    }

    @Test("software NIC: a remote key kept across an unmap is refused with a remote access error, never served from the new pages")
    func staleRemoteKeyRefused() throws {
        let pair = try connectedPair(TCPOpener())
        let server = pair.server, client = pair.client
        let configuration = RegistrationCacheConfiguration(capacityBytes: 64 << 20, capacitySource: "the test")
        let cache = RegistrationCache(device: server.device, domain: server.domain, configuration: configuration)
        try #require(cache.watching)
        let target = map(megabyte)
        memset(target, 0x11, megabyte)
        let lease = try cache.acquire(target, length: megabyte, access: .remoteRead)
        let remote = lease.remote(at: target)
        cache.release(lease)  // cached, unused: the key stays valid
        let local = Buffer(4096)
        let region = try client.register(local)
        func read() throws -> Completion {
            _ = try client.queuePair.postSend(SendWorkRequest(id: 1, operation: .read(remote), local: .single(try region.element(length: 4096))))
            return try client.nextSend("a READ")
        }
        #expect(try read().isSuccess && local.pointer.load(as: UInt8.self) == 0x11)
        // The owner frees the memory and something new lands there; the
        // cache is not called again before the peer reads.
        munmap(target, megabyte)
        let newObject = map(megabyte, at: target)
        defer { munmap(newObject, megabyte) }
        memset(newObject, 0x22, megabyte)
        local.pointer.storeBytes(of: 0, as: UInt8.self)
        let refused = try read()
        #expect(refused.status == .remoteAccessError, "\(refused)")
        #expect(local.pointer.load(as: UInt8.self) == 0, "the new object's bytes were read")
        // The cache registers the new pages on its next use.
        let fresh = try cache.acquire(newObject, length: megabyte, access: .remoteRead)
        #expect(fresh.remote(at: newObject).key != remote.key && cache.statistics.invalidations == 1)
        cache.release(fresh)
    }
}

/// The pool of memory the library hands out registered.
@Suite(.serialized)
struct RegisteredMemoryPoolTests {
    @Test("blocks come from registered chunks, need no lookup, merge when freed, and anything else is refused by name")
    func blocks() throws {
        let device = try TCPOpener().open()
        let configuration = RegistrationCacheConfiguration(capacityBytes: 256 << 20, capacitySource: "the test")
        let cache = RegistrationCache(device: device, domain: try device.allocateProtectionDomain(), configuration: configuration)
        let a = try cache.allocateMemory(1 << 20)
        let b = try cache.allocateMemory(100)
        #expect(a.count == 1 << 20 && b.count == 128 && UInt(bitPattern: b.baseAddress!) % 64 == 0)
        memset(a.baseAddress!, 7, a.count)
        let lease = try cache.acquire(a.baseAddress! + 4096, length: 65536, access: .remoteRead)
        cache.release(lease)
        var statistics = cache.statistics
        #expect(statistics.poolTransfers == 1 && statistics.hits == 0 && statistics.misses == 0)
        #expect(statistics.poolBytes == 64 << 20 && statistics.registeredBytes == 64 << 20)
        #expect(try lease.element(at: a.baseAddress! + 4096, length: 65536).length == 65536)
        try cache.freeMemory(a.baseAddress!)
        try cache.freeMemory(b.baseAddress!)
        // Freed blocks merged: the whole chunk is one block again.
        let whole = try cache.allocateMemory(64 << 20)
        #expect(cache.statistics.poolBytes == 64 << 20, "a new chunk was mapped: the freed blocks did not merge")
        try cache.freeMemory(whole.baseAddress!)
        #expect(throws: FabricError.self) { try cache.freeMemory(whole.baseAddress!) }
        var outside = [UInt8](repeating: 0, count: 16)
        #expect(throws: FabricError.self) { try cache.freeMemory(&outside) }
        #expect(throws: FabricError.self) { try cache.allocateMemory(0) }
        // Larger than a chunk: a chunk of its own; beyond the cap: refused.
        let large = try cache.allocateMemory(100 << 20)
        statistics = cache.statistics
        #expect(statistics.poolBytes >= (164 << 20))
        #expect(throws: FabricError.self) { try cache.allocateMemory(200 << 20) }
        try cache.freeMemory(large.baseAddress!)
        cache.close()
        #expect(cache.statistics.registeredBytes == 0)
    }
}
