import FabricCore
import FabricSupport
import Glibc

/// Memory the library hands out already registered (MPI_Alloc_mem's idea):
/// chunks mapped and registered once, carved into blocks on request. A
/// transfer from a block needs no cache lookup and no watch: the pool owns
/// the mapping and unmaps it only when it closes.
///
/// Chunks are 64 MiB (or one block's size, if larger), backed by explicit
/// huge pages where the system has some free (vm.nr_hugepages), else
/// advised for transparent huge pages where those are enabled; `pages`
/// says which. Blocks are 64-byte aligned; a freed block merges with its
/// free neighbours. Not thread-safe: its owner (the registration cache)
/// calls it under its lock.
final class RegisteredMemoryPool {
    typealias Register = (UnsafeMutableRawPointer, Int, MemoryAccess) throws(FabricError) -> any FabricMemoryRegion

    /// What backs the chunks.
    enum Pages: String, Sendable {
        case explicitHuge = "explicit huge pages (vm.nr_hugepages)"
        case transparentHuge = "transparent huge pages (madvise)"
        case ordinary = "ordinary pages (no huge pages configured or enabled)"
    }

    private struct Chunk {
        let base: UInt
        let length: Int
        let region: any FabricMemoryRegion
        let lease: RegistrationLease
        /// Free ranges (offset, length), sorted by offset.
        var free: [(offset: Int, length: Int)]
    }

    static let chunkSize = 64 << 20
    /// What every chunk is registered for.
    static let access: MemoryAccess = [.localWrite, .remoteRead, .remoteWrite]
    static let alignment = 64
    static let hugePageSize = 2 << 20
    private let register: Register
    private var chunks: [Chunk] = []
    /// Blocks handed out: address to (chunk, length).
    private var blocks: [UInt: (chunk: Int, length: Int)] = [:]
    private(set) var pages: Pages
    private(set) var registeredBytes = 0

    init(register: @escaping Register) {
        self.register = register
        pages = Self.hugePagesAvailable ? .explicitHuge : Self.transparentHugePagesEnabled ? .transparentHuge : .ordinary
    }

    /// A block of at least `bytes`, registered for every access.
    /// `makeRoom` is asked first for the bytes of a new chunk.
    func allocate(_ bytes: Int, makeRoom: (Int) throws(FabricError) -> Void) throws(FabricError) -> UnsafeMutableRawBufferPointer {
        guard bytes > 0 else { throw FabricError(.invalidArgument, "cannot allocate \(bytes) bytes of registered memory") }
        let (rounded, overflow) = bytes.addingReportingOverflow(Self.alignment - 1)
        guard !overflow else { throw FabricError(.invalidArgument, "cannot allocate \(bytes) bytes of registered memory") }
        let length = rounded & ~(Self.alignment - 1)
        for index in chunks.indices {
            if let block = take(length, from: index) { return block }
        }
        try addChunk(minimum: length, makeRoom: makeRoom)
        return take(length, from: chunks.count - 1)!
    }

    /// Gives back a block `allocate` returned; anything else is refused.
    func free(_ address: UnsafeMutableRawPointer) throws(FabricError) {
        guard let (index, length) = blocks.removeValue(forKey: UInt(bitPattern: address)) else {
            throw FabricError(.invalidArgument, "\(address) is not a block of registered memory this library handed out (or it was freed already)")
        }
        let offset = Int(UInt(bitPattern: address) - chunks[index].base)
        var free = chunks[index].free
        let at = free.firstIndex { $0.offset > offset } ?? free.count
        free.insert((offset, length), at: at)
        // Merge with the following range, then with the preceding one.
        if at + 1 < free.count, free[at].offset + free[at].length == free[at + 1].offset {
            free[at].length += free[at + 1].length
            free.remove(at: at + 1)
        }
        if at > 0, free[at - 1].offset + free[at - 1].length == free[at].offset {
            free[at - 1].length += free[at].length
            free.remove(at: at)
        }
        chunks[index].free = free
    }

    /// The chunk's registration if [address, address + length) lies in one.
    @inline(__always)
    func lease(covering address: UInt, _ end: UInt) -> RegistrationLease? {
        for chunk in chunks where address >= chunk.base && end <= chunk.base + UInt(chunk.length) {
            return chunk.lease
        }
        return nil
    }

    var isEmpty: Bool { chunks.isEmpty }

    /// Deregisters and unmaps every chunk (blocks still handed out die
    /// with them: the owner closes only at the end).
    func close() {
        for chunk in chunks {
            try? chunk.region.deregister()
            munmap(UnsafeMutableRawPointer(bitPattern: chunk.base), chunk.length)
        }
        chunks.removeAll()
        blocks.removeAll()
        registeredBytes = 0
    }

    private func take(_ length: Int, from index: Int) -> UnsafeMutableRawBufferPointer? {
        guard let at = chunks[index].free.firstIndex(where: { $0.length >= length }) else { return nil }
        let offset = chunks[index].free[at].offset
        if chunks[index].free[at].length == length {
            chunks[index].free.remove(at: at)
        } else {
            chunks[index].free[at].offset += length
            chunks[index].free[at].length -= length
        }
        let address = chunks[index].base + UInt(offset)
        blocks[address] = (index, length)
        return UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: address), count: length)
    }

    private func addChunk(minimum: Int, makeRoom: (Int) throws(FabricError) -> Void) throws(FabricError) {
        let unit = pages == .ordinary ? Int(sysconf(Int32(_SC_PAGESIZE))) : Self.hugePageSize
        let length = (max(minimum, Self.chunkSize) + unit - 1) / unit * unit
        try makeRoom(length)
        var memory = MAP_FAILED
        if pages == .explicitHuge {
            memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0)
            // Not enough huge pages left: ordinary ones, and say so.
            if memory == MAP_FAILED { pages = Self.transparentHugePagesEnabled ? .transparentHuge : .ordinary }
        }
        if memory == MAP_FAILED {
            memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard memory != MAP_FAILED, let memory else {
                throw FabricError(.system(errno: errno), "cannot map \(length) bytes for registered memory: \(String(cString: strerror(errno)))")
            }
            if pages == .transparentHuge { _ = madvise(memory, length, 14) }  // MADV_HUGEPAGE
        }
        let region: any FabricMemoryRegion
        do {
            region = try register(memory!, length, Self.access)
        } catch {
            munmap(memory, length)
            throw error
        }
        let base = UInt(bitPattern: memory)
        let lease = RegistrationLease(
            slot: RegistrationLease.poolSlot, regionAddress: UInt64(base), regionLength: length,
            localKey: region.localKey, remoteKey: region.remoteKey)
        chunks.append(Chunk(base: base, length: length, region: region, lease: lease, free: [(0, length)]))
        registeredBytes += length
    }

    private static var hugePagesAvailable: Bool {
        SystemFiles.lines("/proc/sys/vm/nr_hugepages")?.first.flatMap { Int($0) }.map { $0 > 0 } ?? false
    }

    private static var transparentHugePagesEnabled: Bool {
        guard let mode = SystemFiles.lines("/sys/kernel/mm/transparent_hugepage/enabled")?.first else { return false }
        return mode.contains("[always]") || mode.contains("[madvise]")
    }
}
