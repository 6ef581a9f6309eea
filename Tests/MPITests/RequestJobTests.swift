import Foundation
import Testing

/// Point-to-point beyond plain sends and receives, in real jobs
/// (mpi-requests-check under our mpirun, tcp backend; the ranks check
/// what they got and name what differed).
@Suite("MPI send modes, matched probes, persistent requests, cancel", .serialized)
struct RequestJobTests {
    func job(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let run = try Job.run(Job.mpirun, ["--timeout", "120", "-n", "2", Job.requestsCheck] + arguments, environment: environment)
        #expect(run.status == 0, "\(run.output)")
        return run.output
    }

    @Test("buffered sends fill the attached buffer exactly, refuse one more by name, and detach waits for them to leave; ready and synchronous sends")
    func sendModes() throws {
        let output = try job(["modes"])
        #expect(output.contains("rank 0: modes ok: detach waited"), "\(output)")
        #expect(output.contains("its largest free piece has"), "\(output)")
        #expect(output.contains("rank 1: modes ok"), "\(output)")
    }

    @Test("a matched probe takes its message from every other receive; mrecv and imrecv receive it once")
    func matchedProbe() throws {
        #expect(try job(["matched"]).contains("rank 1: matched ok, 4 messages"))
    }

    @Test("persistent sends and receives in every mode, started 50 times each, eager and rendezvous")
    func persistent() throws {
        let output = try job(["persistent"])
        #expect(output.contains("rank 0: persistent ok, 4 modes × 2 sizes × 50 rounds") && output.contains("rank 1: persistent ok"), "\(output)")
    }

    @Test("cancel: a pending receive is cancelled, a matched one is not, a collected one is refused; a freed receive completes on its own")
    func cancel() throws {
        #expect(try job(["cancel"]).contains("rank 1: cancel ok"))
    }

    @Test("send-receive-replace, of bytes and of a datatype")
    func replace() throws {
        let output = try job(["replace"])
        #expect(output.contains("rank 0: replace ok") && output.contains("rank 1: replace ok"), "\(output)")
    }

    /// Bytes of memory available now (MemAvailable), or 0 if unknown.
    static var availableMemory: Int {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
            let kilobytes = Int(line.split(separator: " ")[1])
        else { return 0 }
        return kilobytes * 1024
    }

    @Test("one message of 4 GiB and 4 KiB (counts past 2^31 through the Swift API), every word checked; needs 12 GiB of free memory",
          .enabled(if: availableMemory >= 12 << 30, "fewer than 12 GiB of memory available: two ranks hold 4 GiB each"))
    func largeMessage() throws {
        let output = try job(["large"])
        #expect(output.contains("rank 1: large ok, 4294971392 bytes"), "\(output)")
    }
}
