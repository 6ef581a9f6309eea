import FabricCore
@_spi(FabricInternals) import FabricSupport
import Synchronization

/// An authenticated peer waiting for `accept` or `reject`.
public final class TCPConnectionRequest: FabricConnectionRequest, @unchecked Sendable {  // `answered` guards the one use of fd
    public typealias Device = TCPDevice
    public let peer: Endpoint
    public let privateData: [UInt8]
    public let tag: UInt64?
    let fd: Int32
    let device: TCPDevice
    /// The request's entry in the device's tie-break table, if tagged: the
    /// queue pair takes it over, a rejection drops it.
    let tagRecord: ConnectionTags.RecordID?
    private let answered = Atomic<Bool>(false)

    init(fd: Int32, peer: Endpoint, privateData: [UInt8], tag: UInt64?, device: TCPDevice, tagRecord: ConnectionTags.RecordID?) {
        self.fd = fd
        self.tag = tag
        self.peer = peer
        self.privateData = privateData
        self.device = device
        self.tagRecord = tagRecord
    }

    deinit {
        if !answered.load(ordering: .relaxed) {
            SystemCalls.close(fd)
            device.core.forgetTag(tagRecord)
        }
    }

    public func accept(
        _ setup: QueuePairSetup<TCPDevice>, privateData: [UInt8],
        prepare: (TCPQueuePair) throws(FabricError) -> Void
    ) throws(FabricError) -> TCPQueuePair {
        try device.core.checkNotForked()
        try device.validate(setup)
        try device.checkQueuePairLimit()
        guard privateData.count <= Handshake.maxPrivateData else {
            throw FabricError(.invalidArgument, "private data of \(privateData.count) bytes; at most \(Handshake.maxPrivateData) are allowed")
        }
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else {
            throw FabricError(.invalidState, "the connection request from \(peer) was already answered")
        }
        let queuePair = TCPQueuePair(engine: QueuePairEngine(
            socket: fd, number: device.core.makeQueuePairNumber(), device: device.core, setup: setup, tagRecord: tagRecord))
        try prepare(queuePair)
        // The peer may send as soon as it reads the verdict: the queue pair
        // is live first.
        queuePair.engine.activate()
        let deadline = MonotonicClock.now() &+ TCPListener.handshakeTimeout
        do throws(FabricError) {
            let verdict = Handshake.encodeVerdict(.accepted, privateData: privateData)
            let outcome = verdict.withUnsafeBytes { raw in
                Result { () throws(FabricError) in try SystemCalls.writeExactly(fd, raw, deadline: deadline) }
            }
            try outcome.get()
        } catch {
            queuePair.disconnect()
            throw error
        }
        return queuePair
    }

    public func reject(privateData: [UInt8]) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var verdict = Handshake.encodeVerdict(.rejectedByApplication, privateData: Array(privateData.prefix(Handshake.maxPrivateData)))
        _ = try? HandshakeIO.flush(fd, &verdict)
        SystemCalls.close(fd)
        device.core.forgetTag(tagRecord)
    }
}
