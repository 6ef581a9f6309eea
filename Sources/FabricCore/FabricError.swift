/// Errors from setup and posting: values that say what was wrong and why.
/// (Errors of work that was accepted come back as completion statuses.)
public struct FabricError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// An argument was not acceptable; the message names it.
        case invalidArgument
        /// A device, queue or table limit was reached.
        case limitExceeded
        /// The object is not in a state that allows this (for example posting
        /// a send on a queue pair that is not connected).
        case invalidState
        /// The requested backend or device is not there.
        case unavailable
        /// Connection setup failed: refused, unreachable, timed out.
        case connectionFailed
        /// The peer could not prove it knows the job secret, or we could not.
        case authenticationFailed
        /// The peer speaks another protocol or version.
        case protocolMismatch
        /// A timeout passed.
        case timedOut
        /// Two processes connected to each other with the same connection
        /// tag at the same time, and the other connection won the tie-break:
        /// this attempt made no queue pair; the peer's connection request
        /// (or, on the other side, its connect) gives the one queue pair for
        /// the tag. See `ConnectOptions.tag`.
        case crossedConnection
        /// The device that answered is not the one the fabric address
        /// names (`ConnectOptions.expectedInstance`): the address is stale,
        /// its process gone and the port taken by another.
        case unexpectedPeer
        /// The task waiting for it was cancelled.
        case cancelled
        /// A system call failed; the message carries errno's text.
        case system(errno: Int32)
    }

    public var kind: Kind
    public var message: String
    /// For a work request that posting refused: the rule it broke (the
    /// same on every backend; `WorkRequestValidation`). Nil otherwise.
    public var workRequestRule: WorkRequestRule?

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
        workRequestRule = nil
    }

    public init(_ kind: Kind, _ message: String, rule: WorkRequestRule) {
        self.kind = kind
        self.message = message
        workRequestRule = rule
    }

    public var description: String { message }
}
