/// The neighbourhood collectives (MPI_Neighbor_allgather and
/// MPI_Neighbor_alltoall with their v and w forms, blocking and
/// nonblocking) on a communicator with a topology: each rank exchanges
/// blocks only with its neighbours, block k going to destination k and
/// block k coming from source k (`MPIRuntime.neighbours(on:)`). Buffers
/// hold one block per neighbour; MPI has no in-place form of these.
extension MPIRuntime {
    /// This rank's `count` elements at `send` to every destination; the
    /// block of source k into block k of `receive` (MPI_Neighbor_allgather).
    public func neighbourAllgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) {
        _ = try wait(try startNeighbourAllgather(send, count: count, datatype: datatype, into: receive, receiveCount: receiveCount,
                                                 receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Ineighbor_allgather.
    public func startNeighbourAllgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) -> Request {
        try startNeighbourhood("a neighbour allgather", on: communicator) { (schedule, sources, destinations) throws(MPIError) in
            let block = try input(send, count, datatype, orIn: nil, schedule.name)
            let counts = Array(repeating: receiveCount, count: sources.count)
            return (Array(repeating: block, count: destinations.count),
                    try blocks(receive, counts, equalBlocks(counts), receiveDatatype, "\(schedule.name)'s receive buffer"))
        }
    }

    /// The block of source k into `receive` at `displacements[k]`
    /// extents, `receiveCounts[k]` elements (MPI_Neighbor_allgatherv).
    public func neighbourAllgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], displacements: [Int], receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) {
        _ = try wait(try startNeighbourAllgather(send, count: count, datatype: datatype, into: receive, receiveCounts: receiveCounts,
                                                 displacements: displacements, receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Ineighbor_allgatherv.
    public func startNeighbourAllgather(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], displacements: [Int], receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) -> Request {
        try startNeighbourhood("a neighbour allgatherv", on: communicator) { (schedule, sources, destinations) throws(MPIError) in
            let block = try input(send, count, datatype, orIn: nil, schedule.name)
            try checkNeighbourCounts(receiveCounts, sources.count, "receive counts", schedule)
            return (Array(repeating: block, count: destinations.count),
                    try blocks(receive, receiveCounts, displacements, receiveDatatype, "\(schedule.name)'s receive buffer"))
        }
    }

    /// Block k of `send` (`count` elements each) to destination k; the
    /// block of source k into block k of `receive` (MPI_Neighbor_alltoall).
    public func neighbourAllToAll(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) {
        _ = try wait(try startNeighbourAllToAll(send, count: count, datatype: datatype, into: receive, receiveCount: receiveCount,
                                                receiveDatatype: receiveDatatype, on: communicator))
    }

    /// MPI_Ineighbor_alltoall.
    public func startNeighbourAllToAll(
        _ send: UnsafeRawPointer?, count: Int, datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCount: Int, receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) -> Request {
        try startNeighbourhood("a neighbour all-to-all", on: communicator) { (schedule, sources, destinations) throws(MPIError) in
            let sendCounts = Array(repeating: count, count: destinations.count)
            let receiveCounts = Array(repeating: receiveCount, count: sources.count)
            return (try blocks(send, sendCounts, equalBlocks(sendCounts), datatype, "\(schedule.name)'s send buffer"),
                    try blocks(receive, receiveCounts, equalBlocks(receiveCounts), receiveDatatype, "\(schedule.name)'s receive buffer"))
        }
    }

    /// Blocks of their own counts at their own displacements (in
    /// extents) on both sides (MPI_Neighbor_alltoallv).
    public func neighbourAllToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendDisplacements: [Int], datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveDisplacements: [Int], receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) {
        _ = try wait(try startNeighbourAllToAll(send, sendCounts: sendCounts, sendDisplacements: sendDisplacements, datatype: datatype, into: receive,
                                                receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements, receiveDatatype: receiveDatatype,
                                                on: communicator))
    }

    /// MPI_Ineighbor_alltoallv.
    public func startNeighbourAllToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendDisplacements: [Int], datatype: Datatype,
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveDisplacements: [Int], receiveDatatype: Datatype, on communicator: Communicator
    ) throws(MPIError) -> Request {
        try startNeighbourhood("a neighbour all-to-allv", on: communicator) { (schedule, sources, destinations) throws(MPIError) in
            try checkNeighbourCounts(sendCounts, destinations.count, "send counts", schedule)
            try checkNeighbourCounts(receiveCounts, sources.count, "receive counts", schedule)
            return (try blocks(send, sendCounts, sendDisplacements, datatype, "\(schedule.name)'s send buffer"),
                    try blocks(receive, receiveCounts, receiveDisplacements, receiveDatatype, "\(schedule.name)'s receive buffer"))
        }
    }

    /// Every block with a datatype of its own, at a displacement in bytes
    /// (MPI_Neighbor_alltoallw).
    public func neighbourAllToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendByteDisplacements: [Int], sendDatatypes: [Datatype],
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveByteDisplacements: [Int], receiveDatatypes: [Datatype],
        on communicator: Communicator
    ) throws(MPIError) {
        _ = try wait(try startNeighbourAllToAll(send, sendCounts: sendCounts, sendByteDisplacements: sendByteDisplacements, sendDatatypes: sendDatatypes,
                                                into: receive, receiveCounts: receiveCounts, receiveByteDisplacements: receiveByteDisplacements,
                                                receiveDatatypes: receiveDatatypes, on: communicator))
    }

    /// MPI_Ineighbor_alltoallw.
    public func startNeighbourAllToAll(
        _ send: UnsafeRawPointer?, sendCounts: [Int], sendByteDisplacements: [Int], sendDatatypes: [Datatype],
        into receive: UnsafeMutableRawPointer?, receiveCounts: [Int], receiveByteDisplacements: [Int], receiveDatatypes: [Datatype],
        on communicator: Communicator
    ) throws(MPIError) -> Request {
        try startNeighbourhood("a neighbour all-to-allw", on: communicator) { (schedule, sources, destinations) throws(MPIError) in
            try checkNeighbourCounts(sendCounts, destinations.count, "send counts", schedule)
            try checkNeighbourCounts(receiveCounts, sources.count, "receive counts", schedule)
            return (try typedBlocks(send, sendCounts, sendByteDisplacements, sendDatatypes, "\(schedule.name)'s send buffer"),
                    try typedBlocks(receive, receiveCounts, receiveByteDisplacements, receiveDatatypes, "\(schedule.name)'s receive buffer"))
        }
    }

    // MARK: - Starting

    /// A neighbourhood collective: `blocks` lays out the outgoing and
    /// incoming blocks, given this rank's sources and destinations.
    private func startNeighbourhood(
        _ name: String, on communicator: Communicator,
        _ blocks: (CollectiveSchedule, _ sources: [Int?], _ destinations: [Int?]) throws(MPIError) -> (outgoing: [Elements], incoming: [Elements])
    ) throws(MPIError) -> Request {
        try startCollective(name, on: communicator) { (schedule) throws(MPIError) in
            let topology = try requireTopology(of: communicator, for: name)
            let sources = topology.sources(of: schedule.rank)
            let destinations = topology.destinations(of: schedule.rank)
            let (outgoing, incoming) = try blocks(schedule, sources, destinations)
            schedule.neighbourExchange(outgoing, to: destinations, incoming, from: sources, receiveOrder: topology.receiveOrder(count: sources.count))
        }
    }

    /// One count per neighbour, none negative.
    private func checkNeighbourCounts(_ counts: [Int], _ neighbours: Int, _ what: String, _ schedule: CollectiveSchedule) throws(MPIError) {
        guard counts.count == neighbours else {
            throw MPIError(.invalidArgument, "\(schedule.name) with \(counts.count) \(what) where rank \(schedule.rank) of \(schedule.communicator) has \(neighbours) neighbours that way")
        }
        if let negative = counts.first(where: { $0 < 0 }) {
            throw MPIError(.invalidArgument, "\(schedule.name) with a negative count (\(negative)) among its \(what)")
        }
    }
}
