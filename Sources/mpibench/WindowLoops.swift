import ArgumentParser
import MPI
import Synchronization

/// What the target rank of the one-sided tests does meanwhile.
enum TargetMode: String, ExpressibleByArgument, CaseIterable {
    /// Calls into MPI all the while (tests a barrier), so its own calls
    /// serve the accesses.
    case polling
    /// Computes in its own loop, calling nothing of MPI, until rank 0
    /// raises a flag in its window: every access is served without it.
    case passive
}

extension Loops {
    /// The one-sided tests (osu_put_latency, osu_get_latency, osu_put_bw,
    /// osu_get_bw, osu_acc_latency, osu_fop_latency, osu_cas_latency with
    /// lock/flush synchronisation): rank 0 on rank 1's window, allocated
    /// from the registered pool; rank 0's buffers are the send and receive
    /// buffers (heap or pool, as --pool says).
    mutating func oneSided(_ test: BenchTest, size: Int, iterations: Int, warmup: Int, passiveTarget: Bool) throws -> LoopResult {
        let rank = mpi.rank
        let bytes = max(size, 8)
        let flagOffset = (bytes + 7) / 8 * 8
        let (window, base) = try mpi.allocateWindow(bytes: flagOffset + 8)
        if let base { base.initializeMemory(as: UInt8.self, repeating: 0, count: flagOffset + 8) }
        try mpi.barrier()
        var result = LoopResult(seconds: 0, messages: 0, allocations: 0, copiedBytes: 0)
        if rank == 0 {
            try mpi.lock(.shared, target: 1, on: window)
            let send = UnsafeRawPointer(sendBuffer.baseAddress!)
            let receive = receiveBuffer.baseAddress!
            let perIteration = [.putBandwidth, .getBandwidth, .accumulateBandwidth].contains(test) ? self.window : 1
            result = try timed(warmup: warmup, iterations: iterations, messagesPerIteration: perIteration) { _ in
                switch test {
                case .putLatency, .putBandwidth:
                    for _ in 0..<perIteration { try mpi.put(send, count: size, datatype: .byte, to: 1, displacement: 0, on: window) }
                case .getLatency, .getBandwidth:
                    for _ in 0..<perIteration { try mpi.get(into: receive, count: size, datatype: .byte, from: 1, displacement: 0, on: window) }
                case .accumulateLatency, .accumulateBandwidth:
                    for _ in 0..<perIteration {
                        try mpi.accumulate(send, count: bytes / 8, datatype: .double, to: 1, displacement: 0, operation: .sum, on: window)
                    }
                case .fetchAndOpLatency:
                    try mpi.fetchAndOp(send, result: receive, datatype: .int64, target: 1, displacement: 0, operation: .sum, on: window)
                case .compareAndSwapLatency:
                    try mpi.compareAndSwap(send, compare: UnsafeRawPointer(receive), result: receive + 8, datatype: .int64, target: 1, displacement: 0, on: window)
                default:
                    break
                }
                try mpi.flush(target: 1, on: window)
            }
            var one: Int64 = 1
            try mpi.put(&one, count: 1, datatype: .int64, to: 1, displacement: flagOffset, on: window)
            try mpi.unlock(target: 1, on: window)
        } else if rank == 1, passiveTarget, let base {
            let flag = (base + flagOffset).assumingMemoryBound(to: Atomic<Int64>.self)
            var work = 0.0
            while flag.pointee.load(ordering: .acquiring) == 0 {
                for step in 0..<1000 { work += Double(step) * 1e-9 }
            }
            if work < 0 { print(work) }  // (keeps the loop)
        } else if rank == 1 {
            // Polling: the target tests a barrier until rank 0 has done,
            // calling into MPI all the while (a blocking wait would fall
            // asleep on the completion queue after FABRIC_MPI_SPIN_US).
            let done = try mpi.startBarrier()
            while try mpi.test(done) == nil {}
            try mpi.free(window)
            return result
        }
        try mpi.barrier()
        try mpi.free(window)
        return result
    }
}
