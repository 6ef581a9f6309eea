import Fabric
import Foundation

/// Two tcp devices of this process joined by one connection over
/// 127.0.0.1, with registered buffers and receives posted on both ends.
/// Made once, on first use, outside any measured iteration (the benchmarks'
/// warm-up iterations take it).
final class LoopbackPair: @unchecked Sendable {  // used by one benchmark thread at a time
    static let shared: LoopbackPair = {
        do {
            return try LoopbackPair()
        } catch {
            fatalError("the benchmarks' loopback pair cannot be set up: \(error)")
        }
    }()

    struct End {
        let device: TCPDevice
        let domain: TCPProtectionDomain
        let queue: TCPCompletionQueue
        let buffer: UnsafeMutableRawPointer
        let region: TCPDevice.MemoryRegion
        var queuePair: TCPDevice.QueuePair!
    }

    static let capacity = 1 << 20
    private static let receives = 256
    private var client: End
    private var server: End
    private let completions = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 64)
    private var sendRequest: SendWorkRequest
    private var replyRequest: SendWorkRequest
    private var writeRequest: SendWorkRequest
    /// Registered and deregistered again and again (the ends' own buffers
    /// stay registered).
    private let registrationBuffer: UnsafeMutableRawPointer
    private let receiveRequests: (client: ReceiveWorkRequest, server: ReceiveWorkRequest)
    private var posted: UInt64 = 0

    private init() throws {
        // The secret is this process's own: both ends are here.
        let secret = Array(JobSecret.generate().utf8)
        func end() throws -> End {
            let device = try TCPDevice(secret: secret)
            let domain = try device.allocateProtectionDomain()
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity, alignment: 4096)
            buffer.initializeMemory(as: UInt8.self, repeating: 0x5A, count: Self.capacity)
            let region = try device.registerMemory(buffer, length: Self.capacity, access: .all, in: domain)
            return End(device: device, domain: domain, queue: try device.createCompletionQueue(capacity: 4096), buffer: buffer, region: region)
        }
        client = try end()
        server = try end()
        registrationBuffer = .allocate(byteCount: Self.capacity, alignment: 4096)
        registrationBuffer.initializeMemory(as: UInt8.self, repeating: 1, count: Self.capacity)
        completions.initialize(repeating: .empty)
        let limits = QueuePairLimits(sendQueueDepth: 512, receiveQueueDepth: Self.receives, maxSendScatterEntries: 1, maxReceiveScatterEntries: 1, maxInlineData: 64)
        func setup(_ end: End) -> QueuePairSetup<TCPDevice> {
            QueuePairSetup(protectionDomain: end.domain, sendCompletionQueue: end.queue, receiveCompletionQueue: end.queue, limits: limits)
        }
        receiveRequests = (
            ReceiveWorkRequest(id: 0, local: .single(try client.region.element(offset: 0, length: 64))),
            ReceiveWorkRequest(id: 0, local: .single(try server.region.element(offset: 0, length: 64))))
        let serverReceive = receiveRequests.server
        let listener = try server.device.listen(on: Endpoint(host: "127.0.0.1", port: 0), backlog: 1)
        defer { listener.close() }
        nonisolated(unsafe) var accepted: Result<TCPDevice.QueuePair, Error>?
        let done = DispatchSemaphore(value: 0)
        let serverSetup = setup(server)
        Thread.detachNewThread {
            accepted = Result {
                guard let request = try listener.next(timeout: .seconds(20)) else { throw FabricError(.timedOut, "no connection request within 20 s") }
                return try request.accept(serverSetup, privateData: []) { (queuePair) throws(FabricError) in
                    for _ in 0..<Self.receives { _ = try queuePair.postReceive(serverReceive) }
                }
            }
            done.signal()
        }
        let clientReceive = receiveRequests.client
        (client.queuePair, _) = try client.device.connect(
            to: listener.endpoint, setup(client), options: ConnectOptions(timeout: .seconds(20))
        ) { (queuePair) throws(FabricError) in
            for _ in 0..<Self.receives { _ = try queuePair.postReceive(clientReceive) }
        }
        done.wait()
        server.queuePair = try accepted!.get()
        sendRequest = SendWorkRequest(id: 0, operation: .send, local: .single(try client.region.element(offset: 0, length: 8)), flags: [.inline])
        replyRequest = SendWorkRequest(id: 0, operation: .send, local: .single(try server.region.element(offset: 0, length: 8)), flags: [.inline])
        writeRequest = SendWorkRequest(id: 0, operation: .write(server.region.remote()), local: .single(try client.region.element(offset: 0, length: 64 << 10)))
    }

    /// 8 bytes to the server, 8 bytes back; every 64th send is signalled
    /// so that the send queues drain, as a timed loop of fabric-perf does.
    @inline(__always)
    func sendRoundTrip() {
        posted &+= 1
        let signaled = posted % 64 == 0
        post(&sendRequest, signaled: signaled, on: client.queuePair, polling: client.queue)
        awaitReceive(server, repost: receiveRequests.server)
        post(&replyRequest, signaled: signaled, on: server.queuePair, polling: server.queue)
        awaitReceive(client, repost: receiveRequests.client)
    }

    /// One signalled WRITE of `bytes`, waited for.
    @inline(__always)
    func write(bytes: Int) {
        posted &+= 1
        post(&writeRequest, signaled: true, on: client.queuePair, polling: client.queue)
        while true {
            // The target applies a WRITE when its side makes progress.
            _ = server.queue.poll(into: completions)
            let n = client.queue.poll(into: completions)
            if (0..<n).contains(where: { completions[$0].workRequestID == posted && completions[$0].opcode == .write }) { return }
        }
    }

    @inline(__always)
    func pollEmpty() -> Int {
        client.queue.poll(into: completions)
    }

    func registerAndDeregister(bytes: Int) {
        do {
            let region = try client.device.registerMemory(registrationBuffer, length: bytes, access: .all, in: client.domain)
            try region.deregister()
        } catch {
            fatalError("registration of \(bytes) bytes failed: \(error)")
        }
    }

    @inline(__always)
    private func post(_ request: inout SendWorkRequest, signaled: Bool, on queuePair: TCPDevice.QueuePair, polling queue: TCPCompletionQueue) {
        request.id = posted
        if signaled { request.flags.insert(.signaled) } else { request.flags.remove(.signaled) }
        while true {
            do {
                if try queuePair.postSend(request) == .posted { return }
            } catch {
                fatalError("posting failed: \(error)")
            }
            _ = queue.poll(into: completions)
        }
    }

    /// Polls `end` until a receive completes and posts it again; signalled
    /// sends are taken on the way.
    @inline(__always)
    private func awaitReceive(_ end: End, repost: ReceiveWorkRequest) {
        while true {
            let n = end.queue.poll(into: completions)
            var received = false
            for i in 0..<n {
                precondition(completions[i].status == .success, "a completion failed: \(completions[i])")
                if completions[i].opcode == .receive {
                    received = true
                    do { _ = try end.queuePair.postReceive(repost) } catch { fatalError("reposting a receive failed: \(error)") }
                }
            }
            if received { return }
        }
    }
}
