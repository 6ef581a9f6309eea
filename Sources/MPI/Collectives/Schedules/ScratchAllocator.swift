/// A block of memory a collective schedule works in.
struct ScratchMemory {
    let base: UnsafeMutableRawPointer
    /// From the registered pool (given back there), or from the heap.
    let registered: Bool
}

/// Where schedules get their working memory: blocks larger than an eager
/// message come from the registered pool, so that a rendezvous lands in
/// them without a registration of its own; smaller ones from the heap.
struct ScratchAllocator: Sendable {
    let transport: PointToPointTransport

    func allocate(_ bytes: Int) throws(MPIError) -> ScratchMemory {
        if bytes > transport.settings.eagerLimit {
            return ScratchMemory(base: try transport.allocateMemory(bytes).baseAddress!, registered: true)
        }
        return ScratchMemory(base: .allocate(byteCount: max(bytes, 1), alignment: 64), registered: false)
    }

    func release(_ memory: ScratchMemory) {
        if memory.registered {
            // Only fails for memory the pool did not hand out.
            try? transport.freeMemory(memory.base)
        } else {
            memory.base.deallocate()
        }
    }
}
