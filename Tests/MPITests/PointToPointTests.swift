import FabricTestSupport
import Foundation
import MPI
import Testing

/// Point-to-point between ranks of real jobs: mpi-p2p-check ranks under
/// our mpirun, over the tcp backend, each scenario checked by the ranks
/// themselves (they exit 1 naming what differed).
@Suite("MPI point-to-point in real jobs", .serialized)
struct PointToPointTests {
    /// Runs `mode` on `ranks` ranks, bounded by mpirun's timeout.
    func job(_ mode: [String], ranks: Int = 2, environment: [String: String] = [:]) throws -> String {
        let run = try Job.run(Job.mpirun, ["--timeout", "120", "-n", String(ranks), Job.pointToPoint] + mode, environment: environment)
        #expect(run.status == 0, "\(run.output)")
        return run.output
    }

    @Test("every size from 0 bytes to 4 MiB, around the eager limit, arrives intact with its status")
    func pingPong() throws {
        let output = try job(["pingpong"])
        #expect(output.contains("rank 0: pingpong ok, 9 sizes, eager limit 16384") && output.contains("rank 1: pingpong ok"), "\(output)")
    }

    @Test("the eager limit follows FABRIC_MPI_EAGER_LIMIT of rank 0, and small limits work end to end")
    func eagerLimitSetting() throws {
        let output = try job(["pingpong"], environment: ["FABRIC_MPI_EAGER_LIMIT": "256"])
        #expect(output.contains("rank 0: pingpong ok, 9 sizes, eager limit 256") && output.contains("rank 1: pingpong ok, 9 sizes, eager limit 256"), "\(output)")
    }

    @Test("messages on one tag arrive in the order sent, alternating eager and rendezvous, receives posted before and after")
    func nonOvertaking() throws {
        let output = try job(["order"])
        #expect(output.contains("rank 1: order ok, 60 messages"), "\(output)")
    }

    @Test("any source and any tag: every sender heard, each status naming it", arguments: [3, 5])
    func wildcards(ranks: Int) throws {
        let output = try job(["wildcards"], ranks: ranks)
        #expect(output.contains("rank 0: wildcards ok, \(ranks - 1) senders"), "\(output)")
    }

    @Test("probe says what arrived (oldest first) without receiving it; iprobe finds nothing when nothing came")
    func probe() throws {
        #expect(try job(["probe"]).contains("rank 1: probe ok"))
    }

    @Test("a message longer than the receive buffer is reported as truncated, eager and rendezvous, and fills the buffer")
    func truncation() throws {
        let output = try job(["truncate"])
        #expect(output.contains("truncate ok at 100 bytes: a message of 100 bytes from rank 0 with tag 3 does not fit the receive buffer of 50 bytes"), "\(output)")
        #expect(output.contains("truncate ok at 65536 bytes"), "\(output)")
    }

    @Test("a synchronous send returns only once its receive is posted; a standard eager send returns at once")
    func synchronousSend() throws {
        #expect(try job(["synchronous"]).contains("rank 0: synchronous ok"))
    }

    @Test("the copy counter: a rendezvous copies nothing on either side; an unexpected eager message costs its payload once on each side")
    func copies() throws {
        let output = try job(["copies"])
        #expect(output.contains("rank 0: copies ok on the sender: rendezvous 0, eager 1000"), "\(output)")
        #expect(output.contains("rank 1: copies ok on the receiver: rendezvous 0, unexpected eager 1000"), "\(output)")
    }

    @Test("a receive that takes a later message first is not stuck behind 200 unreceived ones (no buffering it lacks: credits run out, then rendezvous)",
          arguments: ["67108864", "0"])
    func laterMessageFirst(unexpectedLimit: String) throws {
        let output = try job(["overtake"], environment: ["FABRIC_MPI_UNEXPECTED_LIMIT": unexpectedLimit])
        #expect(output.contains("rank 1: overtake ok, 200 messages"), "\(output)")
        // The credits ran out: some messages left as rendezvous requests.
        #expect(output.contains("rank 0: overtake sender: 64 eager,"), "\(output)")
    }

