import FabricCore

/// This rank's connection to one other rank: its queue pair, the receive
/// slots posted on it, and the flow control between the two. Made by the
/// connection table (on first use, or when the peer connects); its state
/// belongs to the point-to-point engine, under the engine's lock.
final class PeerChannel<Device: FabricDevice>: @unchecked Sendable {  // set up before publication; afterwards touched only under the engine's lock
    /// The peer's world rank.
    let rank: Int
    let slots: SlotPool<Device>
    /// Set once, before the channel is published.
    var queuePair: Device.QueuePair!

    /// Eager frames this rank may still send before the peer returns slots.
    var eagerCredits: Int
    /// Eager slots this rank has freed and not yet told the peer about.
    var creditsToReturn = 0
    /// Eager slots holding messages no receive has taken yet.
    var heldSlots = 0
    /// Frames waiting for a free control slot or room in the send queue,
    /// in the order they must leave.
    var waiting: [OutgoingFrame] = []
    /// Rendezvous receives with READs still to issue, oldest first.
    var readQueue: [UInt32] = []
    var readsInFlight = 0
    /// Why the connection is unusable, once it is.
    var failure: MPIError?

    /// A frame to send later: its header, and the bounce slot its payload
    /// waits in (nil: header only, sent from a control slot).
    struct OutgoingFrame {
        var header: MessageHeader
        var bounceSlot: Int?
        var frameLength: Int
    }

    init(rank: Int, slots: SlotPool<Device>, eagerCredits: Int) {
        self.rank = rank
        self.slots = slots
        self.eagerCredits = eagerCredits
        waiting.reserveCapacity(16)
        readQueue.reserveCapacity(16)
    }

    /// Posts receive slot `slot` (again).
    func post(slot: Int) throws(FabricError) {
        let request = ReceiveWorkRequest(id: WorkRequestID.receiveSlot(slot).encoded, local: .single(slots.element(slot, length: slots.slotSize)))
        guard try queuePair.postReceive(request) == .posted else {
            throw FabricError(.limitExceeded, "the receive queue of the connection to rank \(rank) is full")
        }
    }

    func postAllSlots() throws(FabricError) {
        for slot in 0..<slots.count { try post(slot: slot) }
    }
}
