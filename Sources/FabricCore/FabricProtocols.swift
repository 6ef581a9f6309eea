/// The fabric API both backends implement. Application and protocol code is
/// written generically over `some FabricDevice`: the backend is chosen once,
/// at setup, and the data path makes no existential calls.
///
/// Thread safety (docs/threading.md has the whole contract):
/// - every object is `Sendable`; posting to one queue pair from several
///   threads is allowed; one thread at a time should poll a completion queue
///   (several may, they share the completions);
/// - a process that forks keeps its objects in the parent; the child cannot
///   use them, and any call there throws `invalidState` naming fork.

/// A registered memory region (verbs: `ibv_mr`).
public protocol FabricMemoryRegion: AnyObject, Sendable {
    var address: UnsafeMutableRawPointer { get }
    var length: Int { get }
    var access: MemoryAccess { get }
    var localKey: LocalKey { get }
    var remoteKey: RemoteKey { get }
    /// Revokes the keys. Later remote accesses with the remote key fail with
    /// a remote access error; local requests with the local key fail with a
    /// local protection error. Idempotent; also done when the object is freed.
    func deregister() throws(FabricError)

    /// Says that the process's memory monitor watches this region's pages
    /// (a registration cache watched them before registering). A device
    /// that reads and writes the current mapping (`followsCurrentMapping`)
    /// then revokes the region's keys as soon as the monitor reports the
    /// pages unmapped, moved or emptied, before it serves another remote
    /// access: a peer that kept the remote key never reaches what is
    /// mapped there next. A device that pins pages does nothing (its
    /// registration keeps the old pages; the cache drops the entry).
    func revokeWhenPagesChange()
}

extension FabricMemoryRegion {
    public func revokeWhenPagesChange() {}
}

extension FabricMemoryRegion {
    /// A scatter element covering `length` bytes at `offset` in this region
    /// (the rest of it by default). Throws when the element would exceed
    /// 4 GiB - 1, what one element can carry (see ScatterGatherElement).
    @inlinable
    public func element(offset: Int = 0, length: Int? = nil) throws(FabricError) -> ScatterGatherElement {
        let size = length ?? (self.length - offset)
        return try ScatterGatherElement(pointer: address + offset, length: size, localKey: localKey)
    }

    /// Where a peer can reach `offset` of this region.
    @inlinable
    public func remote(offset: Int = 0) -> RemoteMemory {
        RemoteMemory(address: UInt64(UInt(bitPattern: address + offset)), key: remoteKey)
    }
}

/// A protection domain (verbs: `ibv_pd`): regions and queue pairs of one
/// domain can be used together, and a remote key is honoured only on the
/// connections of its region's domain.
public protocol FabricProtectionDomain: AnyObject, Sendable {}

/// A completion queue (verbs: `ibv_cq`).
public protocol FabricCompletionQueue: AnyObject, Sendable {
    /// Moves up to `buffer.count` completions into `buffer`, returns how many.
    /// Also drives the progress of the queue pairs that report here, so a
    /// busy-polling caller gets the lowest latency with no thread hop.
    func poll(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int

    /// Sleeps until a completion may be ready or `timeout` passes (nil:
    /// forever). Returns false on timeout. Then call `poll`.
    func wait(timeout: Duration?) throws(FabricError) -> Bool

    /// A file descriptor that becomes readable when `poll` may find work;
    /// for event loops that sleep on many sources. Owned by the queue. After
    /// it fires, poll until a call returns fewer completions than the
    /// buffer holds (as with a verbs completion channel); wake-ups may be
    /// spurious.
    var fileDescriptor: Int32 { get }

    var capacity: Int { get }
}

extension FabricCompletionQueue {
    /// Polls one completion.
    @inlinable
    public func poll() -> Completion? {
        var completion = Completion.empty
        let count = withUnsafeMutablePointer(to: &completion) {
            poll(into: UnsafeMutableBufferPointer(start: $0, count: 1))
        }
        return count == 1 ? completion : nil
    }

