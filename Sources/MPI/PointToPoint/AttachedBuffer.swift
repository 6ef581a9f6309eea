/// The buffer a program attaches for buffered sends (MPI_Buffer_attach):
/// each buffered send copies its message into a piece of it and sends from
/// there, and the piece is free again once that send has completed. Pieces
/// are carved first-fit from a list of free ranges, each with
/// `MPIRuntime.bufferedSendOverhead` bytes more than its message, as MPI's
/// MPI_BSEND_OVERHEAD says.
final class AttachedBuffer: @unchecked Sendable {  // `state` only under `lock`
    private struct State {
        var memory: UnsafeMutableRawBufferPointer?
        /// Free ranges of `memory`, ordered by offset, touching ones merged.
        var free: [Range<Int>] = []
        /// Sends from the buffer not yet seen complete, with their piece.
        var inFlight: [(request: Request, piece: Range<Int>)] = []
    }

    private let lock = ProgressLock()
    private var state = State()

    private func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }

    /// Starts using `memory` (MPI_Buffer_attach).
    func attach(_ memory: UnsafeMutableRawBufferPointer) throws(MPIError) {
        try withLock { (state) throws(MPIError) in
            guard state.memory == nil else {
                throw MPIError(.invalidBuffer, "a buffer of \(memory.count) bytes attached while one of \(state.memory!.count) bytes is (detach it first)")
            }
            guard memory.baseAddress != nil || memory.isEmpty else { throw MPIError(.invalidBuffer, "a null buffer attached") }
            state.memory = memory
            state.free = memory.isEmpty ? [] : [0..<memory.count]
        }
    }

    /// Copies a message into a piece of the buffer and starts its send
    /// with `start`; `isComplete` says whether an earlier send completed
    /// (its piece is then free again).
    func send(
        _ data: SendBuffer, start: (UnsafeRawBufferPointer) throws(MPIError) -> Request, isComplete: (Request) -> Bool
    ) throws(MPIError) {
        let (piece, bytes) = try withLock { (state) throws(MPIError) -> (Range<Int>, UnsafeMutableRawBufferPointer) in
            guard let memory = state.memory else {
                throw MPIError(.invalidBuffer, "a buffered send of \(data.length) bytes with no buffer attached")
            }
            Self.reclaim(&state, isComplete)
            let needed = data.length + MPIRuntime.bufferedSendOverhead
            guard let slot = state.free.firstIndex(where: { $0.count >= needed }) else {
                let available = state.free.map(\.count).max() ?? 0
                throw MPIError(.invalidBuffer,
                               "a buffered send of \(data.length) bytes needs \(needed) of the attached buffer; its largest free piece has \(available) of \(memory.count)")
            }
            let piece = state.free[slot].lowerBound..<(state.free[slot].lowerBound + needed)
            if state.free[slot].count == needed { state.free.remove(at: slot) } else { state.free[slot] = piece.upperBound..<state.free[slot].upperBound }
            return (piece, UnsafeMutableRawBufferPointer(rebasing: memory[piece.lowerBound..<(piece.lowerBound + data.length)]))
        }
        if let base = bytes.baseAddress { data.copy(length: data.length, to: base) }
        do {
            let request = try start(UnsafeRawBufferPointer(bytes))
            withLock { $0.inFlight.append((request, piece)) }
        } catch {
            withLock { Self.give(back: piece, to: &$0) }
            throw error
        }
    }

    /// Waits until every send from the buffer has completed, then stops
    /// using it and returns it (MPI_Buffer_detach); `waitAll` completes
    /// the requests given.
    func detach(waitAll: ([Request]) throws(MPIError) -> Void) throws(MPIError) -> UnsafeMutableRawBufferPointer {
        let pending = withLock { (state) -> [Request]? in
            guard state.memory != nil else { return nil }
            return state.inFlight.map(\.request)
        }
        guard let pending else { throw MPIError(.invalidBuffer, "a detach with no buffer attached") }
        try waitAll(pending)
        return try withLock { (state) throws(MPIError) in
            guard let memory = state.memory else { throw MPIError(.invalidBuffer, "a detach with no buffer attached") }
            state = State()
            return memory
        }
    }

    /// Frees the pieces of sends that completed.
    private static func reclaim(_ state: inout State, _ isComplete: (Request) -> Bool) {
        var index = 0
        while index < state.inFlight.count {
            if isComplete(state.inFlight[index].request) {
                give(back: state.inFlight.remove(at: index).piece, to: &state)
            } else {
                index += 1
            }
        }
    }

    private static func give(back piece: Range<Int>, to state: inout State) {
        let position = state.free.firstIndex { $0.lowerBound > piece.lowerBound } ?? state.free.count
        state.free.insert(piece, at: position)
        // Merge with the neighbours it touches.
        if position + 1 < state.free.count, state.free[position].upperBound == state.free[position + 1].lowerBound {
            state.free[position] = state.free[position].lowerBound..<state.free[position + 1].upperBound
            state.free.remove(at: position + 1)
        }
        if position > 0, state.free[position - 1].upperBound == state.free[position].lowerBound {
            state.free[position - 1] = state.free[position - 1].lowerBound..<state.free[position].upperBound
            state.free.remove(at: position)
        }
    }
}
