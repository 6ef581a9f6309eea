/// What a rank asks of its launcher, whichever protocol it speaks: the
/// server decodes PMI-1 lines and PMI-2 frames into these, and answers in
/// the protocol the rank chose.
public enum PMIRequest: Equatable, Sendable {
    case put(key: String, value: String)
    case fence
    case get(key: String)
    /// Job attributes: the process mapping, the universe size.
    case jobAttribute(key: String)
    /// PMI-2's abort carries no exit code: nil.
    case abort(exitCode: Int32?, message: String)
    case finalize
}

/// What the server tells its owner (the launcher) about its ranks.
public enum PMIServerEvent: Equatable, Sendable {
    /// Every local rank entered the fence; these are the values they put
    /// since the last one. The owner answers with `completeFence`, once
    /// every host's ranks are in.
    case fenceReady(puts: [String: String])
    /// A rank asked for the job to end.
    /// A rank asked for the job to end (with no exit code over PMI-2).
    case abort(rank: Int, exitCode: Int32?, message: String)
    /// A rank said goodbye (finalize).
    case finalized(rank: Int)
    /// A rank's connection closed or failed before it finalized, or it
    /// sent what is not PMI: the message says which and what.
    case failed(rank: Int, reason: String)
}
