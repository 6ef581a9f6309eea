@testable import FabricTCP
import FabricCore
import Glibc
import Testing

@Suite("device profiles")
struct ProfileTests {
    func parse(_ json: String) -> Result<DeviceProfile, FabricError> {
        Result { () throws(FabricError) in try DeviceProfile.parse(Array(json.utf8)) }
    }

    func message(_ json: String) -> String {
        if case .failure(let error) = parse(json) { return error.message }
        return "(accepted)"
    }

    @Test("built-in profiles by name; an unknown name lists the known ones")
    func builtIn() throws {
        #expect(try DeviceProfile.named("rxe").capabilities.maxMessageSize == 8 << 20)
        #expect(try DeviceProfile.named("connectx-5").capabilities.mtu == 4096)
        #expect(try DeviceProfile.fromEnvironment([:]) == .softwareNIC)
        #expect(try DeviceProfile.fromEnvironment([DeviceProfile.environmentVariable: "rxe"]) == .rxe)
        #expect(throws: FabricError.self) { try DeviceProfile.named("mlx99") }
        do {
            _ = try DeviceProfile.fromEnvironment([DeviceProfile.environmentVariable: "mlx99"])
            Issue.record("an unknown profile was accepted")
        } catch {
            #expect(error.message.contains("FABRIC_TCP_PROFILE=mlx99") && error.message.contains("connectx-5"))
        }
    }

