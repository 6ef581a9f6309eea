import Synchronization

/// A send or receive set up once and started many times (MPI_Send_init,
/// MPI_Ssend_init, MPI_Bsend_init, MPI_Rsend_init, MPI_Recv_init): `start`
/// begins it, `wait` or `test` completes it and leaves it inactive, ready
/// to start again; `free` ends it. The buffer it names must stay valid
/// while it lives.
public final class PersistentRequest: Sendable, CustomStringConvertible {
    enum Operation {
        case send(SendBuffer, mode: SendMode, destination: Int, tag: Int)
        case receive(ReceiveBuffer, source: MessageSource, tag: MessageTag)
    }

    /// The operation's arguments: pointers into memory the program keeps
    /// valid while the request lives (MPI's rule for persistent requests).
    nonisolated(unsafe) let operation: Operation
    let communicator: Communicator?
    /// The request of the current start, while active; freed: nil for good.
    private let state = Mutex(State())

    struct State {
        var active: Request?
        var freed = false
    }

    init(_ operation: Operation, on communicator: Communicator?) {
        self.operation = operation
        self.communicator = communicator
    }

    /// The request of the current start, if it is active.
    public var activeRequest: Request? { state.withLock { $0.active } }

    /// Records a start; throws if one is active or the request is freed.
    func begin(_ start: () throws(MPIError) -> Request) throws(MPIError) {
        try state.withLock { (state) throws(MPIError) in
            guard !state.freed else { throw MPIError(.invalidRequest, "start of \(self), which is freed") }
            guard state.active == nil else { throw MPIError(.invalidRequest, "start of \(self), which is active (complete it first)") }
            state.active = try start()
        }
    }

    /// The active request, made inactive (its completion was reported).
    func end() { state.withLock { $0.active = nil } }

    func markFreed() throws(MPIError) {
        try state.withLock { (state) throws(MPIError) in
            guard !state.freed else { throw MPIError(.invalidRequest, "free of \(self), which is freed already") }
            state.freed = true
        }
    }

    public var description: String {
        switch operation {
        case .send(_, let mode, let destination, let tag): return "a persistent \(mode) send to rank \(destination) with tag \(tag)"
        case .receive(_, let source, let tag): return "a persistent receive from \(source) with \(tag)"
        }
    }
}

/// How a send completes (MPI's send modes).
public enum SendMode: Sendable, CustomStringConvertible {
    case standard, synchronous, buffered, ready

    public var description: String {
        switch self {
        case .standard: return "standard"
        case .synchronous: return "synchronous"
        case .buffered: return "buffered"
        case .ready: return "ready"
        }
    }
}

extension MPIRuntime {
    /// A persistent send of `buffer` (MPI_Send_init and, by `mode`, its kin).
    public func persistentSend(
        _ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, mode: SendMode = .standard, on communicator: Communicator? = nil
    ) -> PersistentRequest {
        PersistentRequest(.send(SendBuffer(buffer), mode: mode, destination: destination, tag: tag), on: communicator)
    }

    public func persistentSend(
        _ base: UnsafeRawPointer?, count: Int, datatype: Datatype, to destination: Int, tag: Int, mode: SendMode = .standard,
        on communicator: Communicator? = nil
    ) throws(MPIError) -> PersistentRequest {
        do {
            let data = try SendBuffer(base, count: count, datatype: datatype, for: "a persistent send")
            return PersistentRequest(.send(data, mode: mode, destination: destination, tag: tag), on: communicator)
        } catch {
            return try raise(error)
        }
    }

    /// A persistent receive into `buffer` (MPI_Recv_init).
    public func persistentReceive(
        into buffer: UnsafeMutableRawBufferPointer, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) -> PersistentRequest {
        PersistentRequest(.receive(ReceiveBuffer(buffer), source: source, tag: tag), on: communicator)
    }

    public func persistentReceive(
        into base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, from source: MessageSource = .any, tag: MessageTag = .any,
        on communicator: Communicator? = nil
    ) throws(MPIError) -> PersistentRequest {
        do {
            let buffer = try ReceiveBuffer(base, count: count, datatype: datatype, for: "a persistent receive")
            return PersistentRequest(.receive(buffer, source: source, tag: tag), on: communicator)
        } catch {
            return try raise(error)
        }
    }

    /// Starts `request` (MPI_Start); it must be inactive.
    public func start(_ request: PersistentRequest) throws(MPIError) {
        do {
            try request.begin { () throws(MPIError) -> Request in
                switch request.operation {
                case .send(let data, let mode, let destination, let tag):
                    switch mode {
                    case .standard, .ready: return try start(data, to: destination, tag: tag, on: request.communicator, synchronous: false)
                    case .synchronous: return try start(data, to: destination, tag: tag, on: request.communicator, synchronous: true)
                    case .buffered:
                        try buffered(data, to: destination, tag: tag, on: request.communicator)
                        return transport.completedRequest(data.length)
                    }
                case .receive(let buffer, let source, let tag):
                    return try startReceiving(buffer, from: source, tag: tag, on: request.communicator)
                }
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Starts every one of `requests` (MPI_Startall).
    public func startAll(_ requests: [PersistentRequest]) throws(MPIError) {
        for request in requests { try start(request) }
    }

    /// Waits for the active start of `request` and leaves it inactive; an
    /// inactive request returns an empty status at once (MPI_Wait).
    public func wait(_ request: PersistentRequest) throws(MPIError) -> MessageStatus {
        guard let active = request.activeRequest else { return MessageStatus(source: -1, tag: -1, count: 0) }
        defer { request.end() }
        return try wait(active)
    }

    /// The status if the active start completed (then inactive), else nil;
    /// an inactive request reports an empty status (MPI_Test).
    public func test(_ request: PersistentRequest) throws(MPIError) -> MessageStatus? {
        guard let active = request.activeRequest else { return MessageStatus(source: -1, tag: -1, count: 0) }
        let status: MessageStatus?
        do { status = try test(active) } catch {
            request.end()
            throw error
        }
        if status != nil { request.end() }
        return status
    }

    /// Waits for every active one of `requests` (MPI_Waitall).
    public func waitAll(_ requests: [PersistentRequest]) throws(MPIError) -> [MessageStatus] {
        let active = requests.compactMap(\.activeRequest)
        let statuses: [MessageStatus]
        do { statuses = try waitAll(active) } catch {
            for request in requests { request.end() }
            throw error
        }
        var next = statuses.makeIterator()
        var result: [MessageStatus] = []
        for request in requests {
            if request.activeRequest != nil {
                request.end()
                result.append(next.next()!)
            } else {
                result.append(MessageStatus(source: -1, tag: -1, count: 0))
            }
        }
        return result
    }

    /// Ends `request` (MPI_Request_free); an active start completes on its own.
    public func free(_ request: PersistentRequest) throws(MPIError) {
        do {
            try request.markFreed()
            if let active = request.activeRequest {
                request.end()
                try transport.free(active)
            }
        } catch {
            try raise(error) as Void
        }
    }
}
