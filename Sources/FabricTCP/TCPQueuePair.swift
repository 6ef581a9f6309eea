import FabricCore

/// A reliable connected queue pair of the software NIC. The application
/// owns it: when its last reference goes, the connection is closed and the
/// engine leaves the completion queues and the progress thread (outstanding
/// work is lost, as when a verbs queue pair is destroyed); `disconnect()`
/// ends it gracefully first.
public final class TCPQueuePair: FabricQueuePair, @unchecked Sendable {  // immutable; the engine is thread-safe
    let engine: QueuePairEngine

    init(engine: QueuePairEngine) { self.engine = engine }

    deinit { engine.close() }

    public var number: QueuePairNumber { engine.number }
    public var limits: QueuePairLimits { engine.limits }
    public var state: QueuePairState { engine.state }

    @inline(__always)
    public func postSend(_ request: SendWorkRequest) throws(FabricError) -> PostResult {
        try engine.postSend(request)
    }

    /// Posts the requests as one batch: one doorbell, and their frames
    /// share sendmsg calls (as many as fit in one). None is posted if one
    /// is structurally wrong.
    public func postSend(_ requests: UnsafeBufferPointer<SendWorkRequest>) throws(FabricError) -> Int {
        try engine.postSend(requests)
    }

    @inline(__always)
    public func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult {
        try engine.postReceive(request)
    }

    public func disconnect() { engine.disconnect() }

    /// Counters of this queue pair.
    public var counters: QueuePairStatistics { engine.counters }
}
