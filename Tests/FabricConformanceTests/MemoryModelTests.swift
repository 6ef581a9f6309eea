import Fabric
import FabricTestSupport
import Glibc
import Testing

@Suite("memory model")
struct MemoryModelTests {
    /// The registration cache's hazard: memory freed and mapped again at the
    /// same address while still registered. A pinning device keeps the old
    /// pages (the peer reads stale bytes, writes vanish from the process's
    /// view); the software NIC follows the current mapping. Each backend
    /// must do what its capability says, so a cache built on top has a test
    /// that can fail.
    @Test("a registration kept across a new mapping at its address uses the pages its memory model says", arguments: ConformanceBackend.available)
    func remappedRegistration(_ backend: ConformanceBackend) throws {
        try remappedRegistration(on: backend.opener)
    }

    private func remappedRegistration<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let size = 1 << 16
        guard let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mapping != MAP_FAILED else {
            throw TestFailure("mmap failed")
        }
        defer { munmap(mapping, size) }
        mapping.initializeMemory(as: UInt8.self, repeating: 0xAA, count: size)
        let region = try pair.server.device.registerMemory(mapping, length: size, access: .all, in: pair.server.domain)
        // Free the pages and map new ones at the same address in one step
        // (MAP_FIXED replaces the old mapping as munmap + mmap would, with
        // no window in which a parallel test could take the range).
        guard mmap(mapping, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == mapping else {
            throw TestFailure("mmap MAP_FIXED failed")
        }
        mapping.initializeMemory(as: UInt8.self, repeating: 0xBB, count: size)

        let local = Buffer(64)
        let localRegion = try pair.client.register(local)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .read(region.remote()), local: .single(localRegion.element(offset: 0, length: 32))))
        #expect(try pair.client.nextSend().status == .success)
        let read = local.pointer.load(as: UInt8.self)
        (local.pointer + 32).initializeMemory(as: UInt8.self, repeating: 0xCC, count: 32)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .write(region.remote(offset: 1024)), local: .single(localRegion.element(offset: 32, length: 32))))
        #expect(try pair.client.nextSend().status == .success)
        let seen = mapping.load(fromByteOffset: 1024, as: UInt8.self)
        switch pair.server.device.capabilities.memoryModel {
        case .pinned:
            #expect(read == 0xAA, "a pinning device reads the pages it pinned: stale bytes")
            #expect(seen == 0xBB, "a pinning device writes to the old pages, out of the process's sight")
        case .followsCurrentMapping:
            #expect(read == 0xBB, "the software NIC reads the current mapping")
            #expect(seen == 0xCC, "the software NIC writes to the current mapping")
        }
        try region.deregister()
    }
}
