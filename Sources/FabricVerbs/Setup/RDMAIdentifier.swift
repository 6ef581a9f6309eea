internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport

/// The owner of one rdma_cm identifier: the only code that destroys it,
/// exactly once, when the last holder lets go (a connect attempt, a listener,
/// a connection request, then the queue pair that took the connection over).
/// It keeps alive whatever owns the event channel the identifier is on, since
/// an identifier must be destroyed before its channel. In a fork() child the
/// identifier is the parent's: it is left alone.
final class RDMAIdentifier: @unchecked Sendable {  // `channelOwner` changes only in `migrate`, on the one thread that sets the connection up
    let id: UnsafeMutablePointer<rdma_cm_id>
    /// What keeps the identifier's current event channel alive.
    private var channelOwner: AnyObject
    private let forkDetection: ForkDetection

    /// A new identifier on `channel`.
    init(on channel: EventChannel, forkDetection: ForkDetection) throws(FabricError) {
        var created: UnsafeMutablePointer<rdma_cm_id>?
        guard rdma_create_id(channel.channel, &created, nil, RDMA_PS_TCP) == 0, let id = created else {
            throw VerbsError.system("creating an rdma_cm identifier")
        }
        self.id = id
        channelOwner = channel
        self.forkDetection = forkDetection
    }

    /// Takes over an identifier rdma_cm made for a connect request that
    /// arrived on `channel`.
    init(adopting id: UnsafeMutablePointer<rdma_cm_id>, arrivedOn channel: EventChannel, forkDetection: ForkDetection) {
        self.id = id
        channelOwner = channel
        self.forkDetection = forkDetection
    }

    /// Moves the identifier's events to `channel`, which `owner` keeps
    /// alive; the identifier keeps `owner` from then on.
    func migrate(to channel: UnsafeMutablePointer<rdma_event_channel>, keptAliveBy owner: AnyObject) -> Bool {
        guard rdma_migrate_id(id, channel) == 0 else { return false }
        channelOwner = owner
        return true
    }

    deinit {
        if !forkDetection.isForkedChild { rdma_destroy_id(id) }
    }
}
