/// Point-to-point with datatypes: `count` elements of a datatype at an
/// address, as MPI's calls take them. Elements whose bytes are one range
/// move as that range; spread-out ones are packed into the eager frame or
/// the rendezvous staging memory on the sender (one copy, counted), and
/// arrive through a copy out of the slot (eager) or straight into the
/// elements through the READ's scatter list (rendezvous).
///
/// The type must be committed and not freed; a null address is refused
/// unless the message is empty.
extension MPIRuntime {
    /// Sends `count` elements of `datatype` at `base` (MPI_Send).
    public func send(_ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        _ = try wait(startSend(base, count: count, datatype: datatype, to: destination, tag: tag, on: communicator))
    }

    /// Sends and returns once a receive has taken the message (MPI_Ssend).
    public func synchronousSend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) {
        _ = try wait(startSynchronousSend(base, count: count, datatype: datatype, to: destination, tag: tag, on: communicator))
    }

    /// Starts a send (MPI_Isend); the elements must stay unchanged until it completes.
    public func startSend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try start(SendBuffer(base, count: count, datatype: datatype, for: "a send"), to: destination, tag: tag, on: communicator, synchronous: false)
    }

    /// Starts a synchronous send (MPI_Issend).
    public func startSynchronousSend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try start(SendBuffer(base, count: count, datatype: datatype, for: "a send"), to: destination, tag: tag, on: communicator, synchronous: true)
    }

    /// Receives up to `count` elements of `datatype` into `base` (MPI_Recv).
    /// The status's count is in bytes; `MessageStatus.count(of:)` and
    /// `elements(of:)` convert it.
    public func receive(
        into base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> MessageStatus {
        try wait(startReceive(into: base, count: count, datatype: datatype, from: source, tag: tag, on: communicator))
    }

    /// Starts a receive (MPI_Irecv); the elements must stay untouched until it completes.
    public func startReceive(
        into base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype,
        from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startReceiving(ReceiveBuffer(base, count: count, datatype: datatype, for: "a receive"), from: source, tag: tag, on: communicator)
    }
}

extension MessageStatus {
    /// Whole elements of `datatype` in the message (MPI_Get_count); nil
    /// when the bytes end inside an element (MPI_UNDEFINED).
    public func count(of datatype: Datatype) -> Int? {
        let size = datatype.size
        guard size > 0 else { return count == 0 ? 0 : nil }
        return count % size == 0 ? count / size : nil
    }

    /// Basic elements in the message read as `datatype`s (MPI_Get_elements);
    /// nil when the bytes end inside a basic element.
    public func elements(of datatype: Datatype) -> Int? {
        datatype.basicElements(inPackedBytes: count)
    }
}
