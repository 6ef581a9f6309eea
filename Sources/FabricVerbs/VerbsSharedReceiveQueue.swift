internal import CVerbs
import FabricCore
@_spi(FabricInternals) import FabricSupport
import Glibc
import Synchronization

/// A shared receive queue (ibv_srq).
public final class VerbsSharedReceiveQueue: FabricSharedReceiveQueue, @unchecked Sendable {  // mutable state is behind `slots`
    let domain: VerbsProtectionDomain
    let srq: UnsafeMutablePointer<ibv_srq>
    let slots: Mutex<SharedReceiveSlots>
    let maxScatterEntries: Int
    /// Names the queue in work request ids (see WorkTables.swift).
    let index: UInt32

    private static let nextIndex = Atomic<UInt32>(0)

    init(domain: VerbsProtectionDomain, capacity: Int, maxScatterEntries: Int) throws(FabricError) {
        self.domain = domain
        self.maxScatterEntries = maxScatterEntries
        index = Self.nextIndex.wrappingAdd(1, ordering: .relaxed).oldValue & 0x3FFF_FFFF
        var attributes = ibv_srq_init_attr()
        attributes.attr.max_wr = UInt32(capacity)
        attributes.attr.max_sge = UInt32(maxScatterEntries)
        guard let srq = ibv_create_srq(domain.pd, &attributes) else {
            throw VerbsError.system("creating a shared receive queue of \(capacity) entries")
        }
        self.srq = srq
        slots = Mutex(SharedReceiveSlots(capacity: capacity, maxElements: maxScatterEntries))
    }

    deinit {
        if !domain.device.forkDetection.isForkedChild { ibv_destroy_srq(srq) }
    }

    public func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult {
        try domain.device.forkDetection.checkNotForked()
        try WorkRequestValidation.check(sharedReceive: request, maxScatterEntries: maxScatterEntries)
        return try slots.withLock { (slots) throws(FabricError) -> PostResult in
            guard let slot = slots.take(request.id) else { return .wouldBlock }
            let wr = slots.scratch.receive(request.local, id: WorkRequestTag.receive | WorkRequestTag.shared | (UInt64(index) << 32) | UInt64(slot))
            var bad: UnsafeMutablePointer<ibv_recv_wr>?
            let code = ibv_post_srq_recv(srq, wr, &bad)
            if code == 0 { return .posted }
            slots.giveBack(slot)
            if code == ENOMEM { return .wouldBlock }
            throw VerbsError.system("posting to the shared receive queue", code)
        }
    }
}
