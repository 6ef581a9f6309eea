import Testing

/// Messages described by datatypes between the ranks of real jobs
/// (mpi-datatype-check under our mpirun, tcp backend): every byte of the
/// receive buffer, the status's counts and each side's copy counter are
/// checked by the ranks.
@Suite("MPI datatypes in real jobs", .serialized)
struct DatatypeJobTests {
    func job(_ mode: String, ranks: Int = 2, environment: [String: String] = [:]) throws -> String {
        let run = try Job.run(Job.mpirun, ["--timeout", "120", "-n", String(ranks), Job.datatypeCheck, mode], environment: environment)
        #expect(run.status == 0, "\(run.output)")
        return run.output
    }

    @Test("spread-out layouts on either side or both, eager and rendezvous: bytes, counts, truncation; a rendezvous into spread-out elements copies nothing")
    func layouts() throws {
        let output = try job("layouts")
        #expect(output.contains("rank 1: layouts ok, 12 cases"), "\(output)")
        #expect(output.contains("rank 1: vector of 4 KiB blocks to a wider vector (1 MiB, rendezvous): received, copied 0"), "\(output)")
        #expect(output.contains("rank 0: contiguous to vector (1 MiB): sent 1048576 B, copied 0"), "\(output)")
    }

    @Test("the same layouts sent by a rank to itself")
    func toSelf() throws {
        #expect(try job("self", ranks: 1).contains("rank 0: self ok, 12 cases"))
    }

    @Test("a small rendezvous chunk and eager limit: many READs per message, each within the scatter limit")
    func smallChunks() throws {
        let output = try job("layouts", environment: ["FABRIC_MPI_RENDEZVOUS_CHUNK": "4096", "FABRIC_MPI_EAGER_LIMIT": "256"])
        #expect(output.contains("rank 1: layouts ok, 12 cases"), "\(output)")
    }

    @Test("uncommitted and freed types, a null buffer and a negative count are refused by name; the connection still works")
    func misuse() throws {
        let output = try job("misuse")
        #expect(output.contains("rank 0: misuse ok: a send with vector(2 × 1 of MPI_INT32_T, stride 2), which is not committed"), "\(output)")
        #expect(output.contains("rank 1: misuse ok"), "\(output)")
    }
}
