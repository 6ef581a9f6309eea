import FabricCore

/// A shared receive queue of the software NIC (verbs: `ibv_srq`).
public final class TCPSharedReceiveQueue: FabricSharedReceiveQueue, @unchecked Sendable {  // ring behind a lock
    let ring: Locked<ReceiveRing>
    let domain: TCPProtectionDomain
    let table: RegionTable
    let maxElements: Int

    init(domain: TCPProtectionDomain, table: RegionTable, capacity: Int, maxElements: Int) {
        self.domain = domain
        self.table = table
        self.maxElements = maxElements
        ring = Locked(ReceiveRing(depth: capacity, maxElements: maxElements))
    }

    public func postReceive(_ request: ReceiveWorkRequest) throws(FabricError) -> PostResult {
        try WorkRequestValidation.check(sharedReceive: request, maxScatterEntries: maxElements)
        let domainID = ObjectIdentifier(domain)
        let outcome: Result<PostResult, FabricError> = ring.withLock { ring in
            if ring.isFull { return .success(.wouldBlock) }
            if let detail = ring.post(request, table: table, domain: domainID) {
                return .failure(FabricError(.invalidArgument, "receive \(request.id): \(detail)"))
            }
            return .success(.posted)
        }
        return try outcome.get()
    }
}
