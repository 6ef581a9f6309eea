/// MPI's matching: receives posted and not yet matched, and messages
/// arrived and not yet received, each in order. A message takes the
/// oldest posted receive that accepts it, and a receive the oldest
/// arrived message it accepts; with one connection per pair of ranks,
/// delivering frames in arrival order keeps MPI's non-overtaking rule.
struct MatchingQueues {
    /// What a receive or probe accepts.
    struct Selector {
        var context: UInt32
        /// Rank in the communicator, or -1 for any.
        var source: Int
        /// Tag, or -1 for any.
        var tag: Int

        func accepts(context: UInt32, source: Int, tag: Int) -> Bool {
            self.context == context && (self.source == -1 || self.source == source) && (self.tag == -1 || self.tag == tag)
        }
    }

    struct PostedReceive {
        var selector: Selector
        var request: UInt32
    }

    /// Where an arrived message's payload waits.
    enum Payload {
        /// In the connection's receive slot (not yet copied).
        case inSlot(Int)
        /// Copied out of its slot, to let the slot go.
        case copied([UInt8])
        /// At the sender, to be read (a rendezvous request).
        case remote(address: UInt64, key: UInt32)
        /// A send of this rank to itself, not yet completed: request index.
        case local(UInt32)
    }

    struct ArrivedMessage {
        var context: UInt32
        var source: Int
        var tag: Int
        var length: Int
        /// The world rank of the sender.
        var peer: Int
        var synchronous: Bool
        var cookie: UInt64
        var payload: Payload
    }

    private(set) var posted: [PostedReceive] = []
    private(set) var arrived: [ArrivedMessage] = []

    init() {
        posted.reserveCapacity(64)
        arrived.reserveCapacity(64)
    }

    /// The oldest posted receive that accepts the message, taken off the queue.
    mutating func takePosted(context: UInt32, source: Int, tag: Int) -> UInt32? {
        guard let position = posted.firstIndex(where: { $0.selector.accepts(context: context, source: source, tag: tag) }) else { return nil }
        return posted.remove(at: position).request
    }

    /// The oldest arrived message `selector` accepts, taken off the queue.
    mutating func takeArrived(_ selector: Selector) -> ArrivedMessage? {
        guard let position = arrived.firstIndex(where: { selector.accepts(context: $0.context, source: $0.source, tag: $0.tag) }) else { return nil }
        return arrived.remove(at: position)
    }

    /// The oldest arrived message `selector` accepts, left in place (probe).
    func peekArrived(_ selector: Selector) -> ArrivedMessage? {
        arrived.first { selector.accepts(context: $0.context, source: $0.source, tag: $0.tag) }
    }

    mutating func post(_ receive: PostedReceive) { posted.append(receive) }

    mutating func arrive(_ message: ArrivedMessage) { arrived.append(message) }

    /// Takes receive `request` off the posted queue; false if it is not
    /// there (matched already).
    mutating func removePosted(request: UInt32) -> Bool {
        guard let position = posted.firstIndex(where: { $0.request == request }) else { return false }
        posted.remove(at: position)
        return true
    }

    /// Forgets posted receives that `isGone` says have completed otherwise
    /// (their peer failed).
    mutating func removePosted(where isGone: (UInt32) -> Bool) {
        posted.removeAll { isGone($0.request) }
    }

    /// Drops the rendezvous requests of `peer`, whose payload can no
    /// longer be read (eager payloads that arrived stay receivable).
    mutating func dropRemote(from peer: Int) {
        arrived.removeAll { message in
            guard message.peer == peer, case .remote = message.payload else { return false }
            return true
        }
    }
}
