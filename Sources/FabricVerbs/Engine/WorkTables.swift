internal import CVerbs
import FabricCore
import Synchronization

/// The bookkeeping between the application's work requests and the
/// device's. The device sees our own 64-bit work request ids:
/// - a send-queue request's id is its posting sequence number on its queue
///   pair; send completions come back in that order, so one ring tells the
///   application's id, the operation and the length of every request, and a
///   completion retires every earlier request too (they were unsignalled);
/// - a receive's id has the top bit set and is its sequence number on the
///   queue pair's receive queue, or, with the second bit, the shared receive
///   queue's process-wide index (bits 32-61) and its slot there (bits 0-31),
///   so that its slot is returned even when the queue pair is gone.
/// No allocation happens after creation.
enum WorkRequestTag {
    static let receive: UInt64 = 1 << 63
    static let shared: UInt64 = 1 << 62
    static let indexMask: UInt64 = (1 << 62) - 1
    static let slotMask: UInt64 = 0xFFFF_FFFF

    static func sharedQueueIndex(_ id: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: (id & indexMask) >> 32)
    }
}

/// The device request and scatter list a single post fills in place, under
/// its ring's lock: allocated once, so that a post builds no temporary and
/// calls no closure (under the VM's emulation each call costs).
struct PostingScratch<Request>: ~Copyable {
    let request: UnsafeMutablePointer<Request>
    let elements: UnsafeMutablePointer<ibv_sge>

    init(empty: Request, maxElements: Int) {
        request = .allocate(capacity: 1)
        request.initialize(to: empty)
        elements = .allocate(capacity: max(1, maxElements))
        elements.initialize(repeating: ibv_sge(), count: max(1, maxElements))
    }

    deinit {
        request.deallocate()
        elements.deallocate()
    }
}

extension PostingScratch where Request == ibv_recv_wr {
    /// Fills the receive request with `id` and `list`; returns it for the post.
    @inline(__always)
    borrowing func receive(_ list: ScatterList, id: UInt64) -> UnsafeMutablePointer<ibv_recv_wr> {
        let count = PostingBuffers.copy(list, into: elements)
        request.pointee.wr_id = id
        request.pointee.sg_list = count == 0 ? nil : elements
        request.pointee.num_sge = count
        return request
    }
}

struct SendSlot {
    var userID: UInt64 = 0
    var byteLength: UInt32 = 0
    var opcode: CompletionOpcode = .send
    /// The application asked for a completion. Unsignalled requests are
    /// signalled to the device now and then anyway, to free ring slots;
    /// those completions are not shown to the application.
    var userSignaled = false
}

struct SendRing: ~Copyable {
    let slots: UnsafeMutablePointer<SendSlot>
    let capacity: Int
    var posted: UInt64 = 0
    var retired: UInt64 = 0
    /// Unsignalled requests posted since the last signalled one.
    var unsignaledRun = 0
    let scratch: PostingScratch<ibv_send_wr>

    init(capacity: Int, maxElements: Int) {
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: SendSlot(), count: capacity)
        scratch = PostingScratch(empty: ibv_send_wr(), maxElements: maxElements)
    }

    deinit { slots.deallocate() }

    var isFull: Bool { posted &- retired >= UInt64(capacity) }

    /// Whether the next unsignalled request must be signalled to the device
    /// so that the ring does not fill with requests nobody retires: after
    /// half a ring of unsignalled ones, and always for the one that fills it.
    var needsSignal: Bool { needsSignal(after: 0) }

    /// The same for a request `ahead` positions after the next one (in a batch).
    func needsSignal(after ahead: Int, run: Int? = nil) -> Bool {
        (run ?? unsignaledRun) >= max(1, capacity / 2) || Int(posted &- retired) + ahead + 1 >= capacity
    }

    @inline(__always)
    mutating func record(_ slot: SendSlot, signaledToDevice: Bool) {
        slots[Int(posted % UInt64(capacity))] = slot
        posted &+= 1
        unsignaledRun = signaledToDevice ? 0 : unsignaledRun + 1
    }

    /// The request with sequence `sequence` completed, and with it every
    /// earlier one. nil for a successful completion of a request already
    /// retired (another poller's later completion got there first): its slot
    /// may hold a newer request by now.
    @inline(__always)
    mutating func retire(_ sequence: UInt64, success: Bool) -> SendSlot? {
        if sequence < retired && success { return nil }
        if sequence &+ 1 > retired { retired = sequence &+ 1 }
        return slots[Int(sequence % UInt64(capacity))]
    }
}

