/// MPI's other send modes. Buffered sends copy the message into the buffer
/// the program attached and return at once; the copy leaves as a standard
/// send. Ready sends are standard sends: MPI lets a ready send be one (its
/// promise that the receive is posted only permits a faster protocol, and
/// this layer's eager and rendezvous paths need no such promise).
extension MPIRuntime {
    /// Bytes a buffered send takes from the attached buffer beyond its
    /// message (MPI_BSEND_OVERHEAD).
    public static let bufferedSendOverhead = 64

    /// Attaches `buffer` for buffered sends (MPI_Buffer_attach); it must
    /// stay valid until `detachBuffer` returns it.
    public func attachBuffer(_ buffer: UnsafeMutableRawBufferPointer) throws(MPIError) {
        do { try attachedBuffer.attach(buffer) } catch { try raise(error) as Void }
    }

    /// Waits for every buffered send to leave, then returns the attached
    /// buffer (MPI_Buffer_detach).
    public func detachBuffer() throws(MPIError) -> UnsafeMutableRawBufferPointer {
        do {
            return try attachedBuffer.detach { (requests) throws(MPIError) in
                try transport.wait { () throws(MPIError) -> Bool in
                    advance()
                    for request in requests where try !isFinished(request) { return false }
                    return true
                }
                for request in requests { _ = collect(request) }
            }
        } catch {
            return try raise(error)
        }
    }

    /// Copies the message into the attached buffer and sends it from there
    /// (MPI_Bsend): returns once copied. Without room: `invalidBuffer`.
    public func bufferedSend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        try buffered(SendBuffer(buffer), to: destination, tag: tag, on: communicator)
    }

    public func bufferedSend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        try buffered(SendBuffer(base, count: count, datatype: datatype, for: "a buffered send"), to: destination, tag: tag, on: communicator)
    }

    /// The nonblocking form (MPI_Ibsend): the request is complete once the
    /// message is copied, that is, at once.
    public func startBufferedSend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) -> Request {
        try bufferedSend(buffer, to: destination, tag: tag, on: communicator)
        return transport.completedRequest(buffer.count)
    }

    public func startBufferedSend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try bufferedSend(base, count: count, datatype: datatype, to: destination, tag: tag, on: communicator)
        return transport.completedRequest((try? datatype.packSize(count: count)) ?? 0)
    }

    /// A send whose receive the program promises is posted (MPI_Rsend): a standard send here.
    public func readySend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        try send(buffer, to: destination, tag: tag, on: communicator)
    }

    public func readySend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        try send(base, count: count, datatype: datatype, to: destination, tag: tag, on: communicator)
    }

    /// MPI_Irsend: a standard nonblocking send here.
    public func startReadySend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) -> Request {
        try startSend(buffer, to: destination, tag: tag, on: communicator)
    }

    public func startReadySend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startSend(base, count: count, datatype: datatype, to: destination, tag: tag, on: communicator)
    }

    func buffered(
        _ data: @autoclosure () throws(MPIError) -> SendBuffer, to destination: Int, tag: Int, on communicator: Communicator?
    ) throws(MPIError) {
        do {
            try checkOpen()
            let data = try data()
            try attachedBuffer.send(
                data,
                start: { (copy) throws(MPIError) -> Request in try transport.startSend(SendBuffer(copy), destination, tag, communicator ?? world, false) },
                isComplete: { request in
                    // Its outcome is the program's no longer: a failed
                    // connection shows in the program's own operations.
                    guard (try? isFinished(request)) == true else { return false }
                    _ = collect(request)
                    return true
                })
        } catch {
            try raise(error) as Void
        }
    }
}
