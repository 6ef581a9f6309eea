internal import CVerbs
import FabricCore
import FabricSupport
import Glibc
import Synchronization

/// An rdma_cm event channel with a deadline-bounded wait. A connection's
/// identifier lives on one of these while it is set up; whoever owns the
/// identifier keeps its channel alive, since an identifier must be destroyed
/// before its channel.
final class EventChannel: @unchecked Sendable {  // immutable
    let channel: UnsafeMutablePointer<rdma_event_channel>

    struct Event {
        var kind: rdma_cm_event_type
        var status: Int32
        var id: UnsafeMutablePointer<rdma_cm_id>?
        var privateData: [UInt8]
        var initiatorDepth: UInt8
        var responderResources: UInt8
    }

    init() throws(FabricError) {
        guard let channel = rdma_create_event_channel() else {
            throw FabricError(.unavailable, "rdma_cm is not available: \(VerbsError.text(errno)); \(VerbsProbe.howToCreateDevice)")
        }
        SystemCalls.setNonBlocking(channel.pointee.fd)
        self.channel = channel
    }

    deinit { rdma_destroy_event_channel(channel) }

    var fd: Int32 { channel.pointee.fd }

    /// The next event, or nil once `deadline` passed.
    func next(until deadline: ContinuousClock.Instant) throws(FabricError) -> Event? {
        while true {
            if let event = try poll() { return event }
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return nil }
            _ = SystemCalls.waitForInput(channel.pointee.fd, milliseconds: max(1, VerbsCompletionQueue.milliseconds(remaining)))
        }
    }

    /// The next event if one is waiting; never sleeps.
    func poll() throws(FabricError) -> Event? {
        while true {
            var raw: UnsafeMutablePointer<rdma_cm_event>?
            if rdma_get_cm_event(channel, &raw) == 0, let received = raw {
                let conn = received.pointee.param.conn
                var data: [UInt8] = []
                if let bytes = conn.private_data, conn.private_data_len > 0 {
                    data = Array(UnsafeRawBufferPointer(start: bytes, count: Int(conn.private_data_len)))
                }
                let event = Event(
                    kind: received.pointee.event, status: received.pointee.status, id: received.pointee.id,
                    privateData: data, initiatorDepth: conn.initiator_depth, responderResources: conn.responder_resources)
                rdma_ack_cm_event(received)
                return event
            }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else {
                throw VerbsError.system("reading an rdma_cm event")
            }
            return nil
        }
    }
}
