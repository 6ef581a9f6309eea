@testable import FabricTCP
import FabricCore
import Glibc
import Testing

@Suite("a peer that hung up")
struct EndedInputTests {
    @Test("once the peer's side ended, neither a sleeper nor the progress thread wakes for its socket again")
    func nobodySpinsOnAClosedSocket() throws {
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TestClient()
        let qp = try client.connect(to: server)
        // The peer goes away without a word.
        server.accepted.removeAll()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while !qp.engine.inputEnded.load(ordering: .relaxed) && clock.now < deadline {
            _ = client.cq.poll()
            usleep(1000)
        }
        let noticed = qp.engine.inputEnded.load(ordering: .relaxed)
        #expect(noticed, "the end of the peer's stream was not noticed")
        while client.cq.poll() != nil {}

        // A sleeper: nothing will ever come, so it sleeps its whole timeout
        // (a socket readable for good would wake it at once).
        let start = clock.now
        #expect(try client.cq.wait(timeout: .milliseconds(300)) == false)
        #expect(clock.now - start >= .milliseconds(250))

        // The application away: the progress thread sleeps on the device's
        // sockets, and must not drive this queue pair round after round.
        let roundsBefore = qp.engine.core.withLock { $0.progressRounds }
        usleep(300_000)
        let rounds = qp.engine.core.withLock { $0.progressRounds } - roundsBefore
        #expect(rounds < 200, "the progress thread drove the queue pair \(rounds) times in 300 ms")
    }
}
