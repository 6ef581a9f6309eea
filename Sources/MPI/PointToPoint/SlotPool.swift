import FabricCore

/// Registered memory cut into equal slots, with a free list: a
/// connection's receive slots, or the process's bounce slots that eager
/// messages leave from. Owns its buffer and registration; `close` releases
/// both (after the queue pairs that used them are gone). Used under the
/// engine's lock; its properties skip dynamic exclusivity checks as the
/// engine's do.
final class SlotPool<Device: FabricDevice> {
    let slotSize: Int
    let count: Int
    private let buffer: UnsafeMutableRawPointer
    let region: Device.MemoryRegion
    @exclusivity(unchecked) private var free: [Int]
    @exclusivity(unchecked) private var closed = false

    init(device: Device, domain: Device.ProtectionDomain, slotSize: Int, count: Int, access: MemoryAccess) throws(FabricError) {
        self.slotSize = slotSize
        self.count = count
        let bytes = max(1, slotSize * count)
        buffer = .allocate(byteCount: bytes, alignment: 4096)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        do {
            region = try device.registerMemory(buffer, length: bytes, access: access, in: domain)
        } catch {
            buffer.deallocate()
            throw error
        }
        free = Array((0..<count).reversed())
        free.reserveCapacity(count)
    }

    deinit { close() }

    var freeCount: Int { free.count }

    /// A free slot, or nil when all are in use.
    func take() -> Int? { free.popLast() }

    func give(back slot: Int) { free.append(slot) }

    func pointer(_ slot: Int) -> UnsafeMutableRawPointer { buffer + slot * slotSize }

    /// The slot's first `length` bytes, to send from or receive into.
    func element(_ slot: Int, length: Int) -> ScatterGatherElement {
        ScatterGatherElement(address: UInt64(UInt(bitPattern: pointer(slot))), length: UInt32(length), localKey: region.localKey)
    }

    /// Where a peer reads the slot's bytes from `offset` on.
    func remote(_ slot: Int, offset: Int) -> RemoteMemory { region.remote(offset: slot * slotSize + offset) }

    func close() {
        guard !closed else { return }
        closed = true
        try? region.deregister()
        buffer.deallocate()
    }
}
