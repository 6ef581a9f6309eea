/// The collectives, blocking and nonblocking. Each `startX` checks its
/// arguments, builds the schedule of this rank's part (the algorithms are
/// in Algorithms/, chosen by `CollectiveSettings`) and starts it; the
/// blocking `x` waits for that request. Every rank of the communicator
/// calls a communicator's collectives in the same order, as MPI requires;
/// nonblocking ones may overlap each other and point-to-point traffic.
///
/// Buffers are `count` elements of any committed datatype at an address;
/// `MPIRuntime.inPlace` as the input means the data is in the output
/// already (MPI_IN_PLACE, where MPI allows it). Arguments MPI reads only on
/// the root are checked only there.
extension MPIRuntime {
    /// MPI_IN_PLACE: the input is taken from (and the result left in) the
    /// output buffer.
    /// (An address no buffer has; never read or written.)
    public nonisolated(unsafe) static let inPlace = UnsafeRawPointer(bitPattern: UInt.max)!

    // MARK: - Barrier, broadcast

    /// Returns once every rank of `communicator` has entered it (MPI_Barrier).
    public func barrier(_ communicator: Communicator? = nil) throws(MPIError) {
        _ = try wait(try startBarrier(communicator))
    }

    /// MPI_Ibarrier: completes once every rank has started it.
    public func startBarrier(_ communicator: Communicator? = nil) throws(MPIError) -> Request {
        try startCollective("a barrier", on: communicator) { (schedule) throws(MPIError) in schedule.dissemination() }
    }

    /// Sends `count` elements at `base` on `root` to every rank's `base` (MPI_Bcast).
    public func broadcast(_ base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, root: Int, on communicator: Communicator? = nil) throws(MPIError) {
        _ = try wait(try startBroadcast(base, count: count, datatype: datatype, root: root, on: communicator))
    }

    /// MPI_Ibcast.
    public func startBroadcast(_ base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, root: Int, on communicator: Communicator? = nil) throws(MPIError) -> Request {
        try startCollective("a broadcast", on: communicator) { (schedule) throws(MPIError) in
            try checkRoot(root, schedule)
            let buffer = try output(base, count, datatype, "a broadcast")
            let algorithm = collectiveSettings.chooseBroadcast(bytes: buffer.bytes, ranks: schedule.size)
            let segment = collectiveSettings.broadcastSegment
            // Algorithms that cut the message into pieces cut it by bytes,
            // which every rank agrees on (ranks may give different
            // datatypes of one signature): a spread-out buffer then goes
            // through a contiguous copy of its bytes.
            let pieces = algorithm == .scatterAllgather || segment <= buffer.bytes / 2
            let bytes = pieces ? try schedule.contiguousBytes(of: buffer, filledOn: root, allocator: collectives.scratchAllocator) : buffer
            switch algorithm {
            case .binomial: schedule.binomialBroadcast(bytes, root: root, segmentBytes: segment)
            case .scatterAllgather: try schedule.scatterAllgatherBroadcast(bytes, root: root)
            }
            if pieces, bytes.base != buffer.base, schedule.rank != root {
                schedule.nextRound()
                try schedule.copy(bytes.sendBuffer, into: buffer.receiveBuffer)
            }
        }
    }

    // MARK: - Reductions