    /// Polls until a completion arrives or `timeout` passes, sleeping on the
    /// queue's descriptor between polls.
    public func next(timeout: Duration? = nil) throws(FabricError) -> Completion? {
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now + $0 }
        while true {
            if let completion = poll() { return completion }
            var remaining: Duration? = nil
            if let deadline {
                remaining = deadline - clock.now
                if remaining! <= .zero { return nil }
            }
            _ = try wait(timeout: remaining)
        }
    }
}

/// A shared receive queue (verbs: `ibv_srq`).
public protocol FabricSharedReceiveQueue: AnyObject, Sendable {
    func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult
}

/// A reliable connected queue pair (verbs: `ibv_qp` of type RC).
public protocol FabricQueuePair: AnyObject, Sendable {
    var number: QueuePairNumber { get }
    var state: QueuePairState { get }
    var limits: QueuePairLimits { get }
    /// Posts a send-queue request. Structural errors (too many scatter
    /// entries, a bad opcode for the device) throw; a full queue returns
    /// `.wouldBlock`; errors found when executing come back as completions.
    func postSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult
    /// Posts several send-queue requests in order, in one step where the
    /// device allows (verbs: one linked list, one doorbell). Returns how
    /// many were posted: fewer than given when the queue filled (poll, then
    /// post the rest). A structurally wrong request throws, and none of the
    /// batch is posted.
    func postSend(_ requests: UnsafeBufferPointer<SendWorkRequest>) throws(FabricError) -> Int
    /// Posts a receive (not allowed when the queue pair uses a shared
    /// receive queue).
    func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult
    /// Closes the connection; outstanding requests complete as flushed.
    func disconnect()
}

extension FabricQueuePair {
    /// Posts one request at a time, stopping at a full queue.
    public func postSend(_ requests: UnsafeBufferPointer<SendWorkRequest>) throws(FabricError) -> Int {
        var posted = 0
        for request in requests {
            guard try postSend(request) == .posted else { break }
            posted += 1
        }
        return posted
    }
}