    @Test("a flood of 5000 messages all started at once, received late: the receiver's resident memory stays bounded")
    func flood() throws {
        let output = try job(["flood", "5000"], environment: ["FABRIC_MPI_UNEXPECTED_LIMIT": "4194304"])
        let line = try #require(output.split(separator: "\n").first { $0.contains("rank 1: flood ok") }, "\(output)")
        // The flood happened: every message was waiting before the first receive.
        #expect(line.hasSuffix("5000 unexpected before the first receive"), "\(line)")
        let grown = try #require(Int(line.split(separator: "grew by ").last!.split(separator: " ").first!))
        // 5000 x 8 KiB = 40 MiB sent; held: slots, the 4 MiB limit, envelopes.
        #expect(grown < 16 * 1024, "resident memory grew by \(grown) KiB: \(line)")
    }

    @Test("thread level multiple: 8 threads per rank send and receive at once")
    func threads() throws {
        let output = try job(["threads"])
        for rank in 0..<2 { #expect(output.contains("rank \(rank): threads ok, 8 threads x 200 exchanges, thread level multiple"), "\(output)") }
    }

    @Test("async forms never block a concurrency thread: 16 tasks await messages that arrive in reverse order of the tasks' start")
    func asyncForms() throws {
        let output = try job(["async"])
        #expect(output.contains("rank 0: async ok, 16 exchanges") && output.contains("rank 1: async ok, 16 tasks awaiting at once"), "\(output)")
    }

    @Test("sends to the rank itself, eager before the receive and rendezvous-sized nonblocking")
    func sendToSelf() throws {
        let output = try job(["self"])
        #expect(output.contains("rank 0: self ok") && output.contains("rank 1: self ok"), "\(output)")
    }

    @Test("misuse is refused by name: invalid rank, tag, count, a used request, a call after finalize")
    func misuse() throws {
        let output = try job(["misuse"])
        for what in ["a send to rank 2 refused: a send to rank 2 of the world communicator of 2 ranks",
                     "a receive from rank -2 refused", "a send with tag -5 refused: a send with tag -5: tags run from 0 to 2147483647",
                     "a receive of -1 elements refused", "a wait on a request already completed refused",
                     "a send after finalize refused: the MPI runtime of rank 0 is finalized", "rank 0: misuse ok"] {
            #expect(output.contains(what), "\(what): \(output)")
        }
    }

    @Test("finalize right after sending loses nothing: 101 messages received after the sender's finalize began")
    func finalizeDrains() throws {
        #expect(try job(["drain"]).contains("rank 1: drain ok, 101 messages"))
    }

    @Test("a peer whose connection breaks: the receive waiting on it, a later send and finalize fail naming it; both ranks still end in order")
    func peerFailure() throws {
        let run = try Job.run(Job.mpirun, [
            "--timeout", "60", "-n", "1", Job.pointToPoint, "peer-death", ":",
            "-n", "1", "-env", "FABRIC_TCP_FAULTS", "error post=2", Job.pointToPoint, "peer-death",
        ])
        #expect(run.status == 0, "\(run.output)")
        // The fault happened: rank 1's own send was flushed by it.
        #expect(run.output.contains("rank 1: peer-death: rank 1's own operation failed: the connection to rank 0 failed: an eager send ended with flushed (a fault the emulator's fault script injected)"), "\(run.output)")
        #expect(run.output.contains("rank 0: peer-death: the pending receive failed after"), "\(run.output)")
        #expect(run.output.contains("rank 0: peer-death: a later send failed at once: the connection to rank 1 failed"), "\(run.output)")
        for rank in 0..<2 { #expect(run.output.contains("rank \(rank): peer-death ok: finalize reported"), "\(run.output)") }
    }

    @Test("an error with the default handler ends the job naming the rank and the cause")
    func fatalByDefault() throws {
        let run = try Job.run(Job.mpirun, ["--timeout", "60", "-n", "2", Job.pointToPoint, "fatal"])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("aborting the job: rank 1: a send to rank 7 of the world communicator of 2 ranks"), "\(run.output)")
    }
}
