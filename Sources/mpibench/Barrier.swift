import MPI

/// What the benchmark needs of collectives before the MPI layer has them:
/// a barrier and a gather of a few numbers to rank 0, over point-to-point
/// on a tag the measured loops never use.
struct Coordination {
    let mpi: MPIRuntime
    static let tag = MessageTag.upperBound

    /// Every rank waits for every other: all report to rank 0, which then
    /// releases all.
    func barrier() throws {
        _ = try gather([0])
    }

    /// Rank 0 gets every rank's `values` (in rank order); the others get [].
    func gather(_ values: [Double]) throws -> [[Double]] {
        let tag = Self.tag
        if mpi.rank == 0 {
            var all = [values]
            for peer in 1..<mpi.size {
                let (received, _) = try mpi.receive(Double.self, count: values.count, from: MessageSource(peer), tag: MessageTag(tag))
                all.append(received)
            }
            for peer in 1..<mpi.size { try mpi.send([0.0], to: peer, tag: tag) }
            return all
        }
        try mpi.send(values, to: 0, tag: tag)
        _ = try mpi.receive(Double.self, count: 1, from: 0, tag: MessageTag(tag))
        return []
    }
}
