/// What went wrong talking to a launcher's process-management interface:
/// a value that says what and why, with a kind that code and tests match.
public struct PMIError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The peer sent bytes that are not a message of the protocol.
        case malformedMessage
        /// A message was well formed but not what the exchange expects.
        case unexpectedReply
        /// The server answered with a non-zero return code.
        case refused
        /// A key-value get found no value for the key.
        case keyNotFound
        /// The connection closed, or a read or write on it failed.
        case connectionLost
        /// No reply came within the time allowed.
        case timedOut
        /// The environment names a launcher but its variables are missing,
        /// malformed, or contradict each other.
        case badEnvironment
        /// A key or value that the protocol cannot carry.
        case invalidArgument
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
