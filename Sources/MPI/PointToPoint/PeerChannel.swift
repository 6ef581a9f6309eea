import FabricCore

/// This rank's connection to one other rank: its queue pair and the flow
/// control between the two (its frames land in the engine's shared receive
/// slots). Made by the connection table (on first use, or when the peer
/// connects); its state belongs to the point-to-point engine, under the
/// engine's lock.
///
/// Its stored properties skip Swift's dynamic exclusivity checks, as the
/// engine's do (see `PointToPointEngine`).
final class PeerChannel<Device: FabricDevice>: @unchecked Sendable {  // set up before publication; afterwards touched only under the engine's lock
    /// The peer's world rank.
    let rank: Int
    /// Set once, before the channel is published.
    @exclusivity(unchecked) var queuePair: Device.QueuePair!

    /// Eager frames this rank may still send before the peer returns slots.
    @exclusivity(unchecked) var eagerCredits: Int
    /// Eager slots this rank has freed and not yet told the peer about.
    @exclusivity(unchecked) var creditsToReturn = 0
    /// Shared slots holding this peer's messages no receive has taken yet.
    @exclusivity(unchecked) var heldSlots = 0
    /// Frames waiting for a free control slot or room in the send queue,
    /// in the order they must leave.
    @exclusivity(unchecked) var waiting: [OutgoingFrame] = []
    /// Frames encoded and not yet posted, posted together as one list.
    @exclusivity(unchecked) var outbox: [SendWorkRequest] = []
    /// Rendezvous receives with READs still to issue, oldest first.
    @exclusivity(unchecked) var readQueue: [UInt32] = []
    /// Bytes of rendezvous READs posted and not completed.
    @exclusivity(unchecked) var readBytesInFlight = 0
    /// Why the connection is unusable, once it is.
    @exclusivity(unchecked) var failure: MPIError?
    /// Windows' WRITEs posted without a completion of their own, until a
    /// later signalled request on this connection covers them, and where
    /// the last of them went (a flush READs one byte there).
    @exclusivity(unchecked) var uncoveredWrites: [Int] = []
    @exclusivity(unchecked) var lastUncoveredWrite: RemoteMemory?

    /// A frame to send later: its header, and the bounce slot its payload
    /// waits in (nil: header only, sent from a control slot).
    struct OutgoingFrame {
        var header: MessageHeader
        var bounceSlot: Int?
        var frameLength: Int
    }

    init(rank: Int, eagerCredits: Int) {
        self.rank = rank
        self.eagerCredits = eagerCredits
        waiting.reserveCapacity(16)
        outbox.reserveCapacity(64)
        readQueue.reserveCapacity(16)
    }
}
