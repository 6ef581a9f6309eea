import FabricRegistrationCache

/// Every operation in progress, in a table whose entries are reused, so
/// that starting and completing one allocates nothing in steady state. A
/// `Request` names an entry and its generation; a stale request (one whose
/// entry was freed and reused) is told apart by the generation.
struct RequestTable {
    enum Operation { case send, receive, oneSided }

    /// One operation's state.
    struct Entry {
        var generation: UInt32 = 0
        var inUse = false
        var complete = false
        /// Freed by the program while in progress (MPI_Request_free): the
        /// entry is collected as soon as the operation completes.
        var detached = false
        var operation = Operation.send
        /// The world rank this operation depends on (-1: none, or any source).
        var peer = -1
        /// Receives: where the message goes.
        var buffer: UnsafeMutableRawPointer?
        var capacity = 0
        /// Sends to this rank, until matched: the bytes a receive copies.
        var sendBytes: UnsafeRawPointer?
        /// The datatype of `buffer` (receives) or `sendBytes` (sends to
        /// this rank) when its bytes are spread out, and its count.
        var layout: Datatype?
        var layoutCount = 0
        /// Rendezvous sends of spread-out data: the registered memory the
        /// message was packed into, freed when the receiver has read it.
        var staging: UnsafeMutableRawPointer?
        /// The outcome (receives: the envelope; sends: the length).
        var status = MessageStatus(source: -1, tag: -1, count: 0)
        /// The registration of the user's buffer, for a rendezvous, held
        /// from the registration cache until the transfer ends.
        var registration: RegistrationLease?
        /// Rendezvous receives: the remote payload, what is read, the
        /// sender's cookie to answer.
        var remote: (address: UInt64, key: UInt32) = (0, 0)
        var readTotal = 0
        var readIssued = 0
        var readDone = 0
        var cookie: UInt64 = 0
        /// Request-based one-sided operations (MPI_Rput and kin): the
        /// window tickets not yet finished.
        var ticketsLeft = 0
    }

    private(set) var entries: [Entry] = []
    private var free: [UInt32] = []

    init(capacity: Int = 256) {
        entries.reserveCapacity(capacity)
        free.reserveCapacity(capacity)
    }

    /// A fresh entry for `operation`.
    mutating func start(_ operation: Operation, peer: Int) -> Request {
        let index: UInt32
        if let reused = free.popLast() {
            index = reused
        } else {
            index = UInt32(entries.count)
            entries.append(Entry())
        }
        // Only the fields every operation reads are reset: the others are
        // written by the operation that uses them before it reads them
        // (a whole new Entry costs a destruction and a construction).
        let generation = entries.withUnsafeMutableBufferPointer { entries in
            entries[Int(index)].inUse = true
            entries[Int(index)].complete = false
            entries[Int(index)].detached = false
            entries[Int(index)].operation = operation
            entries[Int(index)].peer = peer
            entries[Int(index)].buffer = nil
            entries[Int(index)].capacity = 0
            entries[Int(index)].sendBytes = nil
            if entries[Int(index)].layout != nil { entries[Int(index)].layout = nil }
            entries[Int(index)].status.source = -1
            entries[Int(index)].status.tag = -1
            entries[Int(index)].status.count = 0
            if entries[Int(index)].status.error != nil { entries[Int(index)].status.error = nil }
            entries[Int(index)].status.isCancelled = false
            return entries[Int(index)].generation
        }
        return Request(index: index, generation: generation)
    }

    /// The entry `request` names, if it is still in progress or complete
    /// and not yet collected.
    func contains(_ request: Request) -> Bool {
        Int(request.index) < entries.count && entries[Int(request.index)].inUse
            && entries[Int(request.index)].generation == request.generation
    }

    subscript(index: UInt32) -> Entry {
        get { entries[Int(index)] }
        _modify { yield &entries[Int(index)] }
    }

    /// The entry a wire cookie names, if it is live.
    func index(ofCookie cookie: UInt64) -> UInt32? {
        let request = Request(cookie: cookie)
        return contains(request) && !entries[Int(request.index)].complete ? request.index : nil
    }

    mutating func complete(_ index: UInt32, count: Int, error: MPIError? = nil) {
        let detached = entries.withUnsafeMutableBufferPointer { entries in
            entries[Int(index)].complete = true
            entries[Int(index)].status.count = count
            entries[Int(index)].status.error = error
            assert(entries[Int(index)].registration == nil, "a request completed without giving its registration back")
            return entries[Int(index)].detached
        }
        if detached { _ = collect(index) }
    }

    /// Frees a completed entry and returns its status.
    mutating func collect(_ index: UInt32) -> MessageStatus {
        let status = entries[Int(index)].status
        entries[Int(index)].inUse = false
        assert(entries[Int(index)].registration == nil, "a request was collected without giving its registration back")
        entries[Int(index)].generation = (entries[Int(index)].generation &+ 1) & 0x7fff_ffff
        free.append(index)
        return status
    }

    /// Indices of the entries in progress that depend on `peer`.
    func pending(on peer: Int) -> [UInt32] {
        entries.indices.filter { entries[$0].inUse && !entries[$0].complete && entries[$0].peer == peer }.map { UInt32($0) }
    }
}
