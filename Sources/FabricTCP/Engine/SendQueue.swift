import FabricCore

/// One send-queue entry, preallocated. Positions (not indices) name slots:
/// they only grow, and `position % depth` is the slot.
struct SendSlot {
    var id: UInt64 = 0
    var opcode: WireOpcode = .send
    var completionOpcode: CompletionOpcode = .send
    var flags: SendFlags = []
    var elementCount = 0
    var length = 0
    /// Bytes of this frame on the wire (header, operands, payload).
    var wireLength = 0
    /// A READ or atomic: done only when its response arrived.
    var awaitsResponse = false
    var responded = false
    var status: CompletionStatus = .success
    var detail: CompletionDetail = .none
    var sentAt: UInt64 = 0
    // Stamped at posting only while a link or faults are emulated: when it
    // was posted, and the packets it carries, numbered as the fault script
    // counts them.
    var readyAt: UInt64 = 0
    var firstPacket = 0
    var packetCount = 0
}

/// The send queue's storage: slots, their scatter elements and region
/// records, encoded headers (with atomic operands) and inline payloads.
struct SendQueueStorage: ~Copyable {
    let depth: Int
    /// `depth - 1` when the depth is a power of two (the usual case: 128 by
    /// default), else -1: a slot's index is then a mask, not a division
    /// (tens of cycles, and about a dozen per message).
    private let indexMask: Int
    let maxElements: Int
    let maxInline: Int
    /// Per slot: the header (32 B), then the atomic operands (16 B) or the
    /// inline payload, so that a small frame is one contiguous buffer.
    let stride: Int
    let slots: UnsafeMutablePointer<SendSlot>
    let elements: UnsafeMutablePointer<ScatterGatherElement>
    let records: UnsafeMutablePointer<RegionRecord?>
    let headers: UnsafeMutableRawPointer

    init(depth: Int, maxElements: Int, maxInline: Int) {
        self.depth = depth
        indexMask = depth > 0 && depth & (depth - 1) == 0 ? depth - 1 : -1
        self.maxElements = max(1, maxElements)
        self.maxInline = maxInline
        slots = .allocate(capacity: depth)
        slots.initialize(repeating: SendSlot(), count: depth)
        elements = .allocate(capacity: depth * self.maxElements)
        elements.initialize(repeating: ScatterGatherElement(address: 0, length: 0, localKey: LocalKey(rawValue: 0)), count: depth * self.maxElements)
        records = .allocate(capacity: depth * self.maxElements)
        records.initialize(repeating: nil, count: depth * self.maxElements)
        stride = (FrameHeader.size + max(atomicRequestPayload, maxInline) + 15) & ~15
        headers = .allocate(byteCount: depth * stride, alignment: 64)
    }

    deinit {
        records.deinitialize(count: depth * maxElements)
        records.deallocate()
        elements.deallocate()
        slots.deinitialize(count: depth)
        slots.deallocate()
        headers.deallocate()
    }

    @inline(__always) func index(_ position: Int) -> Int { indexMask >= 0 ? position & indexMask : position % depth }
    @inline(__always) func header(_ position: Int) -> UnsafeMutableRawPointer {
        headers + index(position) * stride
    }
    @inline(__always) func elementBase(_ position: Int) -> Int { index(position) * maxElements }
    @inline(__always) func inline(_ position: Int) -> UnsafeMutableRawPointer {
        header(position) + FrameHeader.size
    }

    func releaseRecords(_ position: Int) {
        let base = elementBase(position)
        for i in 0..<slots[index(position)].elementCount { records[base + i] = nil }
    }
}

/// A frame the responder side sends: a READ response (payload from the
/// local region, then a 4-byte status trailer), an atomic response (8 bytes
/// of old value), or a NAK. Preallocated ring.
struct ResponseItem {
    var payload: UnsafeMutableRawPointer? = nil
    var payloadLength = 0
    var record: RegionRecord? = nil
    /// Bytes of this frame on the wire.
    var wireLength = 0
    /// A NAK that ends the connection once written.
    var fatal = false
    /// When it was queued; stamped only while a link is emulated.
    var readyAt: UInt64 = 0
}

struct ResponseQueueStorage: ~Copyable {
    /// Header, 8 bytes of atomic value, 4 bytes of READ trailer.
    static let stride = 48
    let depth: Int
    let items: UnsafeMutablePointer<ResponseItem>
    let buffers: UnsafeMutableRawPointer
    var head = 0
    var count = 0

    init(depth: Int) {
        self.depth = depth
        items = .allocate(capacity: depth)
        items.initialize(repeating: ResponseItem(), count: depth)
        buffers = .allocate(byteCount: depth * ResponseQueueStorage.stride, alignment: 16)
        buffers.initializeMemory(as: UInt8.self, repeating: 0, count: depth * ResponseQueueStorage.stride)
    }

    deinit {
        items.deinitialize(count: depth)
        items.deallocate()
        buffers.deallocate()
    }

    var isFull: Bool { count == depth }

    /// Reserves the next item; returns its index.
    mutating func reserve() -> Int {
        var index = head + count
        if index >= depth { index -= depth }
        count += 1
        items[index] = ResponseItem()
        return index
    }

    @inline(__always) func buffer(_ index: Int) -> UnsafeMutableRawPointer {
        buffers + index * ResponseQueueStorage.stride
    }

    mutating func popFront() {
        items[head].record = nil
        head += 1
        if head == depth { head = 0 }
        count -= 1
    }

    mutating func removeAll() {
        while count > 0 { popFront() }
    }
}
