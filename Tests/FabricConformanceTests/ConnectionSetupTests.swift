import Dispatch
import Fabric
import FabricTestSupport
import Foundation
import Glibc
import Testing

/// Connection set-up that does not block: many connects in flight from one
/// thread, listeners that run many handshakes at once, connects that cross
/// with the same tag, a process connecting to itself, addresses handed from
/// one process to another.
@Suite("connection set-up without blocking")
struct ConnectionSetupTests {
    /// One side: device, queues, a listener, receive memory.
    final class Node<D: FabricDevice> {
        let side: Side<D>
        let listener: D.Listener
        let inbox = Buffer(64 * 256)
        let region: D.MemoryRegion
        var accepted: [D.QueuePair] = []
        /// The tag each accepted request carried.
        var acceptedTags: [UInt64?] = []

        init(_ device: D, host: String) throws {
            side = try Side(device)
            listener = try device.listen(on: Endpoint(host: host, port: 0), backlog: 256)
            region = try side.register(inbox)
        }

        var setup: QueuePairSetup<D> { side.setup() }

        /// Accepts whatever request is waiting, posting one receive in slot `slot`.
        @discardableResult
        func acceptWaiting(slot: Int = 0) throws -> D.QueuePair? {
            guard let request = try listener.next(timeout: .zero) else { return nil }
            acceptedTags.append(request.tag)
            let region = self.region
            let qp = try request.accept(setup, privateData: []) { (qp) throws(FabricError) in
                _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(slot), local: .single(region.element(offset: slot * 64, length: 64))))
            }
            accepted.append(qp)
            return qp
        }
    }

    /// Sends 8 bytes on `from` and checks they arrive at `to`'s side.
    static func checkTraffic<D: FabricDevice>(from: D.QueuePair, _ sender: Node<D>, to receiver: Node<D>, value: UInt64) throws {
        let source = Buffer(8)
        source.setWord(value)
        let sourceRegion = try sender.side.register(source)
        _ = try from.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(sourceRegion.element()), flags: .signaled))
        #expect(try sender.side.nextSend().status == .success)
        let received = try receiver.side.nextReceive()
        #expect(received.status == .success && received.byteLength == 8)
        #expect(receiver.inbox.word(Int(received.workRequestID) * 64) == value)
        withExtendedLifetime(sourceRegion) {}
    }

    @Test("64 connects in flight from one thread that also serves the listener", arguments: ConformanceBackend.available)
    func manyInFlight(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            let server = try Node(try backend.open(), host: backend.host)
            let client = try Node(try backend.open(), host: backend.host)
            let count = 64
            var attempts = try (0..<count).map { _ in
                try client.side.device.startConnect(to: server.listener.endpoint, client.setup, options: ConnectOptions(timeout: .seconds(30))) { _ in }
            }
            var connected: [B.Device.QueuePair] = []
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(60)
            while (connected.count < count || server.accepted.count < count) && clock.now < deadline {
                try server.acceptWaiting(slot: server.accepted.count)
                var pending: [B.Device.ConnectAttempt] = []
                for attempt in attempts {
                    if let (qp, _) = try attempt.advance() { connected.append(qp) } else { pending.append(attempt) }
                }
                attempts = pending
            }
            #expect(connected.count == count && server.accepted.count == count)
            // The last one carries traffic, and its receive is its own.
            let last = try #require(connected.last)
            try Self.checkTraffic(from: last, client, to: server, value: 0x64)
        }
    }

    @Test("20 silent connections, then a good peer: it is accepted before any silent one times out (tcp)")
    func silentPeersDelayNoOne() throws {
        let server = try Node(try TCPDevice(secret: testSecret), host: "127.0.0.1")
        var silent: [Int32] = []
        defer { silent.forEach { Glibc.close($0) } }
        for _ in 0..<20 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = server.listener.endpoint.port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let status = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(status == 0)
            silent.append(fd)
        }
        // Let the listener take them all in (they stay, saying nothing).
        #expect(try server.listener.next(timeout: .milliseconds(100)) == nil)
        let client = try Node(try TCPDevice(secret: testSecret), host: "127.0.0.1")
        let attempt = try client.side.device.startConnect(to: server.listener.endpoint, client.setup, options: ConnectOptions(timeout: .seconds(10))) { _ in }
        var request: TCPConnectionRequest?
        var connected: TCPQueuePair?
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while (request == nil || connected == nil) && clock.now < deadline {
            if request == nil, let next = try server.listener.next(timeout: .milliseconds(1)) {
                // The order, not a time: no silent peer has been refused yet.
                #expect(server.listener.refusedAttempts.load(ordering: .relaxed) == 0)
                request = next
                let region = server.region
                server.accepted.append(try next.accept(server.setup, privateData: []) { (qp) throws(FabricError) in
                    _ = try qp.postReceive(ReceiveWorkRequest(id: 0, local: .single(region.element(length: 64))))
                })
            }
            if let (qp, _) = try attempt.advance() { connected = qp }
        }
        let queuePair = try #require(connected)
        try Self.checkTraffic(from: queuePair, client, to: server, value: 0x600d)
        // And the silent ones do time out, each on its own clock.
        let end = clock.now + .seconds(10)
        while server.listener.refusedAttempts.load(ordering: .relaxed) < 20 && clock.now < end {
            #expect(try server.listener.next(timeout: .milliseconds(200)) == nil)
        }
        #expect(server.listener.refusedAttempts.load(ordering: .relaxed) == 20)
    }

    /// Two nodes connect to each other with `tags` at once, from one thread,
    /// in an order `shuffle` picks; returns each side's queue pairs (its
    /// connects' and its listener's) and the attempts' failures.
    static func cross<D: FabricDevice>(
        _ a: Node<D>, _ b: Node<D>, tags: (UInt64?, UInt64?), order: Int, namingPeers: Bool = true
    ) throws -> (a: [D.QueuePair], b: [D.QueuePair], failures: [FabricError]) {
        var aPairs: [D.QueuePair] = []
        var bPairs: [D.QueuePair] = []
        var failures: [FabricError] = []
        // Each names the device it means to reach, as a fabric address does.
        let fromA = try a.side.device.startConnect(
            to: b.listener.endpoint, a.setup, options: ConnectOptions(timeout: .seconds(20), tag: tags.0, expectedInstance: namingPeers ? b.side.device.instance : nil)) { _ in }
        let fromB = try b.side.device.startConnect(
            to: a.listener.endpoint, b.setup, options: ConnectOptions(timeout: .seconds(20), tag: tags.1, expectedInstance: namingPeers ? a.side.device.instance : nil)) { _ in }
        var aDone = false
        var bDone = false
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        var round = 0
        // Until both attempts ended and the listeners stayed quiet a while.
        var quietRounds = 0
        while clock.now < deadline && quietRounds < 200 {
            round += 1
            var moved = false
            let steps: [() throws -> Void] = [
                { if let qp = try a.acceptWaiting(slot: 1) { aPairs.append(qp); moved = true } },
                { if let qp = try b.acceptWaiting(slot: 1) { bPairs.append(qp); moved = true } },
                {
                    guard !aDone else { return }
                    do { if let (qp, _) = try fromA.advance() { aPairs.append(qp); aDone = true; moved = true } } catch let error as FabricError {
                        failures.append(error); aDone = true; moved = true
                    }
                },
                {
                    guard !bDone else { return }
                    do { if let (qp, _) = try fromB.advance() { bPairs.append(qp); bDone = true; moved = true } } catch let error as FabricError {
                        failures.append(error); bDone = true; moved = true
                    }
                },
            ]
            // A different interleaving per order and round.
            for index in 0..<steps.count { try steps[(index + order + round / 7) % steps.count]() }
            quietRounds = (aDone && bDone && !moved) ? quietRounds + 1 : 0
            usleep(100)
        }
        return (aPairs, bPairs, failures)
    }

    @Test("connects that cross with the same tag end with exactly one queue pair on both sides", arguments: ConformanceBackend.available)
    func crossingSameTag(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            for order in 0..<6 {
                let a = try Node(try backend.open(), host: backend.host)
                let b = try Node(try backend.open(), host: backend.host)
                let (aPairs, bPairs, failures) = try Self.cross(a, b, tags: (42, 42), order: order)
                #expect(aPairs.count == 1 && bPairs.count == 1, "order \(order): \(aPairs.count) and \(bPairs.count) queue pairs")
                #expect(failures.count == 1 && failures.first?.kind == .crossedConnection, "order \(order): \(failures)")
                // The winner is the connect of the lower instance.
                let lowerIsA = a.side.device.instance < b.side.device.instance
                #expect(a.accepted.count == (lowerIsA ? 0 : 1) && b.accepted.count == (lowerIsA ? 1 : 0), "order \(order)")
                // The acceptor sees the tag the winner connected with.
                #expect((a.acceptedTags + b.acceptedTags) == [42], "order \(order)")
                if let qpA = aPairs.first, let qpB = bPairs.first {
                    // The two ends are each other's: traffic both ways. Receives
                    // are posted on the accepted end only: post on the other.
                    let (acceptor, connector, connectorQP) = lowerIsA ? (b, a, qpA) : (a, b, qpB)
                    let acceptorQP = lowerIsA ? qpB : qpA
                    _ = try connectorQP.postReceive(ReceiveWorkRequest(id: 2, local: .single(connector.region.element(offset: 128, length: 64))))
                    try Self.checkTraffic(from: connectorQP, connector, to: acceptor, value: 7)
                    try Self.checkTraffic(from: acceptorQP, acceptor, to: connector, value: 8)
                }
            }
        }
    }

    @Test("tcp: connects by endpoint alone that cross with one tag: the listeners wait to learn whom their own connects reached")
    func crossingUnnamed() throws {
        for order in 0..<6 {
            let a = try Node(try TCPDevice(secret: testSecret), host: "127.0.0.1")
            let b = try Node(try TCPDevice(secret: testSecret), host: "127.0.0.1")
            let (aPairs, bPairs, failures) = try Self.cross(a, b, tags: (9, 9), order: order, namingPeers: false)
            #expect(aPairs.count == 1 && bPairs.count == 1, "order \(order): \(aPairs.count) and \(bPairs.count) queue pairs")
            #expect(failures.count == 1 && failures.first?.kind == .crossedConnection, "order \(order): \(failures)")
        }
    }

    @Test("different tags, or no tag, make separate queue pairs on both sides", arguments: ConformanceBackend.available)
    func crossingDifferentTags(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            for tags in [(UInt64?(1), UInt64?(2)), (nil, nil)] {
                let a = try Node(try backend.open(), host: backend.host)
                let b = try Node(try backend.open(), host: backend.host)
                let (aPairs, bPairs, failures) = try Self.cross(a, b, tags: tags, order: 0)
                #expect(failures.isEmpty, "\(failures)")
                #expect(aPairs.count == 2 && bPairs.count == 2)
            }
        }
    }

    @Test("a process connects to itself, from one thread, with or without a tag", arguments: ConformanceBackend.available)
    func connectToItself(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            for tag in [UInt64?.none, 5] {
                let node = try Node(try backend.open(), host: backend.host)
                let attempt = try node.side.device.startConnect(
                    to: node.listener.endpoint, node.setup,
                    options: ConnectOptions(timeout: .seconds(20), tag: tag, expectedInstance: node.side.device.instance)) { _ in }
                var connected: B.Device.QueuePair?
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(20)
                while (connected == nil || node.accepted.isEmpty) && clock.now < deadline {
                    try node.acceptWaiting(slot: 1)
                    if connected == nil, let (qp, _) = try attempt.advance() { connected = qp }
                }
                let outgoing = try #require(connected)
                #expect(node.accepted.count == 1)
                try Self.checkTraffic(from: outgoing, node, to: node, value: 0x5e1f)
            }
        }
    }

    @Test("a listener's address: concrete hosts even for a wildcard, printed and read back, connected to; a stale or foreign one is refused", arguments: ConformanceBackend.available)
    func addresses(backend: ConformanceBackend) throws {
        try run(backend.opener)
        func run<B: BackendOpener>(_ backend: B) throws {
            let serverDevice = try backend.open()
            let wildcard = try serverDevice.listen(on: Endpoint(host: "0.0.0.0", port: 0), backlog: 4)
            defer { wildcard.close() }
            #expect(!wildcard.address.hosts.contains { FabricAddress.isWildcard($0) })
            #expect(wildcard.address.hosts.contains(backend.host), "\(wildcard.address)")
            #expect(wildcard.address.instance == serverDevice.instance && wildcard.address.port == wildcard.endpoint.port)
            #expect(wildcard.address.backend == serverDevice.backendName)
            let printed = wildcard.address.description
            #expect(printed.utf8.count <= 256)
            let parsed = try FabricAddress(parsing: printed)
            #expect(parsed == wildcard.address)

            let server = try Side(serverDevice)
            let client = try Side(try backend.open())
            nonisolated(unsafe) var accepted: B.Device.QueuePair?
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) let listener = wildcard
            let setup = server.setup()
            DispatchQueue.global().async {
                if let request = try? listener.next(timeout: .seconds(20)) { accepted = try? request.accept(setup, privateData: []) { _ in } }
                done.signal()
            }
            // Only the address that this network reaches: the others may be
            // interfaces the test's packets must not leave through.
            let reachable = try FabricAddress(backend: parsed.backend, wireVersion: parsed.wireVersion, hosts: [backend.host], port: parsed.port, instance: parsed.instance)
            let (queuePair, _) = try client.device.connect(to: reachable, client.setup(), options: ConnectOptions(timeout: .seconds(20))) { _ in }
            done.wait()
            #expect(accepted != nil && queuePair.state == .readyToSend)

            // The same host and port, another device instance: a stale address.
            let stale = try FabricAddress(backend: parsed.backend, wireVersion: parsed.wireVersion, hosts: [backend.host], port: parsed.port, instance: parsed.instance ^ 1)
            DispatchQueue.global().async {
                if let request = try? listener.next(timeout: .seconds(5)) { _ = try? request.accept(setup, privateData: []) { _ in } }
                done.signal()
            }
            #expect {
                _ = try client.device.connect(to: stale, client.setup(), options: ConnectOptions(timeout: .seconds(5))) { _ in }
            } throws: { error in
                guard let error = error as? FabricError else { return false }
                return error.kind == .unexpectedPeer && error.message.contains("stale")
            }
            done.wait()
            // The other backend's address is refused before any packet.
            let foreign = try FabricAddress(
                backend: parsed.backend == "tcp" ? "verbs" : "tcp", wireVersion: parsed.wireVersion, hosts: [backend.host], port: parsed.port,
                instance: parsed.instance)
            #expect {
                _ = try client.device.connect(to: foreign, client.setup(), options: ConnectOptions(timeout: .seconds(5))) { _ in }
            } throws: { ($0 as? FabricError)?.message.contains("backend") == true }
            withExtendedLifetime((queuePair, accepted)) {}
        }
    }
}
