/// Prefix reductions by recursive doubling: in round k each rank swaps
/// the reduction of its 2^k-block with the rank that differs in bit k,
/// folding what comes from below into its result. Rank order is kept
/// (the lower ranks' data is the left operand), so any operation serves.
extension CollectiveSchedule {
    /// `output` on rank r = input(0) op ... op input(r) (MPI_Scan), or up
    /// to input(r - 1) when `exclusive` (MPI_Exscan: rank 0's output is
    /// left as it is).
    mutating func recursiveDoublingScan(
        _ input: Elements, into output: Elements, _ operation: ReductionOperation, exclusive: Bool, allocator: ScratchAllocator
    ) throws(MPIError) {
        let count = output.count
        let datatype = output.datatype
        // The reduction of this rank's block so far, and the other buffer.
        var partial = try scratchElements(count: count, datatype, from: allocator)
        var incoming = try scratchElements(count: count, datatype, from: allocator)
        try copy(input.sendBuffer, into: partial.receiveBuffer)
        if !exclusive && input.base != output.base { try copy(input.sendBuffer, into: output.receiveBuffer) }
        var outputHolds = !exclusive
        var mask = 1
        while mask < size {
            let partner = rank ^ mask
            if partner < size {
                nextRound()
                exchange(partial.sendBuffer, to: partner, incoming.receiveBuffer, from: partner)
                if partner < rank {
                    // From below: into the result and into the block's partial.
                    if outputHolds {
                        reduce(operation, incoming.base, into: output.base, count: count, datatype)
                    } else {
                        try copy(incoming.sendBuffer, into: output.receiveBuffer)
                        outputHolds = true
                    }
                    reduce(operation, incoming.base, into: partial.base, count: count, datatype)
                } else {
                    // From above: partial op incoming, which then holds the partial.
                    reduce(operation, partial.base, into: incoming.base, count: count, datatype)
                    swap(&partial, &incoming)
                }
            }
            mask <<= 1
        }
    }
}
