import Fabric

/// One side of a connection: its own device, domain, queues and memory.
public final class Side<D: FabricDevice>: @unchecked Sendable {  // a test sets `queuePair` once, before sharing the side
    public let device: D
    public let domain: D.ProtectionDomain
    public let sendCQ: D.CompletionQueue
    public let receiveCQ: D.CompletionQueue
    public var queuePair: D.QueuePair!
    /// Objects that must live as long as the side (memory that receives
    /// posted during set-up point into).
    public var keepAlive: [AnyObject] = []

    public init(_ device: D, cqCapacity: Int = 4096) throws {
        self.device = device
        domain = try device.allocateProtectionDomain()
        sendCQ = try device.createCompletionQueue(capacity: cqCapacity)
        receiveCQ = try device.createCompletionQueue(capacity: cqCapacity)
    }

    public func setup(limits: QueuePairLimits = QueuePairLimits(), retry: RetryPolicy = RetryPolicy(), shared: D.SharedReceiveQueue? = nil) -> QueuePairSetup<D> {
        QueuePairSetup(protectionDomain: domain, sendCompletionQueue: sendCQ, receiveCompletionQueue: receiveCQ, sharedReceiveQueue: shared, limits: limits, retry: retry)
    }

    public func register(_ buffer: Buffer, _ access: MemoryAccess = .all) throws -> D.MemoryRegion {
        try device.registerMemory(buffer.pointer, length: buffer.count, access: access, in: domain)
    }

    /// Polls `queue` until a completion arrives; throws after `timeout`,
    /// naming `awaited` (what the test waited for).
    public func next(_ queue: D.CompletionQueue, timeout: Duration = .seconds(20), awaited: String = "a completion") throws -> Completion {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let completion = queue.poll() { return completion }
        }
        throw TestFailure("no completion within \(timeout) (waiting for \(awaited))")
    }

    public func nextSend(_ awaited: String = "a send-queue completion") throws -> Completion { try next(sendCQ, awaited: awaited) }
    public func nextReceive(_ awaited: String = "a receive completion") throws -> Completion { try next(receiveCQ, awaited: awaited) }

    /// The first completion `queue` gives within `duration`; nil (what a
    /// test that expects silence wants) when none does.
    public func nothingCompletes(_ queue: D.CompletionQueue, for duration: Duration = .milliseconds(50)) -> Completion? {
        let clock = ContinuousClock()
        let deadline = clock.now + duration
        while clock.now < deadline {
            if let completion = queue.poll() { return completion }
        }
        return nil
    }
}

/// A failure of a harness step, thrown so that the test fails with it.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