/// An incoming connection, authenticated, waiting for the application to
/// accept or reject it (rdma_cm's connect request event).
public protocol FabricConnectionRequest: AnyObject, Sendable {
    associatedtype Device: FabricDevice
    var peer: Endpoint { get }
    var privateData: [UInt8] { get }
    /// The tag the requester connected with (`ConnectOptions.tag`), nil
    /// for none: it can name the connection for both sides (an MPI rank
    /// pair), which private data cannot on verbs when a tag is set.
    var tag: UInt64? { get }
    /// Creates the queue pair, lets `prepare` post receives before the peer
    /// can send, and completes the connection.
    func accept(
        _ setup: QueuePairSetup<Device>, privateData: [UInt8],
        prepare: (Device.QueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> Device.QueuePair
    func reject(privateData: [UInt8])
}

/// A connect in progress (rdma_cm's id before ESTABLISHED), driven by
/// `advance` from the thread that started it: one thread can have many in
/// flight while it serves its own listener. Not `Sendable`: it belongs to
/// that thread. Dropping it before it connected abandons the attempt.
public protocol FabricConnectAttempt: AnyObject {
    associatedtype QueuePair: FabricQueuePair
    /// A descriptor that becomes readable (or writable, while
    /// `waitsToWrite`) when `advance` may move on; owned by the attempt.
    var fileDescriptor: Int32 { get }
    var waitsToWrite: Bool { get }
    /// Moves the set-up on as far as it can without waiting. Returns the
    /// queue pair and the peer's private data once connected (then again
    /// on later calls), nil while in progress; throws when the attempt
    /// failed (refused, timed out, `crossedConnection`, ...).
    func advance() throws(FabricError) -> (queuePair: QueuePair, privateData: [UInt8])?
}

/// A listening endpoint (rdma_cm's listen id). It runs the handshakes of
/// many peers at once: a silent or slow peer delays no other.
public protocol FabricListener: AnyObject, Sendable {
    associatedtype Device: FabricDevice
    /// The address actually bound (the port is filled in when 0 was asked).
    var endpoint: Endpoint { get }
    /// The address to hand to peers: concrete host addresses (for a
    /// wildcard listener, the interfaces'), the port, the backend and the
    /// device's identity. Its printed form survives key-value stores.
    var address: FabricAddress { get }
    /// Waits for the next authenticated connection request (nil after
    /// `timeout`; `.zero` only looks), moving every handshake in progress.
    func next(timeout: Duration?) throws(FabricError) -> Device.ConnectionRequest?
    /// A descriptor that becomes readable when `next` may have something to
    /// do (a new peer, a handshake's next message); owned by the listener.
    var fileDescriptor: Int32 { get }
    func close()
}

/// What a new queue pair is made of.
public struct QueuePairSetup<Device: FabricDevice>: Sendable {
    public var protectionDomain: Device.ProtectionDomain
    public var sendCompletionQueue: Device.CompletionQueue
    public var receiveCompletionQueue: Device.CompletionQueue
    public var sharedReceiveQueue: Device.SharedReceiveQueue?
    public var limits: QueuePairLimits
    public var retry: RetryPolicy

    public init(
        protectionDomain: Device.ProtectionDomain, sendCompletionQueue: Device.CompletionQueue,
        receiveCompletionQueue: Device.CompletionQueue, sharedReceiveQueue: Device.SharedReceiveQueue? = nil,
        limits: QueuePairLimits = QueuePairLimits(), retry: RetryPolicy = RetryPolicy()
    ) {
        self.protectionDomain = protectionDomain
        self.sendCompletionQueue = sendCompletionQueue
        self.receiveCompletionQueue = receiveCompletionQueue
        self.sharedReceiveQueue = sharedReceiveQueue
        self.limits = limits
        self.retry = retry
    }
}

/// An open device (verbs: `ibv_context` plus rdma_cm).
public protocol FabricDevice: AnyObject, Sendable {
    associatedtype ProtectionDomain: FabricProtectionDomain
    associatedtype MemoryRegion: FabricMemoryRegion
    associatedtype CompletionQueue: FabricCompletionQueue
    associatedtype SharedReceiveQueue: FabricSharedReceiveQueue
    associatedtype QueuePair: FabricQueuePair
    associatedtype ConnectionRequest: FabricConnectionRequest where ConnectionRequest.Device == Self
    associatedtype Listener: FabricListener where Listener.Device == Self
    associatedtype ConnectAttempt: FabricConnectAttempt where ConnectAttempt.QueuePair == QueuePair

    /// "tcp" or "verbs".
    var backendName: String { get }
    /// The version of the backend's wire protocol (in fabric addresses).
    var wireVersion: Int { get }
    /// A random identity of this open device, fixed for its life: names it
    /// in fabric addresses, and orders two devices in a tie-break.
    var instance: UInt64 { get }
    var name: String { get }
    var capabilities: DeviceCapabilities { get }

    func allocateProtectionDomain() throws(FabricError) -> ProtectionDomain
    func registerMemory(
        _ address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess,
        in domain: ProtectionDomain
    ) throws(FabricError) -> MemoryRegion
    func createCompletionQueue(capacity: Int) throws(FabricError) -> CompletionQueue
    func createSharedReceiveQueue(
        in domain: ProtectionDomain, capacity: Int, maxScatterEntries: Int
    ) throws(FabricError) -> SharedReceiveQueue

    /// Connects to a listening peer. `prepare` runs once the queue pair
    /// exists and before the peer can send to it: post receives there.
    /// Returns the queue pair and the private data the peer accepted with.
    func connect(
        to endpoint: Endpoint, _ setup: QueuePairSetup<Self>, options: ConnectOptions,
        prepare: (QueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> (queuePair: QueuePair, privateData: [UInt8])

    /// Starts a connect and returns at once; `advance` the attempt to finish
    /// it. `prepare` runs once the queue pair exists and before the peer
    /// can send to it, from within `advance`.
    func startConnect(
        to endpoint: Endpoint, _ setup: QueuePairSetup<Self>, options: ConnectOptions,
        prepare: @escaping (QueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> ConnectAttempt

    /// Listens on `endpoint` (port 0 picks a free port).
    func listen(on endpoint: Endpoint, backlog: Int) throws(FabricError) -> Listener

    /// Returns the next asynchronous event, if any.
    func pollAsyncEvent() -> AsyncEvent?
}

extension FabricDevice {
    /// Connects to the device a fabric address names (another process's
    /// `listener.address`, printed and parsed): refuses an address of the
    /// other backend or wire version, tries its host addresses in order
    /// within one `options.timeout` for all, and fails with
    /// `unexpectedPeer` if a device other than the one named answers.
    public func connect(
        to address: FabricAddress, _ setup: QueuePairSetup<Self>, options: ConnectOptions,
        prepare: (QueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> (queuePair: QueuePair, privateData: [UInt8]) {
        try address.checkReachable(byBackend: backendName, wireVersion: wireVersion)
        var options = options
        options.expectedInstance = address.instance
        let clock = ContinuousClock()
        let deadline = clock.now + options.timeout
        var failures: [String] = []
        for endpoint in address.endpoints {
            let remaining = deadline - clock.now
            guard remaining > .zero else { break }
            options.timeout = remaining
            do {
                return try connect(to: endpoint, setup, options: options, prepare: prepare)
            } catch {
                // Another address may work; an answer that is not "cannot
                // reach" ends the search.
                switch error.kind {
                case .connectionFailed, .timedOut, .system: failures.append(error.message)
                default: throw error
                }
            }
        }
        throw FabricError(.connectionFailed, "no address of \(address) answered within \(options.timeout): \(failures.joined(separator: "; "))")
    }
}

import Dispatch
import Synchronization

extension FabricCompletionQueue {
    /// Awaits the next completion. Between polls the task is suspended on
    /// the queue's `fileDescriptor` through a Dispatch read source: no
    /// thread sleeps for it, neither a Swift concurrency thread nor a
    /// Dispatch one, and `poll` itself is untouched (busy-polling code pays
    /// nothing for this convenience). Cancelling the task ends the wait at
    /// once with a `cancelled` error.
    public func nextCompletion() async throws(FabricError) -> Completion {
        let descriptor = fileDescriptor
        while true {
            if let completion = poll() { return completion }
            if Task.isCancelled { throw FabricError(.cancelled, "the task waiting for a completion was cancelled") }
            let readiness = DescriptorReadiness(descriptor)
            await withTaskCancellationHandler {
                await readiness.wait()
            } onCancel: {
                readiness.cancel()
            }
        }
    }
}

/// One wait for a descriptor to become readable, as a continuation a
/// Dispatch read source resumes (or cancellation does, whichever is first).
private final class DescriptorReadiness: @unchecked Sendable {  // `state` behind its lock; Dispatch sources are thread-safe
    private struct State {
        var continuation: CheckedContinuation<Void, Never>?
        var finished = false
    }
    private let state = Mutex(State())
    private let source: DispatchSourceRead

    init(_ descriptor: Int32) {
        source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: .global())
        // Active from the start (an inactive source must not be released),
        // so readiness before `wait` is remembered in `finished`.
        // The handler holds the object until the source is cancelled, which
        // releases the handler (and the cycle with it).
        source.setEventHandler { [self] in finish() }
        source.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let armed = state.withLock { state -> Bool in
                guard !state.finished else { return false }
                state.continuation = continuation
                return true
            }
            if !armed { continuation.resume() }
        }
    }

    func cancel() { finish() }

    /// Resumes the waiter once and stops the source (a readable descriptor
    /// stays readable: the source would fire again and again).
    private func finish() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.continuation = nil }
            return state.continuation
        }
        source.cancel()
        continuation?.resume()
    }
}
