import MPI

extension Loops {
    /// osu_barrier, osu_allreduce (float sums, size / 4 elements),
    /// osu_bcast (from rank 0) and osu_alltoall (size bytes per block),
    /// every operation timed on every rank.
    mutating func collective(_ test: BenchTest, size: Int, iterations: Int, warmup: Int) throws -> LoopResult {
        let mpi = self.mpi
        let send = sendBuffer.baseAddress!
        let receive = receiveBuffer.baseAddress!
        let operation: () throws -> Void
        switch test {
        case .barrier: operation = { try mpi.barrier() }
        case .allreduce: operation = { try mpi.allreduce(send, into: receive, count: size / 4, datatype: .float, operation: .sum) }
        case .bcast: operation = { try mpi.broadcast(receive, count: size, datatype: .byte, root: 0) }
        case .alltoall: operation = { try mpi.allToAll(send, count: size, datatype: .byte, into: receive, receiveCount: size, receiveDatatype: .byte) }
        default: preconditionFailure("\(test) is not a collective")
        }
        for _ in 0..<warmup { try operation() }
        try mpi.barrier()
        var steps = [UInt64](repeating: 0, count: iterations)
        var result = try timed(warmup: 0, iterations: iterations, messagesPerIteration: 1) { index in
            let start = monotonicNanoseconds()
            try operation()
            steps[index] = monotonicNanoseconds() - start
        }
        result.stepNanoseconds = steps
        return result
    }
}