    @Test("a file starts from a base and overrides what it names")
    func file() throws {
        let profile = try parse(#"{"name": "lab", "base": "connectx-5", "maxQueuePairs": 8, "atomics": "none", "mtu": 2048}"#).get()
        #expect(profile.name == "lab")
        #expect(profile.capabilities.maxQueuePairs == 8 && profile.capabilities.atomics == .none && profile.capabilities.mtu == 2048)
        #expect(profile.capabilities.maxScatterEntries == DeviceProfile.connectX5.capabilities.maxScatterEntries)
        // Through a real file.
        let path = "/tmp/fabric-profile-\(getpid()).json"
        let text = #"{"name": "small", "maxInlineData": 32}"#
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        defer { unlink(path) }
        #expect(try DeviceProfile.resolve(path).capabilities.maxInlineData == 32)
    }

    @Test("malformed files and impossible settings are refused with the setting's name")
    func badFiles() {
        #expect(message(#"{"name": "x", "maxQueuePair": 8}"#).contains("unknown setting 'maxQueuePair'"))
        #expect(message(#"{"name": "x", "maxQueuePairs": "many"}"#).contains("maxQueuePairs"))
        #expect(message(#"{"name": "x", "maxQueuePairs": 0}"#).contains("'maxQueuePairs' is 0"))
        #expect(message(#"{"name": "x", "mtu": 3000}"#).contains("mtu"))
        #expect(message(#"{"name": "x", "atomics": "sometimes"}"#).contains("atomics"))
        #expect(message(#"{"name": "x", "memoryModel": "pinned"}"#).contains("cannot be emulated"))
        #expect(message(#"{"name": "x", "base": "mlx99"}"#).contains("unknown device profile 'mlx99'"))
        #expect(message(#"{"maxQueuePairs": 8}"#).contains("no 'name'"))
        #expect(message(#"{"name": "x", "maxQueuePairs": 8"#).contains("JSON"))
        #expect(throws: FabricError.self) { try DeviceProfile.resolve("/nonexistent/profile.json") }
    }

    @Test("the profile's limits are enforced: queue pairs, regions, atomics, shapes")
    func enforced() throws {
        var limited = DeviceProfile.softwareNIC
        limited.name = "limited"
        limited.capabilities.maxQueuePairs = 1
        limited.capabilities.maxMemoryRegions = 2
        limited.capabilities.maxScatterEntries = 2
        limited.capabilities.atomics = .none
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TCPDevice(secret: secretA, profile: limited)
        let domain = try client.allocateProtectionDomain()
        let cq = try client.createCompletionQueue(capacity: 16)
        let setup = QueuePairSetup<TCPDevice>(protectionDomain: domain, sendCompletionQueue: cq, receiveCompletionQueue: cq, limits: QueuePairLimits(maxSendScatterEntries: 2, maxReceiveScatterEntries: 2))
        // Shapes beyond the profile are refused when the queue pair is made.
        #expect(throws: FabricError.self) {
            _ = try client.connect(to: server.listener.endpoint, QueuePairSetup(protectionDomain: domain, sendCompletionQueue: cq, receiveCompletionQueue: cq), options: ConnectOptions()) { _ in }
        }
        let (qp, _) = try client.connect(to: server.listener.endpoint, setup, options: ConnectOptions(timeout: .seconds(5))) { _ in }
        server.done.wait()
        // One queue pair is all the profile allows.
        do {
            _ = try client.connect(to: server.listener.endpoint, setup, options: ConnectOptions(timeout: .seconds(2))) { _ in }
            Issue.record("a second queue pair was allowed")
        } catch {
            #expect(error.kind == .limitExceeded && error.message.contains("limited"))
        }
        // Two regions, then no more.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        let first = try client.registerMemory(buffer, length: 64, access: .all, in: domain)
        let second = try client.registerMemory(buffer + 64, length: 64, access: .all, in: domain)
        #expect(throws: FabricError.self) { _ = try client.registerMemory(buffer + 128, length: 64, access: .all, in: domain) }
        // No atomics on this card.
        #expect {
            _ = try qp.postSend(SendWorkRequest(id: 1, operation: .fetchAndAdd(second.remote(), add: 1), local: .single(first.element(offset: 0, length: 8))))
        } throws: { error in
            (error as? FabricError)?.workRequestRule == .atomicsUnsupported
        }
    }

    @Test("a target whose profile has no atomics refuses them as invalid requests")
    func targetWithoutAtomics() throws {
        var noAtomics = DeviceProfile.softwareNIC
        noAtomics.capabilities.atomics = .none
        let server = try AcceptingServer(secret: secretA, profile: noAtomics)
        server.acceptOne()
        let target = try server.device.registerMemory(server.receiveBuffer + 1024, length: 64, access: .all, in: server.domain)
        let client = try TestClient()
        let qp = try client.connect(to: server)
        _ = try qp.postSend(SendWorkRequest(id: 7, operation: .fetchAndAdd(target.remote(), add: 1), local: .single(client.region.element(offset: 0, length: 8))))
        let completion = client.next()
        #expect(completion?.status == .remoteInvalidRequest && completion?.detail == .operationNotSupported, "\(String(describing: completion))")
    }

    @Test("with one read or atomic in flight at a time, a burst of them still completes, in order", arguments: [1, 16])
    func oneOutstandingRead(limit: Int) throws {
        var strict = DeviceProfile.softwareNIC
        strict.capabilities.maxOutstandingReads = limit
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        server.receiveBuffer.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        let target = try server.device.registerMemory(server.receiveBuffer + 2048, length: 1024, access: .all, in: server.domain)
        let client = try TestClient(profile: strict)
        let qp = try client.connect(to: server)
        for index in 0..<12 {
            let operation: SendOperation = index % 3 == 2 ? .fetchAndAdd(target.remote(), add: 1) : .read(target.remote(offset: 64))
            _ = try qp.postSend(SendWorkRequest(id: UInt64(index), operation: operation, local: .single(client.region.element(offset: index * 64, length: 8))))
        }
        var seen: [UInt64] = []
        while seen.count < 12, let completion = client.next() {
            #expect(completion.status == .success, "\(completion)")
            seen.append(completion.workRequestID)
        }
        #expect(seen == Array(0..<12))
        // Four fetch-and-adds, each seeing the one before.
        let olds = (0..<12).filter { $0 % 3 == 2 }.map { client.memory.load(fromByteOffset: $0 * 64, as: UInt64.self) }
        #expect(olds == [0, 1, 2, 3])
        // The limit held, and with a larger one the burst did overlap (so
        // the observation can tell the two apart).
        let highWater = qp.engine.outstandingReadAtomicsHighWater
        if limit == 1 {
            #expect(highWater == 1)
        } else {
            #expect(highWater > 1 && highWater <= limit)
        }
    }

    @Test("a request longer than the target's profile allows is refused with an invalid-request NAK, not a torn connection")
    func targetWithSmallerMessages() throws {
        var small = DeviceProfile.softwareNIC
        small.capabilities.maxMessageSize = 1024
        let server = try AcceptingServer(secret: secretA, profile: small)
        server.acceptOne()
        let target = try server.device.registerMemory(server.receiveBuffer, length: 4096, access: .all, in: server.domain)
        let client = try TestClient()
        let qp = try client.connect(to: server)
        _ = try qp.postSend(SendWorkRequest(id: 1, operation: .write(target.remote()), local: .single(client.region.element(offset: 0, length: 2048))))
        let completion = client.next()
        #expect(completion?.status == .remoteInvalidRequest && completion?.detail == .messageTooLong, "\(String(describing: completion))")
    }
}
