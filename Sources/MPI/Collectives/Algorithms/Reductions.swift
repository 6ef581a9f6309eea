/// The reduction algorithms. Partial results live in scratch memory laid
/// out as the elements are (their true span), so an operation sees the
/// type's layout; only element bytes are ever written into the caller's
/// buffer. `output = input op output` is the operation's one form
/// (`ReductionOperation.apply`), so where the later ranks' data is the
/// input's, results alternate between two buffers instead of being copied.
extension CollectiveSchedule {
    /// Room for `count` elements of `datatype`, owned by the schedule.
    mutating func scratchElements(count: Int, _ datatype: Datatype, from allocator: ScratchAllocator) throws(MPIError) -> Elements {
        let span = datatype.trueSpan(count: count)
        let memory = try scratchMemory(span.count, from: allocator)
        return Elements(memory - span.lowerBound, count: count, datatype)
    }

    /// Binomial reduction towards rank 0, in rank order (a
    /// non-commutative operation combines as MPI orders it), then to
    /// `root`. `input` is this rank's contribution; the result lands in
    /// `output` on the root.
    mutating func binomialReduce(
        _ input: Elements, into output: Elements, _ operation: ReductionOperation, root: Int, allocator: ScratchAllocator
    ) throws(MPIError) {
        var accumulated = input
        var spare: [Elements] = []
        var mask = 1
        while mask < size {
            if rank & mask != 0 {
                nextRound()
                send(accumulated.sendBuffer, to: rank - mask)
                break
            }
            if rank + mask < size {
                if spare.isEmpty {
                    spare = [try scratchElements(count: input.count, input.datatype, from: allocator),
                             try scratchElements(count: input.count, input.datatype, from: allocator)]
                }
                // The buffer that does not hold the partial result.
                let incoming = spare[0].base == accumulated.base ? spare[1] : spare[0]
                nextRound()
                receive(incoming.receiveBuffer, from: rank + mask)
                // Lower ranks first: incoming = accumulated op incoming.
                reduce(operation, accumulated.base, into: incoming.base, count: input.count, input.datatype)
                accumulated = incoming
            }
            mask <<= 1
        }
        if rank == 0 && root == 0 {
            if accumulated.base != output.base { try copy(accumulated.sendBuffer, into: output.receiveBuffer) }
        } else if rank == 0 {
            nextRound()
            send(accumulated.sendBuffer, to: root)
        } else if rank == root {
            nextRound()
            receive(output.receiveBuffer, from: 0)
        }
    }

    /// Recursive doubling: log2 n exchanges of the whole vector with the
    /// rank that differs in one bit; with n not a power of two, the first
    /// 2r ranks (r = n - 2^k) pair up first and the odd one of each pair
    /// stands for both. Rank order is kept: the lower ranks' data is
    /// always the left operand. The result lands in `output` on every rank.
    /// The first combination reads `input` where it is and, where the
    /// order allows, receives straight into `output` (two ranks: nothing
    /// copied, no scratch memory).
    mutating func recursiveDoublingAllreduce(
        _ input: Elements, into output: Elements, _ operation: ReductionOperation, allocator: ScratchAllocator
    ) throws(MPIError) {
        let count = output.count
        let datatype = output.datatype
        guard size > 1 else {
            if input.base != output.base { try copy(input.sendBuffer, into: output.receiveBuffer) }
            return
        }
        // Whether `output` holds this rank's partial result yet (in place:
        // from the start); until it does, `input` is the partial result.
        var outputHolds = input.base == output.base
        var spare: Elements?
        /// One round with `partner`: this rank's partial result goes to it
        /// (unless `sends` is false), its partial result comes in and is
        /// combined, the lower ranks' on the left.
        func combine(with partner: Int, sends: Bool) throws(MPIError) {
            let fromLower = partner < rank
            nextRound()
            let current = outputHolds ? output : input
            if !outputHolds && (operation.isCommutative || !fromLower) {
                // output = input op theirs (the order is right, or does not matter).
                receive(output.receiveBuffer, from: partner)
                if sends { send(current.sendBuffer, to: partner) }
                reduce(operation, input.base, into: output.base, count: count, datatype)
                outputHolds = true
                return
            }
            if spare == nil { spare = try scratchElements(count: count, datatype, from: allocator) }
            let incoming = spare!
            receive(incoming.receiveBuffer, from: partner)
            if sends { send(current.sendBuffer, to: partner) }
            if !outputHolds {
                try copy(input.sendBuffer, into: output.receiveBuffer)
                outputHolds = true
            }
            if fromLower || operation.isCommutative {
                reduce(operation, incoming.base, into: output.base, count: count, datatype)
            } else {
                // incoming = output op incoming, then back into output.
                reduce(operation, output.base, into: incoming.base, count: count, datatype)
                try copy(incoming.sendBuffer, into: output.receiveBuffer)
            }
        }
        var powerOfTwo = 1
        while powerOfTwo * 2 <= size { powerOfTwo *= 2 }
        let remainder = size - powerOfTwo
        var newRank = rank - remainder
        if rank < 2 * remainder {
            if rank % 2 == 0 {
                nextRound()
                send((outputHolds ? output : input).sendBuffer, to: rank + 1)
                newRank = -1
            } else {
                try combine(with: rank - 1, sends: false)
                newRank = rank / 2
            }
        }
        if newRank >= 0 {
            var mask = 1
            while mask < powerOfTwo {
                let newPartner = newRank ^ mask
                try combine(with: newPartner < remainder ? newPartner * 2 + 1 : newPartner + remainder, sends: true)
                mask <<= 1
            }
        }
        if rank < 2 * remainder {
            nextRound()
            if rank % 2 == 1 {
                send(output.sendBuffer, to: rank - 1)
            } else {
                receive(output.receiveBuffer, from: rank + 1)
            }
        }
    }

