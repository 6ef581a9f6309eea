import Foundation
import Testing

/// Every collective, blocking and nonblocking, in real jobs
/// (mpi-collective-check under our mpirun, tcp backend), each result
/// checked element by element against a serial computation, at rank
/// counts that are and are not powers of two (oversubscribed on two
/// cores). CI runs a reduced matrix; FABRIC_FULL_COLLECTIVES=1 runs the
/// full one (1 to 16 ranks, up to 4 MiB, every algorithm forced).
@Suite("MPI collectives in real jobs", .serialized)
struct CollectiveJobTests {
    static let full = ProcessInfo.processInfo.environment["FABRIC_FULL_COLLECTIVES"] == "1"
    /// Elements of int64: none, one, an odd count, 1 MiB (and 4 MiB in full).
    static let counts = full ? "0,1,13,1000,131072,524288" : "0,1,13,131072"

    @Test("every collective, blocking and nonblocking, plain, v, w and in place; overlapping on three communicators; the progress rule; bad input",
          arguments: Self.full ? [1, 2, 3, 4, 5, 7, 8, 16] : [1, 3, 4, 7])
    func collectives(ranks: Int) throws {
        let run = try Job.run(Job.mpirun, ["--timeout", Self.full ? "1200" : "300", "-n", String(ranks), Job.collectiveCheck, Self.counts])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<ranks {
            #expect(run.output.contains("rank \(rank): collectives ok, \(ranks) ranks"), "\(run.output)")
        }
    }

    /// The algorithms the defaults do not choose at these sizes, forced by
    /// their environment variables: each must give the same results.
    @Test("the other algorithms, forced", arguments: [
        ["FABRIC_MPI_BCAST": "scatter-allgather", "FABRIC_MPI_ALLREDUCE": "ring", "FABRIC_MPI_ALLTOALL": "pairwise", "FABRIC_MPI_ALLGATHER": "ring"],
        ["FABRIC_MPI_BCAST": "binomial", "FABRIC_MPI_BCAST_SEGMENT": "4096", "FABRIC_MPI_ALLREDUCE": "reduce-broadcast", "FABRIC_MPI_ALLTOALL": "linear",
         "FABRIC_MPI_ALLGATHER": "recursive-doubling"],
    ])
    func forcedAlgorithms(environment: [String: String]) throws {
        for ranks in Self.full ? [2, 3, 4, 5, 8] : [4, 5] {
            let run = try Job.run(Job.mpirun, ["--timeout", "300", "-n", String(ranks), Job.collectiveCheck, Self.full ? "0,1,13,1000,131072" : "1,13,1000"],
                                  environment: environment)
            #expect(run.status == 0, "\(environment): \(run.output)")
            #expect(run.output.contains("rank \(ranks - 1): collectives ok"), "\(environment): \(run.output)")
        }
    }

    @Test("a misspelt algorithm is refused with the choices named")
    func unknownAlgorithm() throws {
        let run = try Job.run(Job.mpirun, ["--timeout", "60", "-n", "1", Job.collectiveCheck, "1"], environment: ["FABRIC_MPI_ALLREDUCE": "fastest"])
        #expect(run.status != 0)
        #expect(run.output.contains("FABRIC_MPI_ALLREDUCE=fastest: expected one of recursive-doubling, ring, reduce-broadcast"), "\(run.output)")
    }
}
