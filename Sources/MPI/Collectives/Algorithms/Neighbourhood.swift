extension CollectiveSchedule {
    /// The neighbourhood collectives' one round: block k of `outgoing` to
    /// destination k and block k of `incoming` from source k, all at once;
    /// a missing neighbour (nil) is skipped and its block left as it was.
    /// Receives are posted in `receiveOrder` (see `Topology.receiveOrder`).
    mutating func neighbourExchange(
        _ outgoing: [Elements], to destinations: [Int?], _ incoming: [Elements], from sources: [Int?], receiveOrder: [Int]
    ) {
        nextRound()
        for index in receiveOrder {
            if let source = sources[index] { receive(incoming[index].receiveBuffer, from: source) }
        }
        for (block, destination) in zip(outgoing, destinations) {
            if let destination { send(block.sendBuffer, to: destination) }
        }
    }
}