struct ReceiveRing: ~Copyable {
    let ids: UnsafeMutablePointer<UInt64>
    let capacity: Int
    var posted: UInt64 = 0
    var retired: UInt64 = 0
    let scratch: PostingScratch<ibv_recv_wr>

    init(capacity: Int, maxElements: Int) {
        self.capacity = capacity
        ids = .allocate(capacity: capacity)
        ids.initialize(repeating: 0, count: capacity)
        scratch = PostingScratch(empty: ibv_recv_wr(), maxElements: maxElements)
    }

    deinit { ids.deallocate() }

    var isFull: Bool { posted &- retired >= UInt64(capacity) }

    @inline(__always)
    mutating func record(_ userID: UInt64) {
        ids[Int(posted % UInt64(capacity))] = userID
        posted &+= 1
    }

    @inline(__always)
    mutating func retire(_ sequence: UInt64) -> UInt64 {
        if sequence &+ 1 > retired { retired = sequence &+ 1 }
        return ids[Int(sequence % UInt64(capacity))]
    }
}

/// A shared receive queue's posted receives: any queue pair may consume any
/// of them, so they are kept in slots with a free list.
struct SharedReceiveSlots: ~Copyable {
    let ids: UnsafeMutablePointer<UInt64>
    let taken: UnsafeMutablePointer<Bool>
    let free: UnsafeMutablePointer<Int32>
    let capacity: Int
    var freeCount: Int
    let scratch: PostingScratch<ibv_recv_wr>

    init(capacity: Int, maxElements: Int) {
        self.capacity = capacity
        scratch = PostingScratch(empty: ibv_recv_wr(), maxElements: maxElements)
        ids = .allocate(capacity: capacity)
        ids.initialize(repeating: 0, count: capacity)
        taken = .allocate(capacity: capacity)
        taken.initialize(repeating: false, count: capacity)
        free = .allocate(capacity: capacity)
        for index in 0..<capacity { free[index] = Int32(capacity - 1 - index) }
        freeCount = capacity
    }

    deinit {
        ids.deallocate()
        taken.deallocate()
        free.deallocate()
    }

    mutating func take(_ userID: UInt64) -> Int? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        let slot = Int(free[freeCount])
        ids[slot] = userID
        taken[slot] = true
        return slot
    }

    /// Gives back a taken slot (one never posted, or one that completed).
    /// A slot that is not taken (a duplicate completion) is ignored.
    mutating func giveBack(_ slot: Int) {
        guard slot >= 0, slot < capacity, taken[slot], freeCount < capacity else { return }
        taken[slot] = false
        free[freeCount] = Int32(slot)
        freeCount += 1
    }

    mutating func complete(_ slot: Int) -> UInt64 {
        guard slot >= 0, slot < capacity else { return 0 }
        let id = ids[slot]
        giveBack(slot)
        return id
    }
}

/// What a completion queue needs to know of a queue pair that reports to it.
final class QueuePairWork: Sendable {
    let number: QueuePairNumber
    let send: RingLock<SendRing>
    /// Unused when receives come from a shared receive queue.
    let receive: RingLock<ReceiveRing>
    let shared: VerbsSharedReceiveQueue?

    init(number: QueuePairNumber, limits: QueuePairLimits, shared: VerbsSharedReceiveQueue?) {
        self.number = number
        send = RingLock(SendRing(capacity: limits.sendQueueDepth, maxElements: limits.maxSendScatterEntries))
        receive = RingLock(ReceiveRing(capacity: shared == nil ? limits.receiveQueueDepth : 1, maxElements: limits.maxReceiveScatterEntries))
        self.shared = shared
    }
}
