import FabricCore

/// Registered memory cut into fixed slots for runtime messages: receive
/// slots posted on a peer's queue pair, or the one slot a send leaves
/// from. Owns its buffer and registration; `close` releases both.
final class RuntimeMessageSlots<Device: FabricDevice>: @unchecked Sendable {  // written by one thread at a time: the poster, then the poller that consumes the slot
    /// The largest runtime message.
    static var slotSize: Int { 4096 }
    /// Receive slots per peer: messages a peer may have in flight before
    /// it waits (its receiver-not-ready retries are unlimited).
    static var receiveCount: Int { 8 }

    private let buffer: UnsafeMutableRawPointer
    private let region: Device.MemoryRegion
    let count: Int
    /// Names this set of slots in its receives' work request ids.
    let identifier: UInt32
    private var closed = false

    init(device: Device, domain: Device.ProtectionDomain, count: Int, identifier: UInt32) throws(FabricError) {
        self.count = count
        self.identifier = identifier
        buffer = .allocate(byteCount: count * Self.slotSize, alignment: 4096)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: count * Self.slotSize)
        do {
            region = try device.registerMemory(buffer, length: count * Self.slotSize, access: .localWrite, in: domain)
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    deinit { close() }

    /// Copies `bytes` into slot `index`; the element to send from.
    func fill(_ index: Int, with bytes: [UInt8]) throws(FabricError) -> ScatterGatherElement {
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { (buffer + index * Self.slotSize).copyMemory(from: base, byteCount: source.count) }
        }
        return try region.element(offset: index * Self.slotSize, length: bytes.count)
    }

    func contents(_ index: Int, length: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: buffer + index * Self.slotSize, count: min(length, Self.slotSize)))
    }

    func postAll(on queuePair: Device.QueuePair, peer: Int) throws(FabricError) {
        for index in 0..<count { try post(index, on: queuePair, peer: peer) }
    }

    func post(_ index: Int, on queuePair: Device.QueuePair, peer: Int) throws(FabricError) {
        let request = ReceiveWorkRequest(
            id: Self.encode(slots: identifier, slot: index), local: .single(try region.element(offset: index * Self.slotSize, length: Self.slotSize)))
        guard try queuePair.postReceive(request) == .posted else {
            throw FabricError(.limitExceeded, "the receive queue of rank \(peer)'s queue pair is full")
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        try? region.deregister()
        buffer.deallocate()
    }

    /// A receive's work request id: the top bit marks it (send ids never
    /// have it), then the set of slots and the slot.
    static func encode(slots: UInt32, slot: Int) -> UInt64 { 1 << 63 | UInt64(slots) << 16 | UInt64(slot) }

    static func decode(_ id: UInt64) -> (slots: UInt32, slot: Int)? {
        guard id >> 63 == 1 else { return nil }
        return (UInt32(truncatingIfNeeded: id >> 16), Int(id & 0xffff))
    }
}
