/// The blocking collectives, first cut: barrier, broadcast, reduce,
/// allreduce, gather, scatter, allgather and all-to-all, over point-to-
/// point on the communicator's internal context (so they never match an
/// application's receive), with one algorithm each:
/// - barrier: dissemination (log2 n rounds);
/// - broadcast: binomial tree from the root;
/// - reduce: binomial tree towards rank 0 in rank order (so a
///   non-commutative operation combines in MPI's order), then to the root;
/// - allreduce: reduce, then broadcast;
/// - gather, scatter: the root exchanges with each rank in turn;
/// - allgather: a ring (n - 1 steps); all-to-all: pairwise exchange.
/// Every rank of the communicator calls each collective in the same order.
/// Data of any committed datatype moves; reductions take basic types and
/// the pairs (MINLOC, MAXLOC), or any type with a user operation.
extension MPIRuntime {
    /// Returns once every rank of `communicator` has entered it (MPI_Barrier).
    public func barrier(_ communicator: Communicator? = nil) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkOpen()
            let size = communicator.size
            var distance = 1
            while distance < size {
                try exchange(nil, count: 0, .byte, to: (communicator.rank + distance) % size,
                             into: nil, count: 0, .byte, from: (communicator.rank + size - distance) % size, on: communicator)
                distance <<= 1
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Sends `count` elements at `base` on `root` to every rank's `base` (MPI_Bcast).
    public func broadcast(_ base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, root: Int, on communicator: Communicator? = nil) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkRoot(root, communicator)
            try binomialBroadcast(base, count: count, datatype, root: root, on: communicator)
        } catch {
            try raise(error) as Void
        }
    }

    /// Combines every rank's `count` elements at `send` with `operation`,
    /// in rank order, into `receive` on `root` (MPI_Reduce; `receive` is
    /// read only on the root).
    public func reduce(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkRoot(root, communicator)
            try reduceToRoot(send, into: receive, count: count, datatype, operation, root: root, on: communicator)
        } catch {
            try raise(error) as Void
        }
    }

    /// The same, with the result on every rank (MPI_Allreduce).
    public func allreduce(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        operation: ReductionOperation, on communicator: Communicator? = nil
    ) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try reduceToRoot(send, into: receive, count: count, datatype, operation, root: 0, on: communicator)
            try binomialBroadcast(receive, count: count, datatype, root: 0, on: communicator)
        } catch {
            try raise(error) as Void
        }
    }

    /// Every rank's `count` elements to `root`, one block per rank in rank
    /// order at `receive` (MPI_Gather; `receive` is used only on the root).
    public func gather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkRoot(root, communicator)
            let own = communicator.internalCommunicator
            if communicator.rank == root {
                let block = try blockStride(receiveCount, receiveDatatype)
                var requests: [Request] = []
                for rank in 0..<communicator.size {
                    requests.append(try transport.startReceive(
                        ReceiveBuffer(receive.map { $0 + rank * block }, count: receiveCount, datatype: receiveDatatype, for: "a gather"),
                        MessageSource(rank), 1, own))
                }
                let sending = try transport.startSend(SendBuffer(send, count: count, datatype: datatype, for: "a gather"), root, 1, own, false)
                for request in requests + [sending] { try completeChecked(request) }
            } else {
                try completeChecked(try transport.startSend(SendBuffer(send, count: count, datatype: datatype, for: "a gather"), root, 1, own, false))
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Block i of `root`'s `send` to rank i's `receive` (MPI_Scatter).
    public func scatter(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, root: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkRoot(root, communicator)
            let own = communicator.internalCommunicator
            let receiving = try transport.startReceive(
                ReceiveBuffer(receive, count: receiveCount, datatype: receiveDatatype, for: "a scatter"), MessageSource(root), 1, own)
            if communicator.rank == root {
                let block = try blockStride(count, datatype)
                var requests: [Request] = []
                for rank in 0..<communicator.size {
                    requests.append(try transport.startSend(
                        SendBuffer(send.map { $0 + rank * block }, count: count, datatype: datatype, for: "a scatter"), rank, 1, own, false))
                }
                for request in requests { try completeChecked(request) }
            }
            try completeChecked(receiving)
        } catch {
            try raise(error) as Void
        }
    }

    /// Every rank's block to every rank, in rank order (MPI_Allgather): a ring.
    public func allgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator? = nil
    ) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkOpen()
            let size = communicator.size
            let me = communicator.rank
            let block = try blockStride(receiveCount, receiveDatatype)
            // Own block first (through the transport: any two datatypes).
            try exchange(send, count: count, datatype, to: me, into: receive.map { $0 + me * block }, count: receiveCount, receiveDatatype, from: me, on: communicator)
            var held = me
            for _ in 0..<max(0, size - 1) {
                let arriving = (held + size - 1) % size
                try exchange(receive.map { UnsafeRawPointer($0 + held * block) }, count: receiveCount, receiveDatatype, to: (me + 1) % size,
                             into: receive.map { $0 + arriving * block }, count: receiveCount, receiveDatatype, from: (me + size - 1) % size,
                             on: communicator)
                held = arriving
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Block j of rank i's `send` to block i of rank j's `receive`
    /// (MPI_Alltoall): pairwise exchange, n steps.
    public func allToAll(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator? = nil
    ) throws(MPIError) {
        let communicator = communicator ?? world
        do throws(MPIError) {
            try checkOpen()
            let size = communicator.size
            let me = communicator.rank
            let sendBlock = try blockStride(count, datatype)
            let receiveBlock = try blockStride(receiveCount, receiveDatatype)
            for step in 0..<size {
                let to = (me + step) % size
                let from = (me + size - step) % size
                try exchange(send.map { $0 + to * sendBlock }, count: count, datatype, to: to,
                             into: receive.map { $0 + from * receiveBlock }, count: receiveCount, receiveDatatype, from: from, on: communicator)
            }
        } catch {
            try raise(error) as Void
        }
    }

    // MARK: - Building blocks

    private func checkRoot(_ root: Int, _ communicator: Communicator) throws(MPIError) {
        try checkOpen()
        guard (0..<communicator.size).contains(root) else {
            throw MPIError(.invalidRank, "a collective with root \(root) on \(communicator) of \(communicator.size) ranks")
        }
    }

    /// Bytes from one rank's block to the next in a gathered buffer.
    private func blockStride(_ count: Int, _ datatype: Datatype) throws(MPIError) -> Int {
        _ = try datatype.checkedSize(count: count, in: "a collective")
        return count * datatype.extent
    }

    private func completeChecked(_ request: Request) throws(MPIError) {
        if let error = try complete(request).error { throw error }
    }

    /// Sends to one rank and receives from another at once, on the
    /// communicator's internal context.
    private func exchange(
        _ send: UnsafeRawPointer?, count: Int, _ sendType: Datatype, to destination: Int,
        into receive: UnsafeMutableRawPointer?, count receiveCount: Int, _ receiveType: Datatype, from source: Int, on communicator: Communicator
    ) throws(MPIError) {
        let own = communicator.internalCommunicator
        let receiving = try transport.startReceive(ReceiveBuffer(receive, count: receiveCount, datatype: receiveType, for: "a collective"), MessageSource(source), 1, own)
        let sending = try transport.startSend(SendBuffer(send, count: count, datatype: sendType, for: "a collective"), destination, 1, own, false)
        try completeChecked(receiving)
        try completeChecked(sending)
    }

    private func binomialBroadcast(_ base: UnsafeMutableRawPointer?, count: Int, _ datatype: Datatype, root: Int, on communicator: Communicator) throws(MPIError) {
        let size = communicator.size
        let relative = (communicator.rank - root + size) % size
        let own = communicator.internalCommunicator
        var mask = 1
        while mask < size {
            if relative & mask != 0 {
                try completeChecked(try transport.startReceive(
                    ReceiveBuffer(base, count: count, datatype: datatype, for: "a broadcast"), MessageSource((relative - mask + root) % size), 1, own))
                break
            }
            mask <<= 1
        }
        mask >>= 1
        var requests: [Request] = []
        while mask > 0 {
            if relative + mask < size {
                requests.append(try transport.startSend(
                    SendBuffer(base.map { UnsafeRawPointer($0) }, count: count, datatype: datatype, for: "a broadcast"),
                    (relative + mask + root) % size, 1, own, false))
            }
            mask >>= 1
        }
        for request in requests { try completeChecked(request) }
    }

    /// The binomial reduction towards rank 0, then to `root`. Partial
    /// results live in buffers laid out as the elements are (the true span
    /// of `count` elements), so that an operation sees the type's layout.
    private func reduceToRoot(
        _ send: UnsafeRawPointer?, into receive: UnsafeMutableRawPointer?, count: Int, _ datatype: Datatype,
        _ operation: ReductionOperation, root: Int, on communicator: Communicator
    ) throws(MPIError) {
        try checkOpen()
        try datatype.checkUsable(in: "a reduction")
        try operation.check(datatype)
        let size = communicator.size
        let me = communicator.rank
        let packedBytes = try datatype.checkedSize(count: count, in: "a reduction")
        guard packedBytes == 0 || send != nil else { throw MPIError(.invalidBuffer, "a reduction of \(count) elements from a null buffer") }
        guard packedBytes == 0 || me != root || receive != nil else {
            throw MPIError(.invalidBuffer, "a reduction of \(count) elements into a null buffer")
        }
        let own = communicator.internalCommunicator
        let span = datatype.trueSpan(count: count)
        let bytes = span.count
        let accumulatedMemory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
        let incomingMemory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
        defer {
            accumulatedMemory.deallocate()
            incomingMemory.deallocate()
        }
        // The elements' addresses in the two buffers.
        let accumulated = accumulatedMemory - span.lowerBound
        let incoming = incomingMemory - span.lowerBound
        if bytes > 0 { accumulatedMemory.copyMemory(from: send! + span.lowerBound, byteCount: bytes) }
        var mask = 1
        while mask < size {
            if me & mask != 0 {
                try completeChecked(try transport.startSend(
                    SendBuffer(UnsafeRawPointer(accumulated), count: count, datatype: datatype, for: "a reduction"), me - mask, 1, own, false))
                break
            }
            if me + mask < size {
                try completeChecked(try transport.startReceive(
                    ReceiveBuffer(incoming, count: count, datatype: datatype, for: "a reduction"), MessageSource(me + mask), 1, own))
                // Lower ranks first: accumulated = accumulated op incoming.
                operation.apply(accumulated, to: incoming, count: count, datatype: datatype)
                if bytes > 0 { accumulatedMemory.copyMemory(from: incomingMemory, byteCount: bytes) }
            }
            mask <<= 1
        }
        if root == 0 {
            // Only the elements' bytes are written, never the gaps between.
            if me == 0, packedBytes > 0, let receive {
                let packed = SendBuffer(UnsafeRawPointer(accumulated), count: count, datatype: datatype).packed()
                packed.withUnsafeBytes { datatype.scatter(from: $0.baseAddress!, into: receive, count: count, packedFrom: 0, length: packedBytes) }
            }
        } else if me == 0 {
            try completeChecked(try transport.startSend(
                SendBuffer(UnsafeRawPointer(accumulated), count: count, datatype: datatype, for: "a reduction"), root, 1, own, false))
        } else if me == root {
            try completeChecked(try transport.startReceive(
                ReceiveBuffer(receive, count: count, datatype: datatype, for: "a reduction"), MessageSource(0), 1, own))
        }
    }
}