    /// Combines every rank's `count` elements at `send` with `operation`,
    /// in rank order, into `receive` on `root` (MPI_Reduce; `receive` is
    /// used only on the root, where `send` may be `inPlace`).
    public func reduce(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startReduce(send, into: receive, count: count, datatype: datatype, operation: operation, root: root, on: communicator))
    }

    /// MPI_Ireduce.
    public func startReduce(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a reduce", on: communicator) { (schedule) throws(MPIError) in
            try checkRoot(root, schedule)
            try checkReduction(operation, datatype)
            let result = schedule.rank == root ? try output(receive, count, datatype, "a reduce") : Elements(nil as UnsafeMutableRawPointer?, count: count, datatype)
            let contribution = try input(send, count, datatype, orIn: schedule.rank == root ? result : nil, "a reduce")
            try schedule.binomialReduce(contribution, into: result, operation, root: root, allocator: collectives.scratchAllocator)
        }
    }

    /// The same, with the result on every rank (MPI_Allreduce; `send` may be `inPlace`).
    public func allreduce(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startAllreduce(send, into: receive, count: count, datatype: datatype, operation: operation, on: communicator))
    }

    /// MPI_Iallreduce.
    public func startAllreduce(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("an allreduce", on: communicator) { (schedule) throws(MPIError) in
            try checkReduction(operation, datatype)
            let result = try output(receive, count, datatype, "an allreduce")
            let contribution = try input(send, count, datatype, orIn: result, "an allreduce")
            let allocator = collectives.scratchAllocator
            switch collectiveSettings.chooseAllreduce(bytes: result.bytes, count: count, ranks: schedule.size, commutative: operation.isCommutative) {
            case .recursiveDoubling: try schedule.recursiveDoublingAllreduce(contribution, into: result, operation, allocator: allocator)
            case .ring: try schedule.ringAllreduce(contribution, into: result, operation, allocator: allocator)
            case .reduceBroadcast:
                try schedule.binomialReduce(contribution, into: result, operation, root: 0, allocator: allocator)
                schedule.binomialBroadcast(result, root: 0)
            }
        }
    }

    /// Reduces every rank's `send` (the sum of `receiveCounts` elements)
    /// and leaves block i, of `receiveCounts[i]` elements, on rank i
    /// (MPI_Reduce_scatter; `send` may be `inPlace`: the whole vector is
    /// in `receive`, and the block is left at its start).
    public func reduceScatter(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startReduceScatter(send, into: receive, receiveCounts: receiveCounts, datatype: datatype, operation: operation, on: communicator))
    }

    /// MPI_Ireduce_scatter.
    public func startReduceScatter(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a reduce-scatter", on: communicator) { (schedule) throws(MPIError) in
            try checkCounts(receiveCounts, "receive counts", schedule)
            try schedule.reduceScatter(send, into: receive, counts: receiveCounts, datatype, operation, runtime: self)
        }
    }

    /// The same with blocks of `receiveCount` elements each (MPI_Reduce_scatter_block).
    public func reduceScatterBlock(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, receiveCount: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startReduceScatterBlock(send, into: receive, receiveCount: receiveCount, datatype: datatype, operation: operation, on: communicator))
    }

    /// MPI_Ireduce_scatter_block.
    public func startReduceScatterBlock(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, receiveCount: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a reduce-scatter-block", on: communicator) { (schedule) throws(MPIError) in
            let counts = Array(repeating: receiveCount, count: schedule.size)
            try checkCounts(counts, "receive count", schedule)
            try schedule.reduceScatter(send, into: receive, counts: counts, datatype, operation, runtime: self)
        }
    }

    /// Rank r's `receive` = `send` of ranks 0 ... r combined in rank order
    /// (MPI_Scan; `send` may be `inPlace`).
    public func scan(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startScan(send, into: receive, count: count, datatype: datatype, operation: operation, on: communicator))
    }

    /// MPI_Iscan.
    public func startScan(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startPrefix("a scan", send, receive, count, datatype, operation, exclusive: false, communicator)
    }

    /// Rank r's `receive` = `send` of ranks 0 ... r - 1 combined; rank 0's
    /// is left as it is (MPI_Exscan; `send` may be `inPlace`).
    public func exclusiveScan(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startExclusiveScan(send, into: receive, count: count, datatype: datatype, operation: operation, on: communicator))
    }

    /// MPI_Iexscan.
    public func startExclusiveScan(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startPrefix("an exclusive scan", send, receive, count, datatype, operation, exclusive: true, communicator)
    }

    private func startPrefix(
        _ name: String, _ send: UnsafeRawPointer?, _ receive: UnsafeMutableRawPointer?, _ count: Int, _ datatype: Datatype,
        _ operation: ReductionOperation, exclusive: Bool, _ communicator: Communicator?
    ) throws(MPIError) -> Request {
        try startCollective(name, on: communicator) { (schedule) throws(MPIError) in
            try checkReduction(operation, datatype)
            let result = try output(receive, count, datatype, name)
            let contribution = try input(send, count, datatype, orIn: result, name)
            try schedule.recursiveDoublingScan(contribution, into: result, operation, exclusive: exclusive, allocator: collectives.scratchAllocator)
        }
    }

    // MARK: - Gather, scatter

    /// Every rank's `count` elements to `root`, one block per rank in rank
    /// order at `receive` (MPI_Gather; `receive` is used only on the root,
    /// where `send` may be `inPlace`).
    public func gather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startGather(send, count: count, datatype: datatype, into: receive, receiveCount: receiveCount, receiveDatatype: receiveDatatype, root: root, on: communicator))
    }

    /// MPI_Igather.
    public func startGather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a gather", on: communicator) { (schedule) throws(MPIError) in
            try checkRoot(root, schedule)
            let counts = Array(repeating: receiveCount, count: schedule.size)
            let displacements = equalBlocks(counts)
            try schedule.gather(send, count, datatype, receive, counts, displacements, receiveDatatype, root: root, runtime: self)
        }
    }

    /// Rank i's `count` elements into `receive` at `displacements[i]`
    /// extents, `receiveCounts[i]` of them (MPI_Gatherv).
    public func gather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], displacements: [Int], receiveDatatype: Datatype,
        root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startGather(send, count: count, datatype: datatype, into: receive, receiveCounts: receiveCounts, displacements: displacements,
                                     receiveDatatype: receiveDatatype, root: root, on: communicator))
    }

    /// MPI_Igatherv.
    public func startGather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], displacements: [Int], receiveDatatype: Datatype,
        root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a gatherv", on: communicator) { (schedule) throws(MPIError) in
            try checkRoot(root, schedule)
            try schedule.gather(send, count, datatype, receive, receiveCounts, displacements, receiveDatatype, root: root, runtime: self)
        }
    }

    /// Block i of `root`'s `send` to rank i's `receive` (MPI_Scatter;
    /// `send` is used only on the root, where `receive` may be `inPlace`).
    public func scatter(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startScatter(send, count: count, datatype: datatype, into: receive, receiveCount: receiveCount, receiveDatatype: receiveDatatype, root: root, on: communicator))
    }

    /// MPI_Iscatter.
    public func startScatter(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a scatter", on: communicator) { (schedule) throws(MPIError) in
            try checkRoot(root, schedule)
            let counts = Array(repeating: count, count: schedule.size)
            let displacements = equalBlocks(counts)
            try schedule.scatter(send, counts, displacements, datatype, receive, receiveCount, receiveDatatype, root: root, runtime: self)
        }
    }

    /// `sendCounts[i]` elements at `displacements[i]` extents of `root`'s
    /// `send` to rank i (MPI_Scatterv).
    public func scatter(
        _ send: UnsafeRawPointer?, sendCounts: [Int], displacements: [Int], datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startScatter(send, sendCounts: sendCounts, displacements: displacements, datatype: datatype,
                                      into: receive, receiveCount: receiveCount, receiveDatatype: receiveDatatype, root: root, on: communicator))
    }

    /// MPI_Iscatterv.
    public func startScatter(
        _ send: UnsafeRawPointer?, sendCounts: [Int], displacements: [Int], datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("a scatterv", on: communicator) { (schedule) throws(MPIError) in
            try checkRoot(root, schedule)
            try schedule.scatter(send, sendCounts, displacements, datatype, receive, receiveCount, receiveDatatype, root: root, runtime: self)
        }
    }

    // MARK: - Allgather, all-to-all

    /// Every rank's block to every rank, in rank order (MPI_Allgather;
    /// `send` may be `inPlace`: this rank's block is in `receive` already).
    public func allgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startAllgather(send, count: count, datatype: datatype, into: receive, receiveCount: receiveCount, receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Iallgather.
    public func startAllgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("an allgather", on: communicator) { (schedule) throws(MPIError) in
            let counts = Array(repeating: receiveCount, count: schedule.size)
            let displacements = equalBlocks(counts)
            try schedule.allgather(send, count, datatype, receive, counts, displacements, receiveDatatype, plain: true, runtime: self)
        }
    }

    /// Rank i's block into every rank's `receive` at `displacements[i]`
    /// extents, `receiveCounts[i]` elements (MPI_Allgatherv).
    public func allgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], displacements: [Int], receiveDatatype: Datatype,
        on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startAllgather(send, count: count, datatype: datatype, into: receive, receiveCounts: receiveCounts, displacements: displacements,
                                        receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Iallgatherv.
    public func startAllgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], displacements: [Int], receiveDatatype: Datatype,
        on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("an allgatherv", on: communicator) { (schedule) throws(MPIError) in
            try schedule.allgather(send, count, datatype, receive, receiveCounts, displacements, receiveDatatype, plain: false, runtime: self)
        }
    }

    /// Block j of rank i's `send` to block i of rank j's `receive`
    /// (MPI_Alltoall; `send` may be `inPlace`).
    public func allToAll(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startAllToAll(send, count: count, datatype: datatype, into: receive, receiveCount: receiveCount, receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Ialltoall.
    public func startAllToAll(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("an all-to-all", on: communicator) { (schedule) throws(MPIError) in
            let size = schedule.size
            let sendCounts = Array(repeating: count, count: size)
            let receiveCounts = Array(repeating: receiveCount, count: size)
            let sendBlocks = send == Self.inPlace ? [] : try blocks(send, sendCounts, equalBlocks(sendCounts), datatype, "an all-to-all's send buffer")
            let receiveBlocks = try blocks(receive, receiveCounts, equalBlocks(receiveCounts), receiveDatatype, "an all-to-all's receive buffer")
            try schedule.allToAll(sendBlocks, receiveBlocks, runtime: self)
        }
    }

    /// `sendCounts[j]` elements at `sendDisplacements[j]` extents to rank
    /// j, `receiveCounts[i]` from rank i at `receiveDisplacements[i]`
    /// (MPI_Alltoallv; `send` may be `inPlace`).
    public func allToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendDisplacements: [Int], datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveDisplacements: [Int], receiveDatatype: Datatype,
        on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startAllToAll(send, sendCounts: sendCounts, sendDisplacements: sendDisplacements, datatype: datatype, into: receive,
                                       receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements, receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Ialltoallv.
    public func startAllToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendDisplacements: [Int], datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveDisplacements: [Int], receiveDatatype: Datatype,
        on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("an all-to-allv", on: communicator) { (schedule) throws(MPIError) in
            let sendBlocks = send == Self.inPlace ? [] : try blocks(send, sendCounts, sendDisplacements, datatype, "an all-to-allv's send buffer")
            let receiveBlocks = try blocks(receive, receiveCounts, receiveDisplacements, receiveDatatype, "an all-to-allv's receive buffer")
            try schedule.allToAll(sendBlocks, receiveBlocks, runtime: self)
        }
    }

    /// Every block with a datatype of its own, at a displacement in bytes
    /// (MPI_Alltoallw; `send` may be `inPlace`).
    public func allToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendByteDisplacements: [Int], sendDatatypes: [Datatype],
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveByteDisplacements: [Int], receiveDatatypes: [Datatype],
        on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(try startAllToAll(send, sendCounts: sendCounts, sendByteDisplacements: sendByteDisplacements, sendDatatypes: sendDatatypes,
                                       into: receive, receiveCounts: receiveCounts, receiveByteDisplacements: receiveByteDisplacements,
                                       receiveDatatypes: receiveDatatypes, on: communicator))
    }

    /// MPI_Ialltoallw.
    public func startAllToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendByteDisplacements: [Int], sendDatatypes: [Datatype],
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveByteDisplacements: [Int], receiveDatatypes: [Datatype],
        on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startCollective("an all-to-allw", on: communicator) { (schedule) throws(MPIError) in
            if send != Self.inPlace { try checkCounts(sendCounts, "counts in an all-to-allw's send buffer", schedule) }
            try checkCounts(receiveCounts, "counts in an all-to-allw's receive buffer", schedule)
            let sendBlocks = send == Self.inPlace ? [] : try typedBlocks(send, sendCounts, sendByteDisplacements, sendDatatypes, "an all-to-allw's send buffer")
            let receiveBlocks = try typedBlocks(receive, receiveCounts, receiveByteDisplacements, receiveDatatypes, "an all-to-allw's receive buffer")
            try schedule.allToAll(sendBlocks, receiveBlocks, runtime: self)
        }
    }

    // MARK: - Starting

    /// Checks the runtime and the communicator, has `build` make this
    /// rank's schedule, and starts it; errors go to the error handler.
    func startCollective(
        _ name: String, on communicator: Communicator?, _ build: (inout CollectiveSchedule) throws(MPIError) -> Void
    ) throws(MPIError) -> Request {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkOpen()
            try transport.checkUsable(communicator)
            var schedule = CollectiveSchedule(name, on: communicator)
            do throws(MPIError) {
                try build(&schedule)
            } catch {
                schedule.releaseScratch(to: collectives.scratchAllocator)
                throw error
            }
            return try collectives.start(schedule)
        } catch {
            return try raise(error)
        }
    }
}
