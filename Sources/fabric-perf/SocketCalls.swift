import Fabric

/// What a timed loop cost besides its time.
struct LoopCost {
    /// Heap allocations in the loop.
    var allocations: UInt64
    /// System calls the engine made on the measured queue pairs' sockets
    /// during the loop (send, sendmsg, reads); nil where the backend does
    /// not count them (only the tcp backend does).
    var socketCalls: Int?
}

extension FabricSide {
    /// The socket system calls `queuePairs` have made so far, summed, or nil
    /// off the tcp backend. Each queue pair's counters are read under its
    /// lock: call this before and after a timed loop, never inside it.
    func socketCalls(of queuePairs: [D.QueuePair]) -> Int? {
        var total = 0
        for queuePair in queuePairs {
            guard let tcp = queuePair as? TCPQueuePair else { return nil }
            let counters = tcp.counters
            total += counters.sendCalls + counters.sendmsgCalls + counters.receiveCalls
        }
        return total
    }
}

/// `after - before` when both were counted.
func difference(_ after: Int?, _ before: Int?) -> Int? {
    guard let after, let before else { return nil }
    return after - before
}

/// One cell of the plan's socket calls over its repetitions, each side,
/// and the messages they carried. A latency test's message is one
/// iteration (a request and its answer), warm-up included, since the
/// counters are read only around the whole loop. A side that was not
/// counted once stays uncounted.
struct CallTally {
    private var client: Int? = 0
    private var server: Int? = 0
    private var messages = 0

    mutating func add(client: Int?, server: Int?, messages: Int) {
        self.client = self.client.flatMap { total in client.map { total + $0 } }
        self.server = self.server.flatMap { total in server.map { total + $0 } }
        self.messages += messages
    }

    var clientPerMessage: Double? { client.map { Double($0) / Double(max(messages, 1)) } }
    var serverPerMessage: Double? { server.map { Double($0) / Double(max(messages, 1)) } }
}
