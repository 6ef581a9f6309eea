import FabricCore

/// This rank's connection to one other rank: its queue pair and the flow
/// control between the two (its frames land in the engine's shared receive
/// slots). Made by the connection table (on first use, or when the peer
/// connects); its state belongs to the point-to-point engine, under the
/// engine's lock.
final class PeerChannel<Device: FabricDevice>: @unchecked Sendable {  // set up before publication; afterwards touched only under the engine's lock
    /// The peer's world rank.
    let rank: Int
    /// Set once, before the channel is published.
    var queuePair: Device.QueuePair!

    /// Eager frames this rank may still send before the peer returns slots.
    var eagerCredits: Int
    /// Eager slots this rank has freed and not yet told the peer about.
    var creditsToReturn = 0
    /// Shared slots holding this peer's messages no receive has taken yet.
    var heldSlots = 0
    /// Frames waiting for a free control slot or room in the send queue,
    /// in the order they must leave.
    var waiting: [OutgoingFrame] = []
    /// Frames encoded and not yet posted, posted together as one list.
    var outbox: [SendWorkRequest] = []
    /// Rendezvous receives with READs still to issue, oldest first.
    var readQueue: [UInt32] = []
    /// Bytes of rendezvous READs posted and not completed.
    var readBytesInFlight = 0
    /// Why the connection is unusable, once it is.
    var failure: MPIError?

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
