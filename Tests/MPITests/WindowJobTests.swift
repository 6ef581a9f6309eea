import Foundation
import Testing

/// One-sided windows in real jobs (mpi-window-check under our mpirun, tcp
/// backend): allocated and created windows, puts and gets under every
/// epoch kind, atomics from every rank at once checked for atomicity, a
/// target that computes without calling MPI while three ranks work on
/// its memory, bad input refused with the connections still working.
@Suite("MPI windows in real jobs", .serialized)
struct WindowJobTests {
    @Test("puts, gets, accumulates and atomics under fences, locks and post/start/complete/wait; a passive target; bad input", arguments: [1, 2, 3, 4])
    func windows(ranks: Int) throws {
        let run = try Job.run(Job.mpirun, ["--timeout", "240", "-n", String(ranks), Job.windowCheck])
        #expect(run.status == 0, "\(run.output)")
        for rank in 0..<ranks {
            #expect(run.output.contains("rank \(rank): windows ok, \(ranks) ranks"), "\(run.output)")
        }
        if ranks > 1 {
            #expect(run.output.contains("rank 0: passive target computed"), "\(run.output)")
        }
    }
}
