import FabricRegistrationCache

/// What an error of an MPI operation does (MPI's error handlers).
public enum ErrorHandler: Hashable, Sendable {
    /// End the job, naming the rank and the cause (MPI_ERRORS_ARE_FATAL).
    case abortJob
    /// Throw the error to the caller (MPI_ERRORS_RETURN).
    case returnErrors
}

/// MPI's thread levels, in increasing order of what the program may do.
public enum ThreadLevel: Int, Comparable, Sendable, CustomStringConvertible {
    /// One thread.
    case single
    /// Several threads; only the one that initialised calls MPI.
    case funneled
    /// Several threads call MPI, one at a time.
    case serialized
    /// Several threads call MPI at once.
    case multiple

    public static func < (a: ThreadLevel, b: ThreadLevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .single: return "single"
        case .funneled: return "funneled"
        case .serialized: return "serialized"
        case .multiple: return "multiple"
        }
    }
}

/// Point-to-point messaging: tagged sends and receives of contiguous
/// bytes between ranks of a communicator (the world when none is named).
///
/// Blocking forms return when the buffer may be used again: a send once
/// the message has left it (copied into a bounce slot for an eager
/// message, read by the receiver for a rendezvous), a receive once the
/// message is in it. Nonblocking forms (`startSend`, `startReceive`) take
/// buffer pointers whose memory must stay valid and untouched until the
/// request completes (`wait`, `test` and their kin).
///
/// Errors go to `errorHandler`: by default the job ends; with
/// `.returnErrors` they are thrown.
extension MPIRuntime {
    // MARK: - Blocking

    /// Sends `buffer` to `destination` with `tag` (MPI_Send).
    public func send(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        let request = try startSend(buffer, to: destination, tag: tag, on: communicator)
        _ = try wait(request)
    }

