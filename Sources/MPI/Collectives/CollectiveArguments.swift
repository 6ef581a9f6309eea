/// What the collectives check of their arguments before they build a
/// schedule (a clear error naming what was wrong, never a crash), and the
/// step from checked arguments to an algorithm for the collectives with
/// more than one buffer shape (in place, v-variants, typed blocks).
extension MPIRuntime {
    func checkRoot(_ root: Int, _ schedule: CollectiveSchedule) throws(MPIError) {
        guard (0..<schedule.size).contains(root) else {
            throw MPIError(.invalidRank, "\(schedule.name) with root \(root) on \(schedule.communicator) of \(schedule.size) ranks")
        }
    }

    func checkReduction(_ operation: ReductionOperation, _ datatype: Datatype) throws(MPIError) {
        try datatype.checkUsable(in: "a reduction")
        try operation.check(datatype)
    }

    /// One count per rank, none negative.
    func checkCounts(_ counts: [Int], _ what: String, _ schedule: CollectiveSchedule) throws(MPIError) {
        guard counts.count == schedule.size else {
            throw MPIError(.invalidArgument, "\(schedule.name) with \(counts.count) \(what) on \(schedule.communicator) of \(schedule.size) ranks")
        }
        if let negative = counts.first(where: { $0 < 0 }) {
            throw MPIError(.invalidArgument, "\(schedule.name) with a negative count (\(negative)) among its \(what)")
        }
    }

    /// A buffer written to: a committed type, a size that does not
    /// overflow, an address unless it is empty.
    @inline(never)  // inlined into a collective's closure, it crashed Swift 6.3.1's optimiser (CopyPropagation)
    func output(_ base: UnsafeMutableRawPointer?, _ count: Int, _ datatype: Datatype, _ name: String) throws(MPIError) -> Elements {
        guard UnsafeRawPointer(base) != Self.inPlace else { throw MPIError(.invalidBuffer, "\(name) with inPlace as its output buffer") }
        _ = try ReceiveBuffer(base, count: count, datatype: datatype, for: name)
        return Elements(base, count: count, datatype)
    }

    /// A buffer read from, or `inPlace` where `place` is where the data is.
    @inline(never)  // inlined into a collective's closure, it crashed Swift 6.3.1's optimiser (CopyPropagation)
    func input(_ base: UnsafeRawPointer?, _ count: Int, _ datatype: Datatype, orIn place: Elements?, _ name: String) throws(MPIError) -> Elements {
        if base == Self.inPlace {
            guard let place else { throw MPIError(.invalidBuffer, "\(name) with inPlace where this rank's data cannot be in its output") }
            return place
        }
        _ = try SendBuffer(base, count: count, datatype: datatype, for: name)
        return Elements(base, count: count, datatype)
    }

    /// Blocks of `counts[i]` elements at `displacements[i]` extents from `base`.
    @inline(never)  // inlined into a collective's closure, it crashed Swift 6.3.1's optimiser (CopyPropagation)
    func blocks(_ base: UnsafeRawPointer?, _ counts: [Int], _ displacements: [Int], _ datatype: Datatype, _ what: String) throws(MPIError) -> [Elements] {
        guard counts.count == displacements.count else {
            throw MPIError(.invalidArgument, "\(what): \(counts.count) counts but \(displacements.count) displacements")
        }
        try datatype.checkUsable(in: what)
        var blocks: [Elements] = []
        blocks.reserveCapacity(counts.count)
        for index in counts.indices {
            guard counts[index] >= 0 else { throw MPIError(.invalidArgument, "\(what): count \(counts[index]) for rank \(index)") }
            _ = try datatype.checkedSize(count: counts[index], in: what)
            guard counts[index] == 0 || datatype.size == 0 || base != nil else {
                throw MPIError(.invalidBuffer, "\(what) is null but holds \(counts[index]) elements for rank \(index)")
            }
            let (offset, overflow) = displacements[index].multipliedReportingOverflow(by: datatype.extent)
            guard !overflow else { throw MPIError(.invalidArgument, "\(what): displacement \(displacements[index]) overflows") }
            blocks.append(Elements(base.map { $0 + offset }, count: counts[index], datatype))
        }
        return blocks
    }

    /// Blocks each of its own datatype, at displacements in bytes
    /// (MPI_Alltoallw and its neighbourhood form; the caller checks the
    /// number of counts against the ranks or neighbours).
    @inline(never)  // inlined into a collective's closure, it crashed Swift 6.3.1's optimiser (CopyPropagation)
    func typedBlocks(
        _ base: UnsafeRawPointer?, _ counts: [Int], _ byteDisplacements: [Int], _ datatypes: [Datatype], _ what: String
    ) throws(MPIError) -> [Elements] {
        guard byteDisplacements.count == counts.count, datatypes.count == counts.count else {
            throw MPIError(.invalidArgument, "\(what): \(counts.count) counts, \(byteDisplacements.count) displacements and \(datatypes.count) datatypes")
        }
        var blocks: [Elements] = []
        blocks.reserveCapacity(counts.count)
        for index in counts.indices {
            try datatypes[index].checkUsable(in: what)
            let bytes = try datatypes[index].checkedSize(count: counts[index], in: what)
            guard bytes == 0 || base != nil else { throw MPIError(.invalidBuffer, "\(what) is null but holds \(bytes) bytes for rank \(index)") }
            blocks.append(Elements(base.map { $0 + byteDisplacements[index] }, count: counts[index], datatypes[index]))
        }
        return blocks
    }

    /// The displacements of blocks laid one after another.
    func equalBlocks(_ counts: [Int]) -> [Int] {
        var displacements: [Int] = []
        displacements.reserveCapacity(counts.count)
        var next = 0
        for count in counts {
            displacements.append(next)
            next += count
        }
        return displacements
    }
}

