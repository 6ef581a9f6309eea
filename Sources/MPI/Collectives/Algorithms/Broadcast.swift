extension CollectiveSchedule {
    /// Binomial tree from `root`: a rank receives once, from the rank
    /// that differs in its lowest set bit (counted from the root), then
    /// sends to the ranks below that bit. A message of at least two
    /// `segmentBytes` goes in segments, pipelined down the tree: in round
    /// s a rank receives segment s and passes segment s - 1 on, so the
    /// tree's levels work at once (each segment is written once and only
    /// read afterwards: its sends are waited for at the end).
    mutating func binomialBroadcast(_ buffer: Elements, root: Int, segmentBytes: Int = .max) {
        let relative = (rank - root + size) % size
        var mask = 1
        var parent: Int?
        while mask < size {
            if relative & mask != 0 {
                parent = (relative - mask + root) % size
                break
            }
            mask <<= 1
        }
        var children: [Int] = []
        mask >>= 1
        while mask > 0 {
            if relative + mask < size { children.append((relative + mask + root) % size) }
            mask >>= 1
        }
        // (Pieces are cut by elements: the caller passes bytes when it cuts.)
        let segmentCount = buffer.datatype.size == 0 ? 1 : max(1, segmentBytes / buffer.datatype.size)
        guard segmentBytes <= buffer.bytes / 2, segmentCount <= buffer.count / 2 else {
            if let parent {
                nextRound()
                receive(buffer.receiveBuffer, from: parent)
            }
            nextRound()
            for child in children { send(buffer.sendBuffer, to: child) }
            return
        }
        let segments = (buffer.count + segmentCount - 1) / segmentCount
        func segment(_ index: Int) -> Elements {
            buffer.elements(index * segmentCount..<min(buffer.count, (index + 1) * segmentCount))
        }
        for round in 0...segments {
            nextRound()
            if let parent, round < segments { receive(segment(round).receiveBuffer, from: parent) }
            // The root has every segment from the start; the others pass
            // on the one the round before brought.
            let passing = parent == nil ? round : round - 1
            if passing >= 0 && passing < segments {
                for child in children { deferredSend(segment(passing).sendBuffer, to: child) }
            }
        }
    }

    /// Van de Geijn's broadcast: the root scatters one block per rank
    /// down a binomial tree, then a ring allgathers the blocks. Every
    /// rank sends and receives about twice the message, whatever n, and
    /// each block lands in place (nothing is copied).
    mutating func scatterAllgatherBroadcast(_ buffer: Elements, root: Int) throws(MPIError) {
        let partition = BlockPartition(count: buffer.count, parts: size)
        let relative = (rank - root + size) % size
        func blocks(_ first: Int, _ end: Int) -> Elements {
            buffer.elements(partition.start(of: first)..<partition.start(of: min(end, size)))
        }
        // Scatter: relative rank r ends up with blocks r ..< r + its subtree's size.
        var mask = 1
        while mask < size {
            if relative & mask != 0 {
                nextRound()
                receive(blocks(relative, relative + mask).receiveBuffer, from: (relative - mask + root) % size)
                break
            }
            mask <<= 1
        }
        nextRound()
        mask >>= 1
        while mask > 0 {
            if relative + mask < size {
                send(blocks(relative + mask, relative + 2 * mask).sendBuffer, to: (relative + mask + root) % size)
            }
            mask >>= 1
        }
        // The ring allgather, with rank r's place holding block r - root
        // (the block its relative rank owns).
        try ringAllgather(nil, into: (0..<size).map { blocks(($0 - root + size) % size, ($0 - root + size) % size + 1) })
    }
}

/// `count` elements cut into `parts` blocks as even as can be (the first
/// `count % parts` one element longer).
struct BlockPartition {
    let count: Int
    let parts: Int

    /// The first element of block `index` (`parts` gives `count`).
    func start(of index: Int) -> Int {
        let base = count / parts
        let longer = count % parts
        return index * base + min(index, longer)
    }

    func range(_ index: Int) -> Range<Int> { start(of: index)..<start(of: index + 1) }
}
