/// Waiting and testing for any request the program holds: point-to-point
/// requests live in the transport's table, collective ones in
/// `collectives`; both kinds mix in one `waitAll`. Every wait advances
/// the collectives in flight as well, whatever it waits for (MPI's
/// progress rule: a nonblocking collective completes while its ranks wait
/// for something else).
extension MPIRuntime {
    /// One round of progress of everything in flight.
    func advance() {
        transport.advance()
        collectives.advance()
    }

    /// Whether `request` has completed, without advancing.
    func isFinished(_ request: Request) throws(MPIError) -> Bool {
        request.isCollective ? try collectives.isFinished(request) : try transport.isFinished(request)
    }

    /// Advances, then says whether `request` has completed.
    func isComplete(_ request: Request) throws(MPIError) -> Bool {
        if request.isCollective {
            advance()
            return try collectives.isFinished(request)
        }
        let complete = try transport.isComplete(request)
        collectives.advance()
        return complete
    }

    /// The status of a completed request; the request is used up.
    func collect(_ request: Request) -> MessageStatus {
        request.isCollective ? collectives.collect(request) : transport.collect(request)
    }

    /// Waits for `request` and collects its status (no error handler).
    func complete(_ request: Request) throws(MPIError) -> MessageStatus {
        try transport.wait { () throws(MPIError) -> Bool in try isComplete(request) }
        return collect(request)
    }
}
