/// A block of memory a collective schedule works in.
struct ScratchMemory {
    let base: UnsafeMutableRawPointer
    /// From the registered pool (given back there), or from the heap.
    let registered: Bool
}

/// Where schedules get their working memory: blocks larger than an eager
/// message come from the registered pool, so that a rendezvous lands in
/// them without a registration of its own; smaller ones from the heap.
/// (A class: schedules pass it around, and the transport's closures it
/// uses are not copied each time.)
final class ScratchAllocator: Sendable {
    private let eagerLimit: Int
    private let allocateRegistered: @Sendable (Int) throws(MPIError) -> UnsafeMutableRawBufferPointer
    private let freeRegistered: @Sendable (UnsafeMutableRawPointer) throws(MPIError) -> Void

    init(transport: PointToPointTransport) {
        eagerLimit = transport.settings.eagerLimit
        allocateRegistered = transport.allocateMemory
        freeRegistered = transport.freeMemory
    }

    func allocate(_ bytes: Int) throws(MPIError) -> ScratchMemory {
        if bytes > eagerLimit {
            return ScratchMemory(base: try allocateRegistered(bytes).baseAddress!, registered: true)
        }
        return ScratchMemory(base: .allocate(byteCount: max(bytes, 1), alignment: 64), registered: false)
    }

    func release(_ memory: ScratchMemory) {
        if memory.registered {
            // Only fails for memory the pool did not hand out.
            try? freeRegistered(memory.base)
        } else {
            memory.base.deallocate()
        }
    }
}
