/// The rest of point-to-point's request handling: matched probes, cancel,
/// request free, a status without completing, and sendrecv-replace.
extension MPIRuntime {
    // MARK: - Matched probe

    /// Waits for a message from `source` with `tag` and takes it off the
    /// matching queue, so that no other receive can (MPI_Mprobe).
    public func matchedProbe(from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil) throws(MPIError) -> (message: Message, status: MessageStatus) {
        var found: (Message, MessageStatus)?
        do {
            try checkOpen()
            try transport.wait { () throws(MPIError) -> Bool in
                collectives.advance()
                found = try transport.matchedProbe(source, tag, communicator ?? world)
                return found != nil
            }
        } catch {
            return try raise(error)
        }
        return found!
    }

    /// The same without waiting: nil if no such message has arrived (MPI_Improbe).
    public func matchedProbeIfArrived(
        from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> (message: Message, status: MessageStatus)? {
        do {
            try checkOpen()
            return try transport.matchedProbe(source, tag, communicator ?? world).map { (message: $0.0, status: $0.1) }
        } catch {
            return try raise(error)
        }
    }

    /// Receives a message a matched probe took (MPI_Mrecv).
    public func receive(_ message: Message, into buffer: UnsafeMutableRawBufferPointer) throws(MPIError) -> MessageStatus {
        try wait(startReceive(message, into: buffer))
    }

    public func receive(_ message: Message, into base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype) throws(MPIError) -> MessageStatus {
        try wait(startReceive(message, into: base, count: count, datatype: datatype))
    }

    /// Starts the receive of a message a matched probe took (MPI_Imrecv).
    public func startReceive(_ message: Message, into buffer: UnsafeMutableRawBufferPointer) throws(MPIError) -> Request {
        try startMatched(message, ReceiveBuffer(buffer))
    }

    public func startReceive(_ message: Message, into base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype) throws(MPIError) -> Request {
        try startMatched(message, ReceiveBuffer(base, count: count, datatype: datatype, for: "a matched receive"))
    }

    private func startMatched(_ message: Message, _ buffer: @autoclosure () throws(MPIError) -> ReceiveBuffer) throws(MPIError) -> Request {
        do {
            try checkOpen()
            return try transport.startMatchedReceive(message, try buffer())
        } catch {
            return try raise(error)
        }
    }

    // MARK: - Cancel, free, status

    /// Cancels `request` (MPI_Cancel): a receive not yet matched completes
    /// at once with `isCancelled` set in its status; anything else
    /// completes as it would have, not cancelled. Complete it as usual.
    /// A collective's request cannot be cancelled (MPI 3.1 §5.12).
    public func cancel(_ request: Request) throws(MPIError) {
        guard !request.isCollective else {
            return try raise(MPIError(.invalidRequest, "\(request) cannot be cancelled: a collective completes on every rank or on none"))
        }
        do { try transport.cancel(request) } catch { try raise(error) as Void }
    }

    /// Lets `request` go (MPI_Request_free): it completes on its own and is
    /// never reported; the handle names nothing from now on.
    /// A collective's request cannot be freed: complete it (MPI 3.1 §5.12).
    public func free(_ request: Request) throws(MPIError) {
        guard !request.isCollective else {
            return try raise(MPIError(.invalidRequest, "\(request) cannot be freed: wait for it or test it until it completes"))
        }
        do { try transport.free(request) } catch { try raise(error) as Void }
    }

    /// The status of `request` if it has completed, without using it up
    /// (MPI_Request_get_status); nil while it is in progress.
    public func status(of request: Request) throws(MPIError) -> MessageStatus? {
        do {
            if request.isCollective {
                advance()
                return try collectives.peekStatus(request)
            }
            return try transport.peekStatus(request)
        } catch {
            return try raise(error)
        }
    }

    // MARK: - Send-receive in one buffer

    /// Sends the buffer's bytes and receives into the same buffer
    /// (MPI_Sendrecv_replace): the outgoing bytes are copied first.
    public func sendReceiveReplacing(
        _ buffer: UnsafeMutableRawBufferPointer, to destination: Int, sendTag: Int,
        from source: MessageSource = .any, receiveTag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> MessageStatus {
        let outgoing = [UInt8](UnsafeRawBufferPointer(buffer))
        return try withBytes(of: outgoing) { (bytes) throws(MPIError) in
            try sendReceive(bytes, to: destination, sendTag: sendTag, into: buffer, from: source, receiveTag: receiveTag, on: communicator)
        }
    }

    /// The same for `count` elements of `datatype` at `base`.
    public func sendReceiveReplacing(
        _ base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, to destination: Int, sendTag: Int,
        from source: MessageSource = .any, receiveTag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> MessageStatus {
        let outgoing: [UInt8]
        do {
            outgoing = try SendBuffer(base, count: count, datatype: datatype, for: "a send-receive-replace").packed()
        } catch {
            return try raise(error)
        }
        return try withBytes(of: outgoing) { (bytes) throws(MPIError) in
            let receiving = try startReceive(into: base, count: count, datatype: datatype, from: source, tag: receiveTag, on: communicator)
            let sending = try startSend(bytes, to: destination, tag: sendTag, on: communicator)
            let status = try wait(receiving)
            _ = try wait(sending)
            return status
        }
    }
}