    public func send<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        try withBytes(of: values) { (buffer) throws(MPIError) in try send(buffer, to: destination, tag: tag, on: communicator) }
    }

    public func send<T: BitwiseCopyable>(_ values: UnsafeBufferPointer<T>, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        try send(UnsafeRawBufferPointer(values), to: destination, tag: tag, on: communicator)
    }

    /// Sends and returns only once a receive has taken the message (MPI_Ssend).
    public func synchronousSend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        let request = try startSynchronousSend(buffer, to: destination, tag: tag, on: communicator)
        _ = try wait(request)
    }

    public func synchronousSend<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) {
        try withBytes(of: values) { (buffer) throws(MPIError) in try synchronousSend(buffer, to: destination, tag: tag, on: communicator) }
    }

    /// Receives into `buffer` the oldest message from `source` with `tag`
    /// (MPI_Recv); the status says who sent it, its tag and its length.
    public func receive(
        into buffer: UnsafeMutableRawBufferPointer, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> MessageStatus {
        let request = try startReceive(into: buffer, from: source, tag: tag, on: communicator)
        return try wait(request)
    }

    public func receive<T: BitwiseCopyable>(
        into buffer: UnsafeMutableBufferPointer<T>, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> MessageStatus {
        try receive(into: UnsafeMutableRawBufferPointer(buffer), from: source, tag: tag, on: communicator)
    }

    /// Receives up to `count` elements of `T` into a new array, cut to the
    /// whole elements that arrived.
    public func receive<T: BitwiseCopyable>(
        _ type: T.Type, count: Int, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> (values: [T], status: MessageStatus) {
        guard count >= 0 else { return try raise(MPIError(.invalidArgument, "a receive of \(count) elements")) }
        var status = MessageStatus(source: -1, tag: -1, count: 0)
        var failure: MPIError?
        let values = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            // Elements the message does not cover stay out of the array.
            do throws(MPIError) {
                status = try receive(into: UnsafeMutableRawBufferPointer(buffer), from: source, tag: tag, on: communicator)
                initialized = min(count, status.count / max(1, MemoryLayout<T>.stride))
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return (values, status)
    }

    /// Sends one message and receives another at once (MPI_Sendrecv): no
    /// deadlock when two ranks exchange with each other.
    public func sendReceive(
        _ sendBuffer: UnsafeRawBufferPointer, to destination: Int, sendTag: Int,
        into receiveBuffer: UnsafeMutableRawBufferPointer, from source: MessageSource = .any, receiveTag: MessageTag = .any,
        on communicator: Communicator? = nil
    ) throws(MPIError) -> MessageStatus {
        let receiving = try startReceive(into: receiveBuffer, from: source, tag: receiveTag, on: communicator)
        let sending = try startSend(sendBuffer, to: destination, tag: sendTag, on: communicator)
        // Waiting on either advances both.
        let status = try wait(receiving)
        _ = try wait(sending)
        return status
    }

    // MARK: - Nonblocking

    /// Starts a send (MPI_Isend). `buffer` must stay valid and unchanged
    /// until the request completes.
    public func startSend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) -> Request {
        try start(SendBuffer(buffer), to: destination, tag: tag, on: communicator, synchronous: false)
    }

    public func startSend<T: BitwiseCopyable>(_ values: UnsafeBufferPointer<T>, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) -> Request {
        try startSend(UnsafeRawBufferPointer(values), to: destination, tag: tag, on: communicator)
    }

    /// Starts a synchronous send (MPI_Issend): complete once matched.
    public func startSynchronousSend(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int, on communicator: Communicator? = nil) throws(MPIError) -> Request {
        try start(SendBuffer(buffer), to: destination, tag: tag, on: communicator, synchronous: true)
    }

    func start(
        _ data: @autoclosure () throws(MPIError) -> SendBuffer, to destination: Int, tag: Int, on communicator: Communicator?, synchronous: Bool
    ) throws(MPIError) -> Request {
        do {
            try checkOpen()
            return try transport.startSend(try data(), destination, tag, communicator ?? world, synchronous)
        } catch {
            return try raise(error)
        }
    }

    /// Starts a receive (MPI_Irecv). `buffer` must stay valid and untouched
    /// until the request completes.
    public func startReceive(
        into buffer: UnsafeMutableRawBufferPointer, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startReceiving(ReceiveBuffer(buffer), from: source, tag: tag, on: communicator)
    }

    func startReceiving(
        _ buffer: @autoclosure () throws(MPIError) -> ReceiveBuffer, from source: MessageSource, tag: MessageTag, on communicator: Communicator?
    ) throws(MPIError) -> Request {
        do {
            try checkOpen()
            return try transport.startReceive(try buffer(), source, tag, communicator ?? world)
        } catch {
            return try raise(error)
        }
    }

    public func startReceive<T: BitwiseCopyable>(
        into buffer: UnsafeMutableBufferPointer<T>, from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil
    ) throws(MPIError) -> Request {
        try startReceive(into: UnsafeMutableRawBufferPointer(buffer), from: source, tag: tag, on: communicator)
    }

    // MARK: - Completion

    /// Waits for `request` (MPI_Wait), advancing every pending operation
    /// meanwhile. The request is used up.
    public func wait(_ request: Request) throws(MPIError) -> MessageStatus {
        do throws(MPIError) {
            let status = try complete(request)
            if let error = status.error { throw error }
            return status
        } catch {
            return try raise(error)
        }
    }

    /// The status if `request` has completed (then it is used up), else
    /// nil (MPI_Test).
    public func test(_ request: Request) throws(MPIError) -> MessageStatus? {
        do throws(MPIError) {
            guard try isComplete(request) else { return nil }
            let status = collect(request)
            if let error = status.error { throw error }
            return status
        } catch {
            return try raise(error)
        }
    }

    /// Waits for every request (MPI_Waitall); statuses in the same order.
    /// An error of any of them goes to the error handler once all completed.
    public func waitAll(_ requests: [Request]) throws(MPIError) -> [MessageStatus] {
        do { try waitUntilAllFinished(requests) } catch { return try raise(error) }
        let statuses = requests.map { collect($0) }
        try raiseFirstError(of: statuses)
        return statuses
    }

    /// Waits for every request, keeping no statuses (MPI_Waitall with
    /// MPI_STATUSES_IGNORE): allocates nothing.
    public func waitAllDiscardingStatuses(_ requests: [Request]) throws(MPIError) {
        do throws(MPIError) {
            try waitUntilAllFinished(requests)
            var failure: MPIError?
            for request in requests {
                let status = collect(request)
                if failure == nil, let error = status.error { failure = error }
            }
            if let failure { throw failure }
        } catch {
            try raise(error) as Void
        }
    }

    /// Waits for one of `requests` (MPI_Waitany): its index and status;
    /// the others stay in progress.
    public func waitAny(_ requests: [Request]) throws(MPIError) -> (index: Int, status: MessageStatus) {
        guard !requests.isEmpty else { return try raise(MPIError(.invalidArgument, "waitAny of no requests")) }
        var found = -1
        do {
            try transport.wait { () throws(MPIError) -> Bool in
                advance()
                for (index, request) in requests.enumerated() where try isFinished(request) {
                    found = index
                    return true
                }
                return false
            }
        } catch {
            return try raise(error)
        }
        let status = collect(requests[found])
        if let error = status.error { return try raise(error) }
        return (found, status)
    }

    /// Waits until at least one of `requests` completes (MPI_Waitsome):
    /// every one complete by then, with its index.
    public func waitSome(_ requests: [Request]) throws(MPIError) -> [(index: Int, status: MessageStatus)] {
        guard !requests.isEmpty else { return [] }
        _ = try? transport.wait { () throws(MPIError) -> Bool in
            advance()
            for request in requests where try isFinished(request) { return true }
            return false
        }
        return try collectFinished(requests)
    }

    /// Every status if all `requests` have completed (then all are used
    /// up), else nil and none is (MPI_Testall).
    public func testAll(_ requests: [Request]) throws(MPIError) -> [MessageStatus]? {
        advance()
        do {
            for request in requests where try !isFinished(request) { return nil }
        } catch {
            return try raise(error)
        }
        let statuses = requests.map { collect($0) }
        try raiseFirstError(of: statuses)
        return statuses
    }

    /// One completed request of `requests` with its index, or nil (MPI_Testany).
    public func testAny(_ requests: [Request]) throws(MPIError) -> (index: Int, status: MessageStatus)? {
        advance()
        do throws(MPIError) {
            for (index, request) in requests.enumerated() where try isFinished(request) {
                let status = collect(request)
                if let error = status.error { throw error }
                return (index, status)
            }
        } catch {
            return try raise(error)
        }
        return nil
    }

    /// The completed requests of `requests` with their indices (MPI_Testsome).
    public func testSome(_ requests: [Request]) throws(MPIError) -> [(index: Int, status: MessageStatus)] {
        advance()
        return try collectFinished(requests)
    }

    private func collectFinished(_ requests: [Request]) throws(MPIError) -> [(index: Int, status: MessageStatus)] {
        var done: [(index: Int, status: MessageStatus)] = []
        do {
            for (index, request) in requests.enumerated() where try isFinished(request) {
                done.append((index, collect(request)))
            }
        } catch {
            return try raise(error)
        }
        try raiseFirstError(of: done.map(\.status))
        return done
    }

    /// Advances until every one of `requests` is complete (none collected).
    private func waitUntilAllFinished(_ requests: [Request]) throws(MPIError) {
        try transport.wait { () throws(MPIError) -> Bool in
            advance()
            for request in requests where try !isFinished(request) { return false }
            return true
        }
    }

    /// Gives the first error among `statuses` to the error handler.
    private func raiseFirstError(of statuses: [MessageStatus]) throws(MPIError) {
        if let error = statuses.lazy.compactMap(\.error).first { try raise(error) as Void }
    }

    // MARK: - Probing

    /// Waits for a message from `source` with `tag` and says what it is,
    /// without receiving it (MPI_Probe).
    public func probe(from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil) throws(MPIError) -> MessageStatus {
        var found: MessageStatus?
        do {
            try checkOpen()
            try transport.wait { () throws(MPIError) -> Bool in
                collectives.advance()
                found = try transport.probe(source, tag, communicator ?? world)
                return found != nil
            }
        } catch {
            return try raise(error)
        }
        return found!
    }

    /// What has arrived from `source` with `tag`, if anything (MPI_Iprobe).
    public func probeIfArrived(from source: MessageSource = .any, tag: MessageTag = .any, on communicator: Communicator? = nil) throws(MPIError) -> MessageStatus? {
        do {
            try checkOpen()
            return try transport.probe(source, tag, communicator ?? world)
        } catch {
            return try raise(error)
        }
    }

    // MARK: - Figures

    /// What point-to-point did since initialisation (bytes copied,
    /// protocols chosen, registrations).
    public var pointToPointStatistics: PointToPointStatistics { transport.statistics() }

    /// What the registration cache of rendezvous buffers did: hits, misses,
    /// evictions, invalidations, per-use registrations, bytes registered.
    public var registrationCacheStatistics: RegistrationCacheStatistics { transport.registrationStatistics() }

    /// How the registration cache is set up in this process: caching or
    /// not (and why), the cap and where it came from.
    public var registrationCacheState: RegistrationCacheState { transport.registrationCacheState }

    /// Bytes up to which a message is sent eagerly.
    public var eagerLimit: Int { transport.settings.eagerLimit }

    /// Applies the error handler to `error`: ends the job, or throws.
    func raise<T>(_ error: MPIError) throws(MPIError) -> T {
        if errorHandler == .abortJob {
            abort(exitCode: 1, message: "rank \(rank): \(error.message)")
        }
        throw error
    }
}
