import Dispatch
import Fabric
import FabricTestSupport
import Foundation
import Glibc
import Testing

@Suite("setup, addresses, queues and processes")
struct SetupTests {
    @Test("IPv6 loopback and a chosen local interface", arguments: ConformanceBackend.available)
    func ipv6AndLocalAddress(_ backend: ConformanceBackend) throws {
        try ipv6AndLocalAddress(on: backend.opener)
    }

    private func ipv6AndLocalAddress<Backend: BackendOpener>(on backend: Backend) throws {
        if let hostIPv6 = backend.hostIPv6 {
            let pair = try connectedPair(backend, host: hostIPv6)
            let buffer = Buffer(8)
            let region = try pair.server.register(buffer)
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 1, local: .single(region.element())))
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .sendWithImmediate(6), local: .empty))
            #expect(try pair.server.nextReceive().immediate == 6)
        }

        // Bind the client to the loopback interface by name.
        let server = try backend.open()
        let client = try backend.open()
        let serverSide = try Side(server)
        let clientSide = try Side(client)
        let listener = try server.listen(on: Endpoint(host: backend.host, port: 0), backlog: 4)
        nonisolated(unsafe) var request: Backend.Device.ConnectionRequest?
        nonisolated(unsafe) var acceptedPair: Backend.Device.QueuePair?
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            request = try? listener.next(timeout: .seconds(10))
            // Kept: a queue pair dropped at once would close the connection
            // before the client finished it.
            acceptedPair = try? request?.accept(serverSide.setup(), privateData: [9, 9]) { _ in }
            done.signal()
        }
        let (_, accepted) = try client.connect(to: listener.endpoint, clientSide.setup(), options: ConnectOptions(localAddress: backend.interface, privateData: [1, 2, 3])) { _ in }
        done.wait()
        #expect(acceptedPair != nil)
        #expect(accepted == [9, 9])
        #expect(request?.privateData == [1, 2, 3])
        #expect(request?.peer.host == backend.host)
        // An unknown interface is a clear error.
        #expect(throws: FabricError.self) {
            _ = try client.connect(to: listener.endpoint, clientSide.setup(), options: ConnectOptions(localAddress: "no-such-interface0", timeout: .seconds(2))) { _ in }
        }
    }

    @Test("a rejected connection says so; nobody listening is a clear error", arguments: ConformanceBackend.available)
    func rejectAndRefuse(_ backend: ConformanceBackend) throws {
        try rejectAndRefuse(on: backend.opener)
    }

    private func rejectAndRefuse<Backend: BackendOpener>(on backend: Backend) throws {
        let server = try backend.open()
        let client = try backend.open()
        let clientSide = try Side(client)
        let listener = try server.listen(on: Endpoint(host: backend.host, port: 0), backlog: 4)
        DispatchQueue.global().async {
            (try? listener.next(timeout: .seconds(10)))??.reject(privateData: [])
        }
        #expect {
            _ = try client.connect(to: listener.endpoint, clientSide.setup(), options: ConnectOptions(timeout: .seconds(5))) { _ in }
        } throws: { error in
            (error as? FabricError)?.message.contains("rejected") == true
        }
        let port = listener.endpoint.port
        listener.close()
        #expect {
            _ = try client.connect(to: Endpoint(host: backend.host, port: port), clientSide.setup(), options: ConnectOptions(timeout: .seconds(2))) { _ in }
        } throws: { error in
            (error as? FabricError)?.kind == .connectionFailed
        }
        #expect(throws: FabricError.self) { try client.connect(to: Endpoint(host: "no-such-host.invalid", port: 1), clientSide.setup(), options: ConnectOptions(timeout: .seconds(2))) { _ in } }
    }

    @Test("a peer without the job secret cannot connect, and the listener never sees it as a request", arguments: ConformanceBackend.available)
    func wrongSecret(_ backend: ConformanceBackend) throws {
        try wrongSecret(on: backend.opener)
    }

    private func wrongSecret<Backend: BackendOpener>(on backend: Backend) throws {
        let server = try backend.open()
        let stranger = try backend.open(secret: Array("not-the-job-secret-at-all-0123456789".utf8))
        let strangerSide = try Side(stranger)
        let listener = try server.listen(on: Endpoint(host: backend.host, port: 0), backlog: 4)
        defer { listener.close() }
        nonisolated(unsafe) var surfaced = false
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            if let request = (try? listener.next(timeout: .seconds(4))) ?? nil {
                surfaced = true
                request.reject(privateData: [])
            }
            done.signal()
        }
        #expect {
            _ = try stranger.connect(to: listener.endpoint, strangerSide.setup(), options: ConnectOptions(timeout: .seconds(3))) { _ in }
        } throws: { error in
            (error as? FabricError)?.kind == .authenticationFailed
        }
        done.wait()
        #expect(!surfaced, "a connection without the secret reached the application")
    }

    @Test("a shared receive queue feeds several queue pairs", arguments: ConformanceBackend.available)
    func sharedReceiveQueue(_ backend: ConformanceBackend) throws {
        try sharedReceiveQueue(on: backend.opener)
    }

    private func sharedReceiveQueue<Backend: BackendOpener>(on backend: Backend) throws {
        let serverDevice = try backend.open()
        let clientDevice = try backend.open()
        let serverSide = try Side(serverDevice)
        let shared = try serverDevice.createSharedReceiveQueue(in: serverSide.domain, capacity: 64, maxScatterEntries: 1)
        let buffer = Buffer(64 * 8)
        let region = try serverSide.register(buffer)
        for i in 0..<8 {
            _ = try shared.postReceive(ReceiveWorkRequest(id: UInt64(i), local: .single(region.element(offset: i * 64, length: 64))))
        }
        var clients: [Side<Backend.Device>] = []
        var connections: [Connection<Backend.Device>] = []  // a queue pair lives as long as its owner holds it
        for _ in 0..<4 {
            let connection = try connect(client: clientDevice, server: serverDevice, host: backend.host, serverSetup: { _ in serverSide.setup(shared: shared) })
            connections.append(connection)
            clients.append(connection.client)
            #expect(throws: FabricError.self) { try connection.server.queuePair.postReceive(ReceiveWorkRequest(id: 0, local: .empty)) }
        }
        for (index, client) in clients.enumerated() {
            _ = try client.queuePair.postSend(SendWorkRequest(id: 1, operation: .sendWithImmediate(UInt32(index)), local: .empty))
        }
        var seen = Set<UInt32>()
        for _ in 0..<4 {
            let completion = try serverSide.nextReceive()
            #expect(completion.status == .success)
            seen.insert(completion.immediate)
        }
        #expect(seen == [0, 1, 2, 3])
        #expect(connections.count == 4)
    }

    @Test("blocking waits, the descriptor, and the async convenience", arguments: ConformanceBackend.available)
    func blockingAndAsync(_ backend: ConformanceBackend) async throws {
        try await blockingAndAsync(on: backend.opener)
    }

    private func blockingAndAsync<Backend: BackendOpener>(on backend: Backend) async throws {
        let pair = try connectedPair(backend)
        let buffer = Buffer(64)
        let region = try pair.server.register(buffer)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 1, local: .single(region.element())))
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 2, local: .single(region.element())))
        // Nothing to do: wait sleeps out its timeout and says so.
        let clock = ContinuousClock()
        let waitStart = clock.now
        #expect(try pair.server.receiveCQ.wait(timeout: .milliseconds(20)) == false)
        let waited = clock.now - waitStart
        #expect(waited >= .milliseconds(19) && waited < .seconds(5), "waited \(waited) for a 20 ms timeout")
        nonisolated(unsafe) let client = pair.client
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) {
            _ = try? client.queuePair.postSend(SendWorkRequest(id: 1, operation: .sendWithImmediate(1), local: .empty))
        }
        let first = try pair.server.receiveCQ.next(timeout: .seconds(10))
        #expect(first?.immediate == 1)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) {
            _ = try? client.queuePair.postSend(SendWorkRequest(id: 2, operation: .sendWithImmediate(2), local: .empty))
        }
        let second = try await pair.server.receiveCQ.nextCompletion()
        #expect(second.immediate == 2)
        #expect(pair.server.receiveCQ.fileDescriptor >= 0)
    }

    @Test("awaiting a completion ends with `cancelled` when its task is cancelled", arguments: ConformanceBackend.available)
    func asyncCancellation(_ backend: ConformanceBackend) async throws {
        try await asyncCancellation(on: backend.opener)
    }

    private func asyncCancellation<Backend: BackendOpener>(on backend: Backend) async throws {
        let pair = try connectedPair(backend)
        nonisolated(unsafe) let queue = pair.server.receiveCQ
        let waiter = Task { () async throws(FabricError) -> Completion in try await queue.nextCompletion() }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        do {
            let completion = try await waiter.value
            Issue.record("nothing was sent, yet a completion came: \(completion)")
        } catch {
            #expect((error as? FabricError)?.kind == .cancelled, "\(error)")
        }
        withExtendedLifetime(pair) {}
    }

    @Test("an event loop sleeping on the descriptor alone sees every completion", arguments: ConformanceBackend.available)
    func descriptorEventLoop(_ backend: ConformanceBackend) throws {
        try descriptorEventLoop(on: backend.opener)
    }

    private func descriptorEventLoop<Backend: BackendOpener>(on backend: Backend) throws {
        let rounds = 10
        let pair = try connectedPair(backend)
        let buffer = Buffer(64)
        let region = try pair.server.register(buffer)
        for id in 0..<rounds {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: UInt64(id), local: .single(region.element())))
        }
        let queue = pair.server.receiveCQ
        var descriptor = pollfd(fd: queue.fileDescriptor, events: Int16(POLLIN), revents: 0)
        nonisolated(unsafe) let client = pair.client
        let clock = ContinuousClock()
        for round in 0..<rounds {
            // The sender waits long enough for the receiver's library to hand
            // progress to its own thread, as it does for an idle application.
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(10)) {
                _ = try? client.queuePair.postSend(SendWorkRequest(id: UInt64(round), operation: .sendWithImmediate(UInt32(round)), local: .empty, flags: []))
            }
            let start = clock.now
            var completion: Completion?
            while completion == nil && clock.now - start < .seconds(5) {
                _ = Glibc.poll(&descriptor, 1, 5000)
                completion = queue.poll()
            }
            #expect(completion?.immediate == UInt32(round), "round \(round): \(String(describing: completion))")
            #expect(clock.now - start < .seconds(3), "round \(round) took \(clock.now - start)")
            if completion == nil { return }
        }
    }

    @Test("an event loop that drains the queue after each wake-up never sleeps with completions waiting", arguments: ConformanceBackend.available)
    func descriptorBurst(_ backend: ConformanceBackend) throws {
        try descriptorBurst(on: backend.opener)
    }

    private func descriptorBurst<Backend: BackendOpener>(on backend: Backend) throws {
        let burst = 40
        let pair = try connectedPair(backend)
        let buffer = Buffer(64)
        let region = try pair.server.register(buffer)
        for id in 0..<burst {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: UInt64(id), local: .single(region.element())))
        }
        let queue = pair.server.receiveCQ
        var descriptor = pollfd(fd: queue.fileDescriptor, events: Int16(POLLIN), revents: 0)
        for id in 0..<burst {
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(id), operation: .sendWithImmediate(UInt32(id)), local: .empty, flags: id == burst - 1 ? [.signaled] : []))
        }
        // More completions than one device batch (16) and than a poll fits
        // at once: the loop polls until a call returns less than its buffer.
        let completions = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 32)
        defer { completions.deallocate() }
        var received = 0
        var timedOut = 0
        while received < burst && timedOut < 2 {
            if Glibc.poll(&descriptor, 1, 3000) == 0 { timedOut += 1 }
            while true {
                let count = queue.poll(into: completions)
                received += count
                if count < completions.count { break }
            }
        }
        #expect(received == burst && timedOut == 0, "received \(received) of \(burst), \(timedOut) sleeps timed out with work waiting")
    }

    @Test(
        "a child process cannot use its parent's objects",
        .disabled(if: underThreadSanitizer, "the thread sanitizer does not support fork() in a multithreaded process"),
        arguments: ConformanceBackend.available)
    func forkedChild(_ backend: ConformanceBackend) throws {
        try forkedChild(on: backend.opener)
    }

    private func forkedChild<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let buffer = Buffer(64)
        let domain = pair.client.domain
        let device = pair.client.device
        let qp = pair.client.queuePair!
        let child = fork()
        if child == 0 {
            // The child inherits every descriptor of this test process (other
            // tests' sockets among them): drop them at once, so that their
            // connections end only when their owners close them.
            for fd in 3..<4096 { close(Int32(fd)) }
            // In the child: every call must refuse, naming fork.
            var refused = 0
            do { _ = try qp.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty)) } catch { if error.message.contains("fork") { refused += 1 } }
            do { _ = try device.registerMemory(buffer.pointer, length: 64, access: .all, in: domain) } catch { if error.message.contains("fork") { refused += 1 } }
            do { _ = try device.createCompletionQueue(capacity: 4) } catch { if error.message.contains("fork") { refused += 1 } }
            _exit(refused == 3 ? 0 : 1)
        }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        #expect(status == 0, "the child was allowed to use the parent's objects")
        // The parent is unaffected.
        let region = try pair.server.register(buffer)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 3, local: .single(region.element())))
        _ = try qp.postSend(SendWorkRequest(id: 4, operation: .send, local: .empty))
        #expect(try pair.server.nextReceive().status == .success)
    }

    @Test("bad setup arguments are refused with the name of what was wrong", arguments: ConformanceBackend.available)
    func badSetup(_ backend: ConformanceBackend) throws {
        try badSetup(on: backend.opener)
    }

    private func badSetup<Backend: BackendOpener>(on backend: Backend) throws {
        let device = try backend.open()
        let side = try Side(device)
        let buffer = Buffer(64)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch let error as FabricError { return error.message } catch { return "\(error)" }
        }
        #expect(message { _ = try device.registerMemory(buffer.pointer, length: 0, access: .all, in: side.domain) }.contains("0 bytes"))
        #expect(message { _ = try device.registerMemory(buffer.pointer, length: 64, access: [.remoteWrite], in: side.domain) }.contains("local write"))
        #expect(message { _ = try device.registerMemory(UnsafeMutableRawPointer(bitPattern: 0x1000)!, length: 64, access: .all, in: side.domain) }.contains("not mapped"))
        #expect(message { _ = try device.createCompletionQueue(capacity: 0) }.contains("capacity"))
        let other = try backend.open()
        let otherSide = try Side(other)
        #expect(message { _ = try device.registerMemory(buffer.pointer, length: 64, access: .all, in: otherSide.domain) }.contains("another device"))
        #expect(message { _ = try device.connect(to: Endpoint(host: backend.host, port: 1), side.setup(limits: QueuePairLimits(sendQueueDepth: 0)), options: ConnectOptions()) { _ in } }.contains("send queue depth"))
        #expect(message { _ = try device.connect(to: Endpoint(host: backend.host, port: 1), side.setup(), options: ConnectOptions(privateData: [UInt8](repeating: 0, count: 57))) { _ in } }.contains("private data"))
    }
}

