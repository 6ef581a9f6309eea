import ArgumentParser
import CAllocationCounter
import Glibc
import MPI

/// One timed loop's outcome on this rank.
struct LoopResult {
    /// Wall time of the timed part.
    var seconds: Double
    /// Messages this rank sent and received in the timed part.
    var messages: Int
    /// Heap allocations of the whole process during the timed part.
    var allocations: UInt64
    /// Payload bytes the MPI layer copied during the timed part.
    var copiedBytes: Int
    /// Per-step times (ring and all-pairs), in nanoseconds.
    var stepNanoseconds: [UInt64] = []
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// The OSU micro-benchmarks' loops (latency, bw, bibw, mbw_mr) and two
/// exchanges for many ranks (ring, all-pairs), over the Swift API, with
/// buffers allocated once.
struct Loops {
    let mpi: MPIRuntime
    let sendBuffer: UnsafeMutableRawBufferPointer
    let receiveBuffer: UnsafeMutableRawBufferPointer
    /// Receive buffers for every message of a window (bw, bibw, all-pairs).
    let windowBuffers: UnsafeMutableRawBufferPointer
    let window: Int
    var requests: [Request]

    /// Whether the buffers came from the library's registered memory.
    let pooled: Bool

    /// `spreadOut`: room for vector layouts (twice each message's bytes).
    init(mpi: MPIRuntime, largest: Int, window: Int, pool: Bool, spreadOut: Bool = false) throws {
        self.mpi = mpi
        self.window = window
        pooled = pool
        func buffer(_ bytes: Int) throws -> UnsafeMutableRawBufferPointer {
            pool ? try mpi.allocateMemory(bytes) : .allocate(byteCount: bytes, alignment: 4096)
        }
        let room = max(largest, 1) * (spreadOut ? 2 : 1)
        sendBuffer = try buffer(room)
        receiveBuffer = try buffer(room)
        windowBuffers = try buffer(room * max(window, mpi.size))
        for index in 0..<sendBuffer.count { sendBuffer[index] = UInt8(truncatingIfNeeded: index) }
        requests = []
        requests.reserveCapacity(2 * max(window, mpi.size))
    }

    /// Gives the buffers back (before finalize, which unmaps pool memory).
    func release() {
        for buffer in [sendBuffer, receiveBuffer, windowBuffers] {
            if pooled { try? mpi.freeMemory(buffer) } else { buffer.deallocate() }
        }
    }

