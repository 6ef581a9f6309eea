import Foundation
import Glibc
import PMI
import Testing

/// The server with the project's own clients on socket pairs: a job whose
/// ranks speak PMI-1 and PMI-2 side by side.
@Suite("the launcher's PMI server")
struct ServerTests {
    /// Runs `server` on a thread until every rank finalized or failed;
    /// completes fences at once (one host). Returns the events.
    final class Loop: @unchecked Sendable {  // `events` is read after `done`
        let server: PMIServer
        var events: [PMIServerEvent] = []
        let done = DispatchSemaphore(value: 0)

        init(_ server: PMIServer) {
            self.server = server
            Thread.detachNewThread { [self] in
                let server = self.server
                let deadline = ContinuousClock.now + .seconds(20)
                while !server.allFinalized && ContinuousClock.now < deadline {
                    var descriptors = server.pollDescriptors
                    if descriptors.isEmpty { break }
                    guard poll(&descriptors, nfds_t(descriptors.count), 100) > 0 else { continue }
                    for entry in descriptors where entry.revents != 0 {
                        for event in server.handle(descriptor: entry.fd, revents: entry.revents) {
                            events.append(event)
                            if case .fenceReady(let puts) = event { server.completeFence(with: puts) }
                            if case .failed = event { server.closeAll() }
                        }
                    }
                }
                done.signal()
            }
        }
    }

    static func pairs(_ count: Int) -> [(client: Int32, server: Int32)] {
        (0..<count).map { _ in
            var pair: [Int32] = [0, 0]
            precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
            return (pair[0], pair[1])
        }
    }

    @Test("four ranks, two on PMI-1 and two on PMI-2, put, fence, read each other's values and finalize")
    func mixedJob() throws {
        let size = 4
        let sockets = Self.pairs(size)
        let context = PMIServerContext(keyValueSpace: "job-7", size: size, applicationNumbers: [0, 0, 1, 1], processMapping: "(vector,(0,1,4))")
        let loop = Loop(PMIServer(context: context, ranks: sockets.enumerated().map { ($0.offset, $0.element.server) }))
        let results = Results()
        // A thread per rank: the clients block in fences until all are in.
        let group = DispatchGroup()
        for rank in 0..<size {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let client: any BootstrapClient = rank % 2 == 0
                        ? try PMI1Client(descriptor: sockets[rank].client, rank: rank, size: size)
                        : try PMI2Client(descriptor: sockets[rank].client, rank: rank, jobID: nil)
                    try client.put(key: "addr-\(rank)", value: "address-of-\(rank)")
                    try client.fence()
                    var seen: [String] = []
                    for peer in 0..<size { seen.append(try client.get(key: "addr-\(peer)")) }
                    do {
                        _ = try client.get(key: "nobody")
                        results.add("rank \(rank): got a value for a key nobody put")
                    } catch let error as PMIError where error.kind == .keyNotFound {}
                    try client.fence()
                    try client.finalize()
                    results.add("rank \(rank) size \(client.size): \(seen.joined(separator: ","))")
                } catch {
                    results.add("rank \(rank): \(error)")
                }
            }
        }
        group.wait()
        loop.done.wait()
        let expected = (0..<size).map { "address-of-\($0)" }.joined(separator: ",")
        #expect(results.lines.sorted() == (0..<size).map { "rank \($0) size \(size): \(expected)" })
        #expect(loop.events.filter { if case .finalized = $0 { true } else { false } }.count == size)
        #expect(loop.events.filter { if case .fenceReady = $0 { true } else { false } }.count == 2)
    }

    @Test("a rank that sends garbage, or exits before finalize, is reported by rank with the cause", arguments: [
        ("cmd=init pmi_version=1 pmi_subversion=1\nthis is not pmi\n", "sent what is not PMI"),
        ("hello\n", "sent what is not PMI"),
        ("cmd=init pmi_version=1 pmi_subversion=1\n", "before it finalized"),
        ("cmd=init pmi_version=2 pmi_subversion=0\n999999", "sent what is not PMI"),
        (String(repeating: "y", count: 3000), "without a newline"),
    ])
    func badRank(bytes: String, reason: String) {
        let sockets = Self.pairs(1)
        let context = PMIServerContext(keyValueSpace: "job-8", size: 1, applicationNumbers: [0], processMapping: "(vector,(0,1,1))")
        let loop = Loop(PMIServer(context: context, ranks: [(0, sockets[0].server)]))
        let data = Array(bytes.utf8)
        _ = data.withUnsafeBytes { write(sockets[0].client, $0.baseAddress, $0.count) }
        close(sockets[0].client)
        loop.done.wait()
        let failures = loop.events.compactMap { if case .failed(let rank, let why) = $0 { "\(rank): \(why)" } else { nil } }
        #expect(failures.count == 1)
        #expect(failures.first?.hasPrefix("0: rank 0 ") == true)
        #expect(failures.first?.contains(reason) == true, "\(failures)")
    }

    final class Results: @unchecked Sendable {  // guarded by `lock`
        private let lock = NSLock()
        private(set) var lines: [String] = []
        func add(_ line: String) { lock.withLock { lines.append(line) } }
    }
}
