/// One collective operation as this rank carries it out: rounds of
/// transfers with its peers, each followed by local steps (reductions,
/// copies) that run once every transfer of the round has completed (in a
/// round, transfers start together and local steps run in their order).
/// An algorithm builds the schedule; `CollectiveProgress` runs it, for the
/// blocking and the nonblocking form alike, so each collective has one
/// implementation (libNBC's and MPICH's schedules are the same idea).
///
/// Transfers go over the communicator's internal context, tagged with the
/// collective's sequence number on that communicator, so that collectives
/// in flight at once never take each other's messages.
struct CollectiveSchedule {
    /// One step. The steps are kept in one list (a schedule allocates
    /// little: it is built for every call, blocking ones too); a round is
    /// the steps up to an `endOfRound`.
    enum Step {
        /// `deferred`: the round does not wait for it; it must complete by
        /// the next `sendsComplete` step or the end of the schedule.
        case send(SendBuffer, to: Int, deferred: Bool)
        case receive(ReceiveBuffer, from: Int)
        /// `output = input op output`, element by element.
        case reduce(ReductionOperation, input: UnsafeRawPointer, output: UnsafeMutableRawPointer, count: Int, datatype: Datatype)
        /// The elements of one buffer into another of the same type signature.
        case copy(SendBuffer, into: ReceiveBuffer)
        case endOfRound
        /// A round of its own that waits for every deferred send so far.
        case sendsComplete

        var isTransfer: Bool {
            switch self {
            case .send, .receive: return true
            default: return false
            }
        }

        var isEndOfRound: Bool {
            if case .endOfRound = self { return true }
            return false
        }
    }

    /// The collective's name, for its errors ("a broadcast failed: ...").
    let name: String
    /// The communicator the collective runs on (its ranks, its internal context).
    let communicator: Communicator
    private(set) var steps: [Step] = []
    /// Memory the schedule owns (partial results, incoming blocks), given
    /// back when it ends.
    private(set) var scratch: [ScratchMemory] = []

    init(_ name: String, on communicator: Communicator) {
        self.name = name
        self.communicator = communicator
        steps.reserveCapacity(8)
    }

    var rank: Int { communicator.rank }
    var size: Int { communicator.size }

    /// Begins a round: what follows happens after everything before.
    mutating func nextRound() {
        if let last = steps.last, !last.isEndOfRound { steps.append(.endOfRound) }
    }

    /// A send the round waits for: its buffer may be written afterwards.
    mutating func send(_ buffer: SendBuffer, to peer: Int) {
        steps.append(.send(buffer, to: peer, deferred: false))
    }

    /// A send the next round need not wait for (a pipeline: the ring's
    /// next step depends only on what it received), for a buffer nothing
    /// writes before the next `waitForDeferredSends` or the end.
    mutating func deferredSend(_ buffer: SendBuffer, to peer: Int) {
        steps.append(.send(buffer, to: peer, deferred: true))
    }

    /// Waits, in a round of its own, for every deferred send so far.
    mutating func waitForDeferredSends() {
        nextRound()
        steps.append(.sendsComplete)
        steps.append(.endOfRound)
    }

    mutating func receive(_ buffer: ReceiveBuffer, from peer: Int) {
        steps.append(.receive(buffer, from: peer))
    }

    /// Sends `outgoing` to `destination` and receives `incoming` from
    /// `source` in the current round.
    mutating func exchange(_ outgoing: SendBuffer, to destination: Int, _ incoming: ReceiveBuffer, from source: Int) {
        receive(incoming, from: source)
        send(outgoing, to: destination)
    }

    /// `output = input op output` after the round's transfers (nothing
    /// for no elements, whose buffers may have no address).
    mutating func reduce(_ operation: ReductionOperation, _ input: UnsafeMutableRawPointer?, into output: UnsafeMutableRawPointer?, count: Int, _ datatype: Datatype) {
        guard count > 0, let input, let output else { return }
        steps.append(.reduce(operation, input: UnsafeRawPointer(input), output: output, count: count, datatype: datatype))
    }

    /// Copies `source`'s elements into `destination` (after the round's
    /// transfers); they must be as long as each other, as a collective's
    /// two sides of one block must.
    mutating func copy(_ source: SendBuffer, into destination: ReceiveBuffer) throws(MPIError) {
        guard source.length == destination.capacity else {
            throw MPIError(.truncated, "\(name): this rank's own block is \(source.length) bytes on one side and \(destination.capacity) on the other (a count or datatype that differs)")
        }
        guard source.length > 0 else { return }
        steps.append(.copy(source, into: destination))
    }

    /// Memory for `bytes` the schedule owns until it ends.
    mutating func scratchMemory(_ bytes: Int, from allocator: ScratchAllocator) throws(MPIError) -> UnsafeMutableRawPointer {
        let memory = try allocator.allocate(bytes)
        scratch.append(memory)
        return memory.base
    }

    /// Gives the scratch memory back (the schedule has ended).
    mutating func releaseScratch(to allocator: ScratchAllocator) {
        for memory in scratch { allocator.release(memory) }
        scratch.removeAll()
    }
}

extension CollectiveSchedule.Step {
    /// Runs a local step (transfers and ends of rounds do nothing here).
    func run() {
        switch self {
        case .reduce(let operation, let input, let output, let count, let datatype):
            operation.apply(input, to: output, count: count, datatype: datatype)
        case .copy(let source, let destination):
            guard let target = destination.base else { return }
            if let layout = destination.layout {
                if source.layout == nil, let base = source.base {
                    layout.scatter(from: base, into: target, count: destination.count, packedFrom: 0, length: source.length)
                } else {
                    let packed = source.packed()
                    packed.withUnsafeBytes { layout.scatter(from: $0.baseAddress!, into: target, count: destination.count, packedFrom: 0, length: source.length) }
                }
            } else {
                source.copy(length: source.length, to: target)
            }
        case .send, .receive, .endOfRound, .sendsComplete:
            break
        }
    }
}
