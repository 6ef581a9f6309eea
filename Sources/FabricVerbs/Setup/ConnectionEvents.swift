internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Logging
import Synchronization

/// One established connection, as the event thread knows it.
final class ConnectionRecord: @unchecked Sendable {  // immutable; `closedLocally` is atomic
    let id: UnsafeMutablePointer<rdma_cm_id>
    let qp: UnsafeMutablePointer<ibv_qp>
    let number: QueuePairNumber
    /// Set when our side disconnected: its DISCONNECTED event is no news.
    let closedLocally = Atomic<Bool>(false)

    init(id: UnsafeMutablePointer<rdma_cm_id>, qp: UnsafeMutablePointer<ibv_qp>) {
        self.id = id
        self.qp = qp
        number = QueuePairNumber(rawValue: qp.pointee.qp_num)
    }

    /// Moves the queue pair to the error state: everything outstanding
    /// completes as flushed, like on a card whose peer went away.
    func enterError() {
        var attributes = ibv_qp_attr()
        attributes.qp_state = IBV_QPS_ERR
        _ = ibv_modify_qp(qp, &attributes, Int32(IBV_QP_STATE.rawValue))
    }
}

/// Follows established connections without the application's help. A
/// thread sleeps on the connection manager's event channel (peers that
/// disconnect) and on the device's asynchronous events (queue pairs the
/// device declared fatal); it moves the queue pair to the error state and
/// queues an `AsyncEvent`. It costs the data path nothing.
final class ConnectionEvents: @unchecked Sendable {  // mutable state is behind `state`
    /// Established connections' identifiers are moved to this channel.
    let channel: UnsafeMutablePointer<rdma_event_channel>
    private let context: UnsafeMutablePointer<ibv_context>
    /// A pipe whose write end ends the thread.
    private let wake: WakePipe
    private let logger: Logger
    private var thread: SystemThread?

    private struct State {
        var connections: [UInt: ConnectionRecord] = [:]
        var pending: [AsyncEvent] = []
    }
    private let state = Mutex(State())

    /// Queue pairs of every device of the process, for the device's
    /// asynchronous events (one context serves every device object opened
    /// on it, so any of their threads may read an event). Numbers are unique
    /// per device only, hence the context in the key.
    private static let owners = Mutex<[OwnerKey: Owner]>([:])
    private struct Owner { weak var events: ConnectionEvents? }
    private struct OwnerKey: Hashable {
        var context: UInt
        var number: UInt32
    }

    init(context: UnsafeMutablePointer<ibv_context>, logger: Logger) throws(FabricError) {
        self.context = context
        self.logger = logger
        guard let channel = rdma_create_event_channel() else {
            throw VerbsError.system("creating an rdma_cm event channel")
        }
        self.channel = channel
        switch WakePipe.make() {
        case .success(let pipe): wake = pipe
        case .failure(let code):
            rdma_destroy_event_channel(channel)
            throw VerbsError.system("creating a pipe", code.rawValue)
        }
        SystemCalls.setNonBlocking(channel.pointee.fd)
        SystemCalls.setNonBlocking(context.pointee.async_fd)
        switch SystemThread.start({ self.run() }) {
        case .success(let started): thread = started
        case .failure(let failure):
            wake.close()
            rdma_destroy_event_channel(channel)
            throw VerbsError.system("starting the connection event thread", failure.code)
        }
    }

    /// Ends the thread; called when the device goes.
    func stop() {
        wake.signal()
        thread?.join()
        wake.close()
        rdma_destroy_event_channel(channel)
    }

    func add(_ record: ConnectionRecord) {
        state.withLock { $0.connections[UInt(bitPattern: record.id)] = record }
        Self.owners.withLock { $0[OwnerKey(context: UInt(bitPattern: context), number: record.number.rawValue)] = Owner(events: self) }
    }

    func remove(_ record: ConnectionRecord) {
        state.withLock { _ = $0.connections.removeValue(forKey: UInt(bitPattern: record.id)) }
        Self.owners.withLock { _ = $0.removeValue(forKey: OwnerKey(context: UInt(bitPattern: context), number: record.number.rawValue)) }
    }

    func post(_ event: AsyncEvent) {
        state.withLock { $0.pending.append(event) }
    }

    func nextEvent() -> AsyncEvent? {
        state.withLock { $0.pending.isEmpty ? nil : $0.pending.removeFirst() }
    }

    private func run() {
        var descriptors = [
            pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: context.pointee.async_fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            let ready = descriptors.withUnsafeMutableBufferPointer { SystemCalls.poll($0.baseAddress!, $0.count, milliseconds: -1) }
            if ready == 0 { continue }
            if descriptors[2].revents != 0 { return }
            drainConnectionEvents()
            drainDeviceEvents()
        }
    }

    private func drainConnectionEvents() {
        var event: UnsafeMutablePointer<rdma_cm_event>?
        while rdma_get_cm_event(channel, &event) == 0, let received = event {
            let kind = received.pointee.event
            // Handled before the event is acknowledged: until then its
            // identifier cannot be destroyed, so its address cannot be
            // reused by another connection. Under the lock: a queue pair
            // being destroyed removes its record under the same lock first,
            // so its handle is valid here.
            if let id = received.pointee.id {
                state.withLock { state in
                    guard let record = state.connections[UInt(bitPattern: id)] else { return }
                    switch kind {
                    case RDMA_CM_EVENT_DISCONNECTED:
                        if !record.closedLocally.load(ordering: .acquiring) {
                            record.enterError()
                            rdma_disconnect(record.id)
                            state.pending.append(AsyncEvent(kind: .peerGone, queuePair: record.number, detail: .peerClosedConnection))
                        }
                    case RDMA_CM_EVENT_REJECTED, RDMA_CM_EVENT_CONNECT_ERROR, RDMA_CM_EVENT_UNREACHABLE:
                        // An accepted requester that refused our accept or
                        // never confirmed it.
                        record.enterError()
                        state.pending.append(AsyncEvent(kind: .peerGone, queuePair: record.number, detail: .peerClosedConnection))
                    case RDMA_CM_EVENT_DEVICE_REMOVAL:
                        record.enterError()
                        state.pending.append(AsyncEvent(kind: .queuePairFatal, queuePair: record.number, detail: .disconnected))
                    default:
                        break
                    }
                }
            }
            rdma_ack_cm_event(received)
        }
    }

    private func drainDeviceEvents() {
        var event = ibv_async_event()
        while ibv_get_async_event(context, &event) == 0 {
            switch event.event_type {
            case IBV_EVENT_QP_FATAL, IBV_EVENT_QP_REQ_ERR, IBV_EVENT_QP_ACCESS_ERR:
                if let qp = event.element.qp {
                    let number = qp.pointee.qp_num
                    let key = OwnerKey(context: UInt(bitPattern: context), number: number)
                    let owner = Self.owners.withLock { $0[key]?.events }
                    owner?.post(AsyncEvent(kind: .queuePairFatal, queuePair: QueuePairNumber(rawValue: number), detail: .queuePairInError))
                }
            case IBV_EVENT_CQ_ERR:
                // The completion queue does not say which device object it
                // belongs to; every object on this context hears of it.
                logger.error("a completion queue of the RDMA device overflowed; completions were lost")
                post(AsyncEvent(kind: .completionQueueOverrun, queuePair: nil, detail: .completionQueueOverrun))
            default:
                break
            }
            ibv_ack_async_event(&event)
        }
    }
}
