import Fabric
import Glibc

/// A peer in a process of its own, for the tests that kill, stop and cut
/// off the other end of a connection (Tests/FabricConformanceTests/
/// PeerProcessTests.swift). Not a tool: it does one thing.
///
///     fabric-test-peer HOST PORT
///
/// connects to HOST:PORT over the tcp backend (the job secret from the
/// environment), registers 16 MiB for remote reads, writes and atomics,
/// tells the other end where it is with one SEND (address, key and length,
/// 16 bytes, little-endian), then serves for ever: it sleeps on its
/// completion queue and reposts receives, and its device serves one-sided
/// operations meanwhile.
///
///     fabric-test-peer echo HOST PORT N
///
/// starts N connects to HOST:PORT at once from its one thread, all on one
/// completion queue, and sends every message it receives back on the queue
/// pair it came on, until the other end goes away (the many-connections
/// test).
@main
struct TestPeer {
    static let regionSize = 16 << 20

    static func main() {
        let arguments = CommandLine.arguments
        do {
            if arguments.count == 5, arguments[1] == "echo", let port = UInt16(arguments[3]), let count = Int(arguments[4]), count > 0 {
                try echo(host: arguments[2], port: port, count: count)
            } else if arguments.count == 3, let port = UInt16(arguments[2]) {
                try run(host: arguments[1], port: port)
            } else {
                print("usage: fabric-test-peer HOST PORT | fabric-test-peer echo HOST PORT N")
                exit(2)
            }
        } catch {
            print("fabric-test-peer: \(error)")
            exit(1)
        }
    }

    static func run(host: String, port: UInt16) throws {
        let device = try TCPDevice()
        let domain = try device.allocateProtectionDomain()
        let queue = try device.createCompletionQueue(capacity: 1024)
        let memory = UnsafeMutableRawPointer.allocate(byteCount: regionSize, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: regionSize)
        let region = try device.registerMemory(memory, length: regionSize, access: .all, in: domain)
        let inbox = UnsafeMutableRawPointer.allocate(byteCount: 64 * 4096, alignment: 4096)
        let inboxRegion = try device.registerMemory(inbox, length: 64 * 4096, access: [.localWrite], in: domain)
        let setup = QueuePairSetup<TCPDevice>(protectionDomain: domain, sendCompletionQueue: queue, receiveCompletionQueue: queue)
        let (queuePair, _) = try device.connect(to: Endpoint(host: host, port: port), setup, options: ConnectOptions(timeout: .seconds(10))) { (qp) throws(FabricError) in
            for i in 0..<64 {
                _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(i), local: .single(inboxRegion.element(offset: i * 4096, length: 4096))))
            }
        }
        let announcement = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
        announcement.storeBytes(of: UInt64(UInt(bitPattern: memory)).littleEndian, as: UInt64.self)
        announcement.storeBytes(of: region.remoteKey.rawValue.littleEndian, toByteOffset: 8, as: UInt32.self)
        announcement.storeBytes(of: UInt32(regionSize).littleEndian, toByteOffset: 12, as: UInt32.self)
        let announcementRegion = try device.registerMemory(announcement, length: 16, access: [.localWrite], in: domain)
        _ = try queuePair.postSend(SendWorkRequest(id: 1000, operation: .send, local: .single(announcementRegion.element())))
        while true {
            guard let completion = queue.poll() else {
                _ = try queue.wait(timeout: .seconds(1))
                continue
            }
            if completion.status == .flushed { exit(0) }  // the other end went away
            if completion.status != .success {
                print("fabric-test-peer: \(completion)")
                exit(1)
            }
            if completion.opcode == .receive {
                let slot = Int(completion.workRequestID)
                _ = try queuePair.postReceive(ReceiveWorkRequest(id: UInt64(slot), local: .single(inboxRegion.element(offset: slot * 4096, length: 4096))))
            }
        }
    }

    static func echo(host: String, port: UInt16, count: Int) throws {
        let device = try TCPDevice()
        let domain = try device.allocateProtectionDomain()
        let queue = try device.createCompletionQueue(capacity: 4 * count + 64)
        let slot = 4096
        let inbox = UnsafeMutableRawPointer.allocate(byteCount: count * slot, alignment: 4096)
        let inboxRegion = try device.registerMemory(inbox, length: count * slot, access: [.localWrite], in: domain)
        let setup = QueuePairSetup<TCPDevice>(protectionDomain: domain, sendCompletionQueue: queue, receiveCompletionQueue: queue)
        var attempts: [TCPConnectAttempt] = []
        for index in 0..<count {
            attempts.append(try device.startConnect(to: Endpoint(host: host, port: port), setup, options: ConnectOptions(timeout: .seconds(30))) { (qp) throws(FabricError) in
                _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(index), local: .single(inboxRegion.element(offset: index * slot, length: slot))))
            })
        }
        var queuePairs = [TCPQueuePair?](repeating: nil, count: count)
        var byNumber: [QueuePairNumber: Int] = [:]
        while byNumber.count < count {
            for index in 0..<count where queuePairs[index] == nil {
                if let (qp, _) = try attempts[index].advance() {
                    queuePairs[index] = qp
                    byNumber[qp.number] = index
                }
            }
            usleep(100)
        }
        while true {
            guard let completion = queue.poll() else {
                _ = try queue.wait(timeout: .seconds(1))
                continue
            }
            if completion.status == .flushed { exit(0) }  // the other end went away
            if completion.status != .success {
                print("fabric-test-peer: \(completion)")
                exit(1)
            }
            guard completion.opcode == .receive, let index = byNumber[completion.queuePair], let qp = queuePairs[index] else { continue }
            let message = try inboxRegion.element(offset: index * slot, length: Int(completion.byteLength))
            // The echo leaves before the receive is posted again: the
            // sender waits for it before sending more.
            _ = try qp.postSend(SendWorkRequest(id: UInt64(index), operation: .send, local: .single(message)))
            _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(index), local: .single(inboxRegion.element(offset: index * slot, length: slot))))
        }
    }
}
