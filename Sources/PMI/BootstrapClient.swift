/// A rank's view of the launcher that started it: who it is in the job,
/// and the job's key-value space, in which each rank publishes what the
/// others need (its fabric address) before a fence and reads theirs after.
///
/// One client per process; not for use from several threads at once.
public protocol BootstrapClient: AnyObject {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// The number of ranks in the job.
    var size: Int { get }
    /// Which protocol and transport, for messages: "PMI-2 over PMI_FD".
    var protocolName: String { get }

    /// Publishes `value` under `key` in the job's key-value space; others
    /// can read it after the next fence.
    func put(key: String, value: String) throws(PMIError)
    /// Waits until every rank has reached its fence; values put before it
    /// are then visible to all.
    func fence() throws(PMIError)
    /// A value another rank put before a fence both passed.
    /// Throws `keyNotFound` when nobody put `key`.
    func get(key: String) throws(PMIError) -> String
    /// Asks the launcher to end the whole job with `exitCode`.
    func abort(exitCode: Int32, message: String)
    /// Tells the launcher this rank is done with it, and closes the
    /// connection.
    func finalize() throws(PMIError)
}

/// How long a client waits for each kind of reply.
public struct BootstrapTimeouts: Sendable, Hashable {
    /// A request the server answers at once (put, get, init).
    public var request: Duration
    /// A fence: it lasts until the slowest rank arrives.
    public var fence: Duration

    public init(request: Duration = .seconds(60), fence: Duration = .seconds(600)) {
        self.request = request
        self.fence = fence
    }
}