    private func bytes(_ size: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: sendBuffer[0..<size]) }
    private func into(_ size: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<size]) }
    private func windowSlot(_ index: Int, _ size: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: windowBuffers[(index * size)..<(index * size + size)])
    }

    /// Runs `body` `warmup + iterations` times, timing the last `iterations`.
    func timed(warmup: Int, iterations: Int, messagesPerIteration: Int, _ body: (Int) throws -> Void) throws -> LoopResult {
        for index in 0..<warmup { try body(index) }
        let copiedBefore = mpi.pointToPointStatistics.copiedBytes
        allocation_counter_enable(1)
        let allocationsBefore = allocation_counter_count()
        let start = monotonicNanoseconds()
        for index in 0..<iterations { try body(index) }
        let end = monotonicNanoseconds()
        let allocations = allocation_counter_count() - allocationsBefore
        allocation_counter_enable(0)
        return LoopResult(
            seconds: Double(end - start) / 1e9, messages: iterations * messagesPerIteration, allocations: allocations,
            copiedBytes: mpi.pointToPointStatistics.copiedBytes - copiedBefore)
    }

    /// osu_latency: rank 0 and 1 ping-pong; the others wait.
    mutating func latency(size: Int, iterations: Int, warmup: Int) throws -> LoopResult {
        let rank = mpi.rank
        guard rank < 2 else { return LoopResult(seconds: 0, messages: 0, allocations: 0, copiedBytes: 0) }
        let send = bytes(size)
        let receive = into(size)
        return try timed(warmup: warmup, iterations: iterations, messagesPerIteration: 2) { _ in
            if rank == 0 {
                try mpi.send(send, to: 1, tag: 1)
                _ = try mpi.receive(into: receive, from: 1, tag: 1)
            } else {
                _ = try mpi.receive(into: receive, from: 0, tag: 1)
                try mpi.send(send, to: 0, tag: 1)
            }
        }
    }

    /// osu_bw / osu_mbw_mr: the lower half of the ranks each send windows
    /// to a partner in the upper half, which answers each window with 4 bytes.
    mutating func bandwidth(size: Int, iterations: Int, warmup: Int) throws -> LoopResult {
        let pairs = mpi.size / 2
        let rank = mpi.rank
        guard rank < 2 * pairs else { return LoopResult(seconds: 0, messages: 0, allocations: 0, copiedBytes: 0) }
        let sender = rank < pairs
        let partner = sender ? rank + pairs : rank - pairs
        let send = bytes(size)
        let acknowledgement = into(4)
        return try timed(warmup: warmup, iterations: iterations, messagesPerIteration: window) { _ in
            requests.removeAll(keepingCapacity: true)
            if sender {
                for _ in 0..<window { requests.append(try mpi.startSend(send, to: partner, tag: 2)) }
                try mpi.waitAllDiscardingStatuses(requests)
                _ = try mpi.receive(into: acknowledgement, from: MessageSource(partner), tag: 3)
            } else {
                for index in 0..<window { requests.append(try mpi.startReceive(into: windowSlot(index, size), from: MessageSource(partner), tag: 2)) }
                try mpi.waitAllDiscardingStatuses(requests)
                try mpi.send(UnsafeRawBufferPointer(rebasing: sendBuffer[0..<4]), to: partner, tag: 3)
            }
        }
    }

    /// bw with `size` bytes as a vector on one side or both: blocks of
    /// `block` bytes (or the whole message when smaller) with gaps as large.
    mutating func vectorBandwidth(size: Int, iterations: Int, warmup: Int, sides: VectorSides, block: Int) throws -> LoopResult {
        let rank = mpi.rank
        guard rank < 2 else { return LoopResult(seconds: 0, messages: 0, allocations: 0, copiedBytes: 0) }
        let blockLength = max(1, min(size, block))
        let vector = try Datatype.vector(count: size / blockLength, blockLength: blockLength, stride: 2 * blockLength, of: .byte)
        try vector.commit()
        defer { try? vector.free() }
        let contiguous = try Datatype.contiguous(size, of: .byte)
        try contiguous.commit()
        defer { try? contiguous.free() }
        let sent = sides == .receive ? contiguous : vector
        let received = sides == .send ? contiguous : vector
        let span = 2 * size
        let acknowledgement = into(4)
        return try timed(warmup: warmup, iterations: iterations, messagesPerIteration: window) { _ in
            requests.removeAll(keepingCapacity: true)
            if rank == 0 {
                for _ in 0..<window { requests.append(try mpi.startSend(sendBuffer.baseAddress, count: 1, datatype: sent, to: 1, tag: 7)) }
                try mpi.waitAllDiscardingStatuses(requests)
                _ = try mpi.receive(into: acknowledgement, from: 1, tag: 8)
            } else {
                for index in 0..<window {
                    requests.append(try mpi.startReceive(into: windowSlot(index, span).baseAddress, count: 1, datatype: received, from: 0, tag: 7))
                }
                try mpi.waitAllDiscardingStatuses(requests)
                try mpi.send(UnsafeRawBufferPointer(rebasing: sendBuffer[0..<4]), to: 0, tag: 8)
            }
        }
    }

    /// Rank 0 packs (or unpacks) `size` bytes of bw_vector's vector, or
    /// copies `size` contiguous bytes with memcpy, once per iteration.
    mutating func packing(_ test: BenchTest, size: Int, iterations: Int, warmup: Int, block: Int) throws -> LoopResult {
        guard mpi.rank == 0 else { return LoopResult(seconds: 0, messages: 0, allocations: 0, copiedBytes: 0) }
        let blockLength = max(1, min(size, block))
        let vector = try Datatype.vector(count: size / blockLength, blockLength: blockLength, stride: 2 * blockLength, of: .byte)
        try vector.commit()
        defer { try? vector.free() }
        let spread = sendBuffer.baseAddress!
        let packed = receiveBuffer
        return try timed(warmup: warmup, iterations: iterations, messagesPerIteration: 1) { _ in
            var position = 0
            switch test {
            case .pack: try vector.pack(spread, count: 1, into: packed, position: &position)
            case .unpack: try vector.unpack(from: UnsafeRawBufferPointer(packed), position: &position, into: spread, count: 1)
            default: packed.baseAddress!.copyMemory(from: spread, byteCount: size)
            }
        }
    }

    /// osu_bibw: ranks 0 and 1 each send a window to the other at once.
    mutating func bidirectional(size: Int, iterations: Int, warmup: Int) throws -> LoopResult {
        let rank = mpi.rank
        guard rank < 2 else { return LoopResult(seconds: 0, messages: 0, allocations: 0, copiedBytes: 0) }
        let partner = 1 - rank
        let send = bytes(size)
        return try timed(warmup: warmup, iterations: iterations, messagesPerIteration: 2 * window) { _ in
            requests.removeAll(keepingCapacity: true)
            for index in 0..<window { requests.append(try mpi.startReceive(into: windowSlot(index, size), from: MessageSource(partner), tag: 4)) }
            for _ in 0..<window { requests.append(try mpi.startSend(send, to: partner, tag: 4)) }
            try mpi.waitAllDiscardingStatuses(requests)
        }
    }

    /// Each step every rank sends to the next and receives from the
    /// previous (MPI_Sendrecv along a ring).
    mutating func ring(size: Int, iterations: Int, warmup: Int) throws -> LoopResult {
        let next = (mpi.rank + 1) % mpi.size
        let previous = (mpi.rank + mpi.size - 1) % mpi.size
        let send = bytes(size)
        let receive = into(size)
        var steps = [UInt64](repeating: 0, count: iterations)
        var result = try timed(warmup: warmup, iterations: iterations, messagesPerIteration: 1) { index in
            let start = monotonicNanoseconds()
            _ = try mpi.sendReceive(send, to: next, sendTag: 5, into: receive, from: MessageSource(previous), receiveTag: 5)
            if index < iterations { steps[index] = monotonicNanoseconds() - start }
        }
        result.stepNanoseconds = steps
        return result
    }

    /// Each step every rank sends to every other and receives from each.
    mutating func allPairs(size: Int, iterations: Int, warmup: Int) throws -> LoopResult {
        let send = bytes(size)
        let rank = mpi.rank
        var steps = [UInt64](repeating: 0, count: iterations)
        var result = try timed(warmup: warmup, iterations: iterations, messagesPerIteration: mpi.size - 1) { index in
            let start = monotonicNanoseconds()
            requests.removeAll(keepingCapacity: true)
            for peer in 0..<mpi.size where peer != rank {
                requests.append(try mpi.startReceive(into: windowSlot(peer, size), from: MessageSource(peer), tag: 6))
            }
            for peer in 0..<mpi.size where peer != rank { requests.append(try mpi.startSend(send, to: peer, tag: 6)) }
            try mpi.waitAllDiscardingStatuses(requests)
            if index < iterations { steps[index] = monotonicNanoseconds() - start }
        }
        result.stepNanoseconds = steps
        return result
    }
}

/// Which side of bw_vector holds the vector.
enum VectorSides: String, ExpressibleByArgument, CaseIterable {
    case send, receive, both
}