@Suite("ownership")
struct OwnershipTests {
    @Test("dropping a queue pair closes its connection; the peer sees it go", arguments: ConformanceBackend.available)
    func droppedQueuePair(_ backend: ConformanceBackend) throws {
        try droppedQueuePair(on: backend.opener)
    }

    private func droppedQueuePair<Backend: BackendOpener>(on backend: Backend) throws {
        var pair: Connection<Backend.Device>? = try connectedPair(backend)
        let server = pair!.server
        let buffer = Buffer(8)
        let region = try server.register(buffer)
        _ = try server.queuePair.postReceive(ReceiveWorkRequest(id: 1, local: .single(region.element())))
        pair!.client.queuePair = nil
        pair = nil
        let flushed = try server.nextReceive()
        #expect(flushed.status == .flushed, "\(flushed)")
        #expect(server.queuePair.state == .error)
    }
}

@Suite("backends that meet")
struct CrossBackendTests {
    /// A tcp peer and a verbs peer cannot talk: each must get a clear error
    /// naming the likely cause within the timeout, never a hang.
    @Test("a tcp peer and a verbs peer get a clear error, not a hang", .enabled(if: VerbsOpener.address != nil))
    func tcpMeetsVerbs() throws {
        let verbs = VerbsOpener()
        let tcp = TCPOpener()
        let clock = ContinuousClock()

        // verbs client -> tcp listener on the RDMA interface's address.
        let tcpServer = try tcp.open()
        let tcpListener = try tcpServer.listen(on: Endpoint(host: verbs.host, port: 0), backlog: 4)
        defer { tcpListener.close() }
        let verbsClient = try verbs.open()
        let verbsSide = try Side(verbsClient)
        var start = clock.now
        #expect {
            _ = try verbsClient.connect(to: tcpListener.endpoint, verbsSide.setup(), options: ConnectOptions(timeout: .seconds(10))) { _ in }
        } throws: { error in
            (error as? FabricError)?.message.contains("same backend") == true
        }
        #expect(clock.now - start < .seconds(12))

        // tcp client -> verbs listener.
        let verbsServer = try verbs.open()
        let verbsListener = try verbsServer.listen(on: Endpoint(host: verbs.host, port: 0), backlog: 4)
        defer { verbsListener.close() }
        let tcpClient = try tcp.open()
        let tcpSide = try Side(tcpClient)
        start = clock.now
        #expect {
            _ = try tcpClient.connect(to: verbsListener.endpoint, tcpSide.setup(), options: ConnectOptions(timeout: .seconds(10))) { _ in }
        } throws: { error in
            (error as? FabricError)?.message.contains("same one") == true
        }
        #expect(clock.now - start < .seconds(12))
    }
}
