import Fabric

/// Connects to every peer in `peers` and accepts `incoming` requests on
/// `listener`, all from this thread, without waiting on any one peer: a
/// slow or silent peer delays no other. Returns a queue pair per peer.
/// (The README's second example; it spins where an event loop would sleep
/// on the attempts' and the listener's file descriptors.)
func connectAll<D: FabricDevice>(
    to peers: [Endpoint], accepting incoming: Int, on listener: D.Listener, of device: D, _ setup: QueuePairSetup<D>
) throws(FabricError) -> [D.QueuePair] {
    var attempts = try peers.map { peer throws(FabricError) in
        try device.startConnect(to: peer, setup, options: ConnectOptions()) { _ in }
    }
    var queuePairs: [D.QueuePair] = []
    var accepted = 0
    while !attempts.isEmpty || accepted < incoming {
        // `.zero`: only look, moving every handshake in progress.
        if accepted < incoming, let request = try listener.next(timeout: .zero) {
            queuePairs.append(try request.accept(setup, privateData: []) { _ in })
            accepted += 1
        }
        var pending: [D.ConnectAttempt] = []
        for attempt in attempts {
            if let (queuePair, _) = try attempt.advance() {
                queuePairs.append(queuePair)
            } else {
                pending.append(attempt)  // still in progress
            }
        }
        attempts = pending
    }
    return queuePairs
}