extension CollectiveSchedule {
    /// Gather(v): the root checks and lays out the blocks; a rank sends its input.
    mutating func gather(
        _ send: UnsafeRawPointer?, _ count: Int, _ datatype: Datatype, _ receive: UnsafeMutableRawPointer?,
        _ counts: [Int], _ displacements: [Int], _ receiveDatatype: Datatype, root: Int, runtime: MPIRuntime
    ) throws(MPIError) {
        guard rank == root else {
            let input = try runtime.input(send, count, datatype, orIn: nil, name)
            try linearGather(input, into: [], root: root)
            return
        }
        try runtime.checkCounts(counts, "receive counts", self)
        let blocks = try runtime.blocks(receive, counts, displacements, receiveDatatype, "\(name)'s receive buffer")
        let own = send == MPIRuntime.inPlace ? nil : try runtime.input(send, count, datatype, orIn: nil, name)
        try linearGather(own, into: blocks, root: root)
    }

    /// Scatter(v): the root checks and lays out the blocks; a rank receives its output.
    mutating func scatter(
        _ send: UnsafeRawPointer?, _ counts: [Int], _ displacements: [Int], _ datatype: Datatype,
        _ receive: UnsafeMutableRawPointer?, _ count: Int, _ receiveDatatype: Datatype, root: Int, runtime: MPIRuntime
    ) throws(MPIError) {
        guard rank == root else {
            let output = try runtime.output(receive, count, receiveDatatype, name)
            try linearScatter([], into: output, root: root)
            return
        }
        try runtime.checkCounts(counts, "send counts", self)
        let blocks = try runtime.blocks(send, counts, displacements, datatype, "\(name)'s send buffer")
        let own = UnsafeRawPointer(receive) == MPIRuntime.inPlace ? nil : try runtime.output(receive, count, receiveDatatype, name)
        try linearScatter(blocks, into: own, root: root)
    }

    /// Allgather(v): recursive doubling for the plain form when the
    /// settings choose it; else the ring. (Not for the v form even with
    /// equal blocks: its displacements may differ between ranks, and all
    /// must run the same algorithm.)
    mutating func allgather(
        _ send: UnsafeRawPointer?, _ count: Int, _ datatype: Datatype, _ receive: UnsafeMutableRawPointer?,
        _ counts: [Int], _ displacements: [Int], _ receiveDatatype: Datatype, plain: Bool, runtime: MPIRuntime
    ) throws(MPIError) {
        try runtime.checkCounts(counts, "receive counts", self)
        let blocks = try runtime.blocks(receive, counts, displacements, receiveDatatype, "\(name)'s receive buffer")
        let own = send == MPIRuntime.inPlace ? nil : try runtime.input(send, count, datatype, orIn: nil, name)
        let bytesPerRank = counts[rank] * receiveDatatype.size
        if plain, runtime.collectiveSettings.chooseAllgather(bytesPerRank: bytesPerRank, ranks: size) == .recursiveDoubling {
            try recursiveDoublingAllgather(own, into: Elements(receive, count: counts[0] * size, receiveDatatype), blockCount: counts[0])
        } else {
            try ringAllgather(own, into: blocks)
        }
    }

    /// All-to-all (v, w): in place (`outgoing` empty), the receive blocks
    /// are copied aside first, as MPI defines it.
    mutating func allToAll(_ outgoing: [Elements], _ incoming: [Elements], runtime: MPIRuntime) throws(MPIError) {
        guard incoming.count == size, outgoing.isEmpty || outgoing.count == size else {
            throw MPIError(.invalidArgument, "\(name) with \(outgoing.count) send and \(incoming.count) receive blocks on \(communicator) of \(size) ranks")
        }
        var outgoing = outgoing
        if outgoing.isEmpty {
            for block in incoming {
                let aside = try scratchElements(count: block.count, block.datatype, from: runtime.collectives.scratchAllocator)
                try copy(block.sendBuffer, into: aside.receiveBuffer)
                outgoing.append(aside)
            }
        }
        let largest = outgoing.map(\.bytes).max() ?? 0
        try allToAll(outgoing, into: incoming, pairwise: runtime.collectiveSettings.chooseAllToAll(bytesPerBlock: largest, ranks: size) == .pairwise)
    }

    /// Reduce-scatter: a ring when the operation commutes; otherwise a
    /// reduce to rank 0 (in rank order) and a scatter of the blocks.
    mutating func reduceScatter(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, counts: [Int], _ datatype: Datatype,
        _ operation: ReductionOperation, runtime: MPIRuntime
    ) throws(MPIError) {
        try runtime.checkReduction(operation, datatype)
        let total = counts.reduce(0, +)
        let inPlace = send == MPIRuntime.inPlace
        let whole = try runtime.output(receive, inPlace ? total : counts[rank], datatype, name)
        let input = inPlace ? whole : try runtime.input(send, total, datatype, orIn: nil, name)
        let result = whole.elements(0..<counts[rank])
        let allocator = runtime.collectives.scratchAllocator
        if operation.isCommutative {
            try ringReduceScatter(input, counts: counts, into: result, operation, allocator: allocator)
        } else {
            let reduced = rank == 0 ? try scratchElements(count: total, datatype, from: allocator) : Elements(nil as UnsafeMutableRawPointer?, count: total, datatype)
            try binomialReduce(input, into: reduced, operation, root: 0, allocator: allocator)
            let blocks = rank == 0 ? try runtime.blocks(reduced.base.map { UnsafeRawPointer($0) }, counts, runtime.equalBlocks(counts), datatype, name) : []
            try linearScatter(blocks, into: result, root: 0)
        }
    }
}
