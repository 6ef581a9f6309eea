/// What the point-to-point layer did, counted since initialisation: the
/// figures behind the "no copies" promise and the protocol choices.
public struct PointToPointStatistics: Hashable, Sendable, Codable {
    /// Payload bytes the MPI layer copied: into a bounce slot for an eager
    /// send, out of a receive slot into the receiver's buffer, out of a
    /// slot to hold an unexpected message, or between two buffers of a
    /// send to this rank itself. Rendezvous of contiguous data copies none.
    public var copiedBytes = 0
    /// Messages sent eagerly (header and payload in one frame).
    public var eagerSends = 0
    /// Messages whose payload the receiver read from the sender's buffer.
    public var rendezvousSends = 0
    /// Eager-sized messages sent as a rendezvous from their bounce copy,
    /// because the receiver had no eager slot free for this rank.
    public var rendezvousFromCopy = 0
    /// Registrations of user buffers (one per rendezvous side until the
    /// registration cache).
    public var registrations = 0
    /// Messages that arrived before a receive accepted them.
    public var unexpectedMessages = 0
    /// Unexpected eager messages copied out of their slot.
    public var unexpectedCopies = 0
    /// Frames sent only to return eager slots.
    public var creditFrames = 0
    /// Window memory registered now (window memory, control blocks,
    /// attachment lists, attached ranges): back to what it was once the
    /// windows are freed and their keys revoked.
    public var windowRegistrations = 0

    public init() {}
}
