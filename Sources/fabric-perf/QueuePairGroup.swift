import Fabric
import Glibc

/// N queue pairs between the two processes, all reporting to one completion
/// queue of their own, as an MPI rank's queue pairs to its many peers do;
/// beside them N plain TCP connections, the raw reference's streams. The
/// bandwidth and message-rate tests run over a group when asked for more
/// than one queue pair (`--queue-pairs`).
///
/// A group has its own completion queue, apart from the one queue pair the
/// other tests use: with the group's queue pairs attached, that queue would
/// be driven by readiness instead of directly, and the one-pair figures
/// would no longer be those of one queue pair.
final class QueuePairGroup<D: FabricDevice> {
    let completionQueue: D.CompletionQueue
    let setup: QueuePairSetup<D>
    private(set) var queuePairs: [D.QueuePair] = []
    private(set) var rawDescriptors: [Int32] = []
    /// The receive the server posts on each queue pair, one per queue pair:
    /// its id is the queue pair's index in the group, so that a receive
    /// completion names the queue pair to post the next receive on.
    let receiveRequests: [ReceiveWorkRequest]
    let size: Int

    init(side: FabricSide<D>, size: Int) throws {
        self.size = size
        // Room for every send and receive the group can have outstanding, so
        // that the queue never overruns whatever the server's pace.
        let wanted = size * (512 + side.receiveDepth)
        completionQueue = try side.device.createCompletionQueue(capacity: min(wanted, side.device.capabilities.maxCompletionQueueDepth))
        setup = side.setup(reportingTo: completionQueue)
        let region = try side.receiveRegion.element()
        receiveRequests = (0..<size).map { ReceiveWorkRequest(id: UInt64($0), local: .single(region)) }
    }

    deinit {
        for fd in rawDescriptors { close(fd) }
    }

    /// The client's half of the set-up: `size` connects, one after another
    /// (the server accepts them in turn). Nothing is ever sent to the
    /// client on these queue pairs, so they post no receives.
    func connect(_ device: D, to endpoint: Endpoint) throws {
        for _ in 0..<size {
            let (queuePair, _) = try device.connect(to: endpoint, setup, options: ConnectOptions()) { _ in }
            queuePairs.append(queuePair)
        }
    }

    /// The server's half: accepts `size` queue pairs, each with the side's
    /// receive depth of receives posted before the client can send.
    func accept(from listener: D.Listener, receiveDepth: Int) throws {
        for index in 0..<size {
            guard let request = try listener.next(timeout: .seconds(60)) else {
                throw PerfError("the client did not connect queue pair \(index + 1) of \(size)")
            }
            let receive = receiveRequests[index]
            queuePairs.append(try request.accept(setup, privateData: []) { (queuePair) throws(FabricError) in
                for _ in 0..<receiveDepth {
                    _ = try queuePair.postReceive(receive)
                }
            })
        }
    }

    /// The raw reference's `size` connections, client side.
    func connectRaw(host: String, port: UInt16) throws {
        for _ in 0..<size {
            rawDescriptors.append(try PlainSocket.connect(host: host, port: port))
        }
    }

    /// The raw reference's `size` connections, server side.
    func acceptRaw(from listener: Int32) throws {
        for _ in 0..<size {
            rawDescriptors.append(try PlainSocket.accept(listener))
        }
    }
}
