/// Events about objects rather than work requests (verbs: `ibv_async_event`).
public struct AsyncEvent: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable {
        /// The queue pair went to the error state.
        case queuePairFatal
        /// The connection to the peer is gone (closed, reset, timed out).
        case peerGone
        /// A completion queue had no room for a completion.
        case completionQueueOverrun
    }

    public var kind: Kind
    public var queuePair: QueuePairNumber?
    public var detail: CompletionDetail

    public init(kind: Kind, queuePair: QueuePairNumber?, detail: CompletionDetail) {
        self.kind = kind
        self.queuePair = queuePair
        self.detail = detail
    }

    public var description: String {
        var text = kind.rawValue
        if let queuePair { text += " on \(queuePair)" }
        if detail != .none { text += ": \(detail)" }
        return text
    }
}
