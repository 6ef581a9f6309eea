import Testing

/// The blocking collectives in real jobs (mpi-collective-check under our
/// mpirun, tcp backend), at rank counts that are and are not powers of
/// two (oversubscribed on two cores), each result checked element by
/// element against a serial computation.
@Suite("MPI collectives in real jobs", .serialized)
struct CollectiveJobTests {
    @Test("barrier, broadcast, reduce, allreduce, gather, scatter, allgather, all-to-all; MINLOC; a non-commutative user operation in rank order",
          arguments: [1, 2, 3, 4, 7])
    func collectives(ranks: Int) throws {
        let run = try Job.run(Job.mpirun, ["--timeout", "180", "-n", String(ranks), Job.collectiveCheck])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<ranks {
            #expect(run.output.contains("rank \(rank): collectives ok, \(ranks) ranks"), "\(run.output)")
        }
    }
}
