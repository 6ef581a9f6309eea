/// `async` forms of point-to-point: they start requests and await their
/// completion without ever blocking a thread of Swift's concurrency pool
/// (which has as many threads as cores: a blocking wait there could take
/// the thread the awaited message needs). While a request is pending the
/// task polls, yields to other tasks, then sleeps in growing steps up to a
/// millisecond. Cancelling the task does not end the wait: the request's
/// buffer is the library's until it completes.
extension MPIRuntime {
    /// Waits for `request` without blocking the thread (MPI_Wait).
    public func wait(_ request: Request) async throws(MPIError) -> MessageStatus {
        var idleRounds = 0
        while true {
            if let status = try test(request) { return status }
            idleRounds += 1
            if idleRounds < 64 {
                await Task.yield()
            } else {
                let microseconds = min(1000, 10 * (idleRounds - 63))
                try? await Task.sleep(for: .microseconds(microseconds))
            }
        }
    }

    /// Waits for every request without blocking the thread; statuses in order.
    public func waitAll(_ requests: [Request]) async throws(MPIError) -> [MessageStatus] {
        var statuses: [MessageStatus] = []
        statuses.reserveCapacity(requests.count)
        for request in requests { statuses.append(try await wait(request)) }
        return statuses
    }

    /// Sends `buffer` (MPI_Send), awaiting instead of blocking. The memory
    /// must stay valid until this returns.
    public func send(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) async throws(MPIError) {
        let request = try startSend(buffer, to: destination, tag: tag, on: communicator)
        _ = try await wait(request)
    }

    /// Receives into `buffer` (MPI_Recv), awaiting instead of blocking.
    public func receive(
        into buffer: UnsafeMutableRawBufferPointer, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) async throws(MPIError) -> MessageStatus {
        let request = try startReceive(into: buffer, from: source, tag: tag, on: communicator)
        return try await wait(request)
    }
}
