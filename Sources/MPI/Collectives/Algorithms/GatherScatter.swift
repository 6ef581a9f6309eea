/// Gather and scatter, with one block per rank of any size (the v forms;
/// the plain ones are the v forms with equal blocks): the root posts every
/// block at once, and its own block is a local copy.
extension CollectiveSchedule {
    /// Every rank's `input` into `blocks[rank]` on `root`; the root's own
    /// block is not copied when `input` is nil (in place).
    mutating func linearGather(_ input: Elements?, into blocks: [Elements], root: Int) throws(MPIError) {
        nextRound()
        guard rank == root else {
            if let input { send(input.sendBuffer, to: root) }
            return
        }
        for peer in 0..<size where peer != root { receive(blocks[peer].receiveBuffer, from: peer) }
        if let input { try copy(input.sendBuffer, into: blocks[root].receiveBuffer) }
    }

    /// `blocks[rank]` on `root` into every rank's `output` (not copied on
    /// the root when `output` is nil: in place).
    mutating func linearScatter(_ blocks: [Elements], into output: Elements?, root: Int) throws(MPIError) {
        nextRound()
        guard rank == root else {
            if let output { receive(output.receiveBuffer, from: root) }
            return
        }
        for peer in 0..<size where peer != root { send(blocks[peer].sendBuffer, to: peer) }
        if let output { try copy(blocks[root].sendBuffer, into: output.receiveBuffer) }
    }

    /// Every rank's block to every rank, `blocks[r]` being rank r's place:
    /// a ring of n - 1 steps; this rank's own block is first copied from
    /// `input` (unless nil: in place).
    mutating func ringAllgather(_ input: Elements?, into blocks: [Elements]) throws(MPIError) {
        if let input { try copy(input.sendBuffer, into: blocks[rank].receiveBuffer) }
        let next = (rank + 1) % size
        let previous = (rank + size - 1) % size
        for step in 0..<max(0, size - 1) {
            nextRound()
            let outgoing = (rank - step + size) % size
            let arriving = (rank - step - 1 + 2 * size) % size
            exchange(blocks[outgoing].sendBuffer, to: next, blocks[arriving].receiveBuffer, from: previous)
        }
    }

    /// Recursive doubling for n a power of two and equal blocks laid one
    /// after another in `output` (block i at elements i·count ..< (i+1)·count):
    /// in round k each rank swaps its 2^k gathered blocks with the rank
    /// that differs in bit k.
    mutating func recursiveDoublingAllgather(_ input: Elements?, into output: Elements, blockCount: Int) throws(MPIError) {
        if let input { try copy(input.sendBuffer, into: output.elements(rank * blockCount..<(rank + 1) * blockCount).receiveBuffer) }
        var mask = 1
        while mask < size {
            let partner = rank ^ mask
            let mine = rank & ~(mask - 1)
            let theirs = partner & ~(mask - 1)
            nextRound()
            exchange(output.elements(mine * blockCount..<(mine + mask) * blockCount).sendBuffer, to: partner,
                     output.elements(theirs * blockCount..<(theirs + mask) * blockCount).receiveBuffer, from: partner)
            mask <<= 1
        }
    }

    /// `outgoing[j]` to rank j, `incoming[i]` from rank i: all posted at
    /// once (`pairwise` false), or in n - 1 steps with one peer each way
    /// (rank + s and rank - s in step s). The own block is a local copy.
    mutating func allToAll(_ outgoing: [Elements], into incoming: [Elements], pairwise: Bool) throws(MPIError) {
        nextRound()
        try copy(outgoing[rank].sendBuffer, into: incoming[rank].receiveBuffer)
        for step in 1..<max(1, size) {
            if pairwise { nextRound() }
            let to = (rank + step) % size
            let from = (rank - step + size) % size
            exchange(outgoing[to].sendBuffer, to: to, incoming[from].receiveBuffer, from: from)
        }
    }
}