    /// A ring reduce-scatter, then a ring allgather (commutative
    /// operations, at least one element per rank): the vector is cut into
    /// n blocks; in n - 1 steps each block travels the ring gathering
    /// every rank's contribution, in n - 1 more the finished blocks do.
    /// Each rank sends about twice the vector. Incoming partial blocks
    /// land in `output` and are combined there with this rank's input, so
    /// nothing is copied (in place, they land in scratch first).
    mutating func ringAllreduce(
        _ input: Elements, into output: Elements, _ operation: ReductionOperation, allocator: ScratchAllocator
    ) throws(MPIError) {
        let blocks = BlockPartition(count: output.count, parts: size)
        let next = (rank + 1) % size
        let previous = (rank + size - 1) % size
        let inPlace = input.base == output.base
        let landing = inPlace ? try scratchElements(count: blocks.range(0).count, output.datatype, from: allocator) : output
        for step in 0..<(size - 1) {
            let outgoing = (rank - step + size) % size
            let arriving = (rank - step - 1 + 2 * size) % size
            let arrivingRange = blocks.range(arriving)
            let target = inPlace ? landing.elements(0..<arrivingRange.count) : output.elements(arrivingRange)
            // Step 0 sends this rank's own contribution; later steps the
            // partial block the step before finished.
            let source = step == 0 ? input : output
            nextRound()
            // The next step needs only what arrives: the block sent is
            // not written again before the allgather, which waits for it.
            receive(target.receiveBuffer, from: previous)
            deferredSend(source.elements(blocks.range(outgoing)).sendBuffer, to: next)
            if inPlace {
                reduce(operation, target.base, into: output.elements(arrivingRange).base, count: arrivingRange.count, output.datatype)
            } else {
                reduce(operation, input.elements(arrivingRange).base, into: target.base, count: arrivingRange.count, output.datatype)
            }
        }
        waitForDeferredSends()
        // Each block goes on once and is never written again here: the
        // sends are waited for at the end.
        for step in 0..<(size - 1) {
            let outgoing = (rank + 1 - step + size) % size
            let arriving = (rank - step + size) % size
            nextRound()
            receive(output.elements(blocks.range(arriving)).receiveBuffer, from: previous)
            deferredSend(output.elements(blocks.range(outgoing)).sendBuffer, to: next)
        }
    }

    /// A ring reduce-scatter whose block i (of `counts[i]` elements) ends
    /// on rank i, in `output` (commutative operations). Partial blocks
    /// travel in scratch memory; the last lands in `output` directly.
    mutating func ringReduceScatter(
        _ input: Elements, counts: [Int], into output: Elements, _ operation: ReductionOperation, allocator: ScratchAllocator
    ) throws(MPIError) {
        let datatype = input.datatype
        var starts = [0]
        for count in counts { starts.append(starts.last! + count) }
        func range(_ block: Int) -> Range<Int> { starts[block]..<starts[block + 1] }
        let own = counts[rank]
        guard size > 1 else {
            if input.base != output.base { try copy(input.elements(range(0)).sendBuffer, into: output.receiveBuffer) }
            return
        }
        let next = (rank + 1) % size
        let previous = (rank + size - 1) % size
        // Two partial blocks at most are alive at once (the one leaving,
        // the one arriving): two scratch buffers of the largest block.
        let largest = counts.max() ?? 0
        let spare = [try scratchElements(count: largest, datatype, from: allocator), try scratchElements(count: largest, datatype, from: allocator)]
        var leaving = input.elements(range((rank - 1 + size) % size))
        let inPlace = input.base == output.base
        for step in 0..<(size - 1) {
            let arriving = (rank - 2 - step + 2 * size) % size
            let last = step == size - 2
            let target: Elements = last && !inPlace ? output.elements(0..<own) : spare[step % 2].elements(0..<counts[arriving])
            nextRound()
            exchange(leaving.sendBuffer, to: next, target.receiveBuffer, from: previous)
            reduce(operation, input.elements(range(arriving)).base, into: target.base, count: counts[arriving], datatype)
            if last && inPlace { try copy(target.sendBuffer, into: output.elements(0..<own).receiveBuffer) }
            leaving = target
        }
    }
}
