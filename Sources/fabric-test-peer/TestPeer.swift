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
@main
struct TestPeer {
    static let regionSize = 16 << 20

    static func main() {
        let arguments = CommandLine.arguments
        guard arguments.count == 3, let port = UInt16(arguments[2]) else {
            print("usage: fabric-test-peer HOST PORT")
            exit(2)
        }
        do {
            try run(host: arguments[1], port: port)
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
}
