import Testing

/// Communicators made at run time, in real jobs (mpi-communicator-check
/// under our mpirun, tcp backend): dup, split, create from a group, free,
/// names, attributes with their callbacks, split by type, at several job
/// sizes (oversubscribed on two cores).
@Suite("MPI communicators in real jobs", .serialized)
struct CommunicatorJobTests {
    @Test("dup, split and create agree on contexts no rank has used; messages stay in their communicator; freed ones are refused; names, attributes, split by type",
          arguments: [1, 2, 3, 5])
    func communicators(ranks: Int) throws {
        let run = try Job.run(Job.mpirun, ["--timeout", "120", "-n", String(ranks), Job.communicatorCheck])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<ranks {
            #expect(run.output.contains("rank \(rank): communicators ok, \(ranks) ranks"), "\(run.output)")
        }
    }
}
