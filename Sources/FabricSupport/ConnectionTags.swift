/// The tie-break of crossing connects, as a table of this device's tagged
/// connections and connection attempts, with no I/O (both backends keep
/// one per device, behind a lock; the tests drive it alone).
///
/// Two processes that connect to each other with the same tag at the same
/// time must end with one queue pair for the tag. The rule, applied by each
/// side's listener to an incoming request of tag T from device P:
/// - an outgoing connect of ours with tag T to P that completed: refuse the
///   request (the connection that exists stands);
/// - one still in progress: the connect started by the lower instance wins:
///   refuse the request if ours is lower, let it through otherwise (then
///   P's listener refuses ours by the same rule);
/// - one that does not know yet whom it reached: wait until it does;
/// - none: let it through.
/// And by a connect of ours, once it learns it reached P: if a request of
/// tag T from P was already handed to the application, give up (the
/// application holds the connection for T). A device connecting to itself
/// is never a crossing.
package struct ConnectionTags: Sendable {
    package typealias RecordID = UInt64

    private enum Direction { case outgoing, incoming }
    private struct Record {
        var tag: UInt64
        var peer: UInt64?
        var direction: Direction
        /// Outgoing: connected. Incoming: handed to the application.
        var settled: Bool
    }
    private var records: [RecordID: Record] = [:]
    private var nextID: RecordID = 1
    package let ownInstance: UInt64

    package init(ownInstance: UInt64) { self.ownInstance = ownInstance }

    package enum IncomingDecision: Equatable { case deliver, refuse, wait }
    package enum OutgoingDecision: Equatable { case proceed, yield }

    /// How many records the table holds (tests; bounded-memory checks).
    package var count: Int { records.count }

    // MARK: Connects of ours

    /// A connect starts; `peer` is the device it is meant to reach, when
    /// known (a fabric address names it): a request of the same tag from it
    /// is then decided at once instead of waiting.
    package mutating func beginOutgoing(tag: UInt64, peer: UInt64? = nil) -> RecordID {
        insert(Record(tag: tag, peer: peer, direction: .outgoing, settled: false))
    }

    /// Our connect learned that device `peer` answered.
    package mutating func outgoing(_ id: RecordID, reached peer: UInt64) -> OutgoingDecision {
        guard var record = records[id] else { return .proceed }
        record.peer = peer
        records[id] = record
        guard peer != ownInstance else { return .proceed }
        let handedOver = records.values.contains { $0.direction == .incoming && $0.settled && $0.tag == record.tag && $0.peer == peer }
        return handedOver ? .yield : .proceed
    }

    /// Our connect completed: its queue pair exists.
    package mutating func outgoingConnected(_ id: RecordID) {
        records[id]?.settled = true
    }

    // MARK: Requests from others

    package func decide(incomingTag tag: UInt64, from peer: UInt64) -> IncomingDecision {
        guard peer != ownInstance else { return .deliver }
        var decision = IncomingDecision.deliver
        for record in records.values where record.direction == .outgoing && record.tag == tag {
            guard let reached = record.peer else {
                decision = .wait
                continue
            }
            guard reached == peer else { continue }
            if record.settled || ownInstance < peer { return .refuse }
        }
        return decision
    }

    /// A request let through is handed to the application.
    package mutating func delivered(incomingTag tag: UInt64, from peer: UInt64) -> RecordID {
        insert(Record(tag: tag, peer: peer, direction: .incoming, settled: true))
    }

    /// A connect that failed, a request that was rejected, or a queue pair
    /// that is gone.
    package mutating func remove(_ id: RecordID) {
        records[id] = nil
    }

    private mutating func insert(_ record: Record) -> RecordID {
        let id = nextID
        nextID += 1
        records[id] = record
        return id
    }
}
