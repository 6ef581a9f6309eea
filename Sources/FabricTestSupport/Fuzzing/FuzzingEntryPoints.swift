// UNSAFE AREA: raw socket pairs and a fixed mapping for the fuzz targets.
import FabricCore
import FabricTCP
import Glibc

/// Entry points for the fuzz targets (Sources/fabric-fuzz, docs/fuzzing.md):
/// arbitrary bytes fed to the real code that reads a peer's bytes, the
/// frame parser of a connected queue pair and both halves of the handshake.
/// The tests replay the committed corpora through the same functions.
public enum FuzzingEntryPoints {
    /// A remote key in fuzz input that stands for the key of the registered
    /// region, so that the fuzzer reaches placement and not only the key
    /// check. Little-endian on the wire, like every key.
    public static let keySentinel: UInt32 = 0xFEED_F00D
    /// An address in fuzz input whose high 48 bits are these stands for the
    /// region's base plus its low 16 bits.
    public static let addressSentinel: UInt64 = 0x5EED_5EED_5EED_0000
    static let regionSize = 1 << 16

    /// One device, domain, queues and region for every input (fuzzing is
    /// single-threaded; creating a device per input would measure set-up).
    private final class FramesContext {
        let device: TCPDevice
        let domain: TCPProtectionDomain
        let queue: TCPCompletionQueue
        let memory: UnsafeMutableRawPointer
        let region: TCPMemoryRegion
        let receiveRegion: TCPMemoryRegion

        init() throws(FabricError) {
            device = try TCPDevice(secret: Array(repeating: 0x42, count: 32), profile: nil, link: .unshaped, faults: FaultScript.none)
            domain = try device.allocateProtectionDomain()
            queue = try device.createCompletionQueue(capacity: 4096)
            memory = .allocate(byteCount: FuzzingEntryPoints.regionSize * 2, alignment: 4096)
            memory.initializeMemory(as: UInt8.self, repeating: 0, count: FuzzingEntryPoints.regionSize * 2)
            region = try device.registerMemory(memory, length: FuzzingEntryPoints.regionSize, access: .all, in: domain)
            receiveRegion = try device.registerMemory(memory + FuzzingEntryPoints.regionSize, length: FuzzingEntryPoints.regionSize, access: [.localWrite], in: domain)
        }

        var setup: QueuePairSetup<TCPDevice> {
            QueuePairSetup(protectionDomain: domain, sendCompletionQueue: queue, receiveCompletionQueue: queue, limits: QueuePairLimits(sendQueueDepth: 16, receiveQueueDepth: 16, maxSendScatterEntries: 2, maxReceiveScatterEntries: 2))
        }
    }

    nonisolated(unsafe) private static var framesContext: FramesContext?

    private static var context: FramesContext {
        if framesContext == nil { framesContext = try? FramesContext() }
        guard let context = framesContext else { fatalError("the fuzz context could not be set up") }
        return context
    }

    /// Feeds `input` to a connected queue pair as the bytes its peer sent
    /// after the handshake, and drives the queue pair until it has read them
    /// all and seen the stream end. A crash or a hang is the finding.
    public static func feedFrames(_ input: UnsafeRawBufferPointer) {
        let context = context
        // At most 1 MiB, so that the whole input fits the socket pair's
        // buffers and writing it never blocks (libFuzzer runs use 4 KiB).
        var bytes = Array(input.prefix(1 << 20))
        substituteSentinels(&bytes, key: context.region.remoteKey.rawValue, base: UInt64(UInt(bitPattern: context.memory)))

        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { fatalError("socketpair failed") }
        let peer = fds[1]
        // Room for the whole input, so that writing it never blocks.
        var sendBuffer = Int32(max(bytes.count * 2, 65536))
        _ = setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &sendBuffer, socklen_t(MemoryLayout<Int32>.size))
        let queuePair = FuzzingAccess.queuePair(over: fds[0], on: context.device, setup: context.setup)
        for i in 0..<8 {
            _ = try? queuePair.postReceive(ReceiveWorkRequest(id: UInt64(i), local: .single(context.receiveRegion.element(offset: i * 4096, length: 4096))))
        }
        FuzzingAccess.activate(queuePair)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { Glibc.send(peer, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if result <= 0 { break }
            written += result
        }
        Glibc.shutdown(peer, Int32(SHUT_WR))

        // Drive it: the stream's end moves the queue pair to the error state.
        let sink = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
        defer { sink.deallocate() }
        var completions = [Completion](repeating: Completion(workRequestID: 0, status: .success, opcode: .send, queuePair: QueuePairNumber(rawValue: 0)), count: 64)
        for _ in 0..<10_000 {
            _ = completions.withUnsafeMutableBufferPointer { context.queue.poll(into: $0) }
            _ = Glibc.recv(peer, sink, 65536, Int32(MSG_DONTWAIT))
            if queuePair.state == .error { break }
        }
        while completions.withUnsafeMutableBufferPointer({ context.queue.poll(into: $0) }) > 0 {}
        // The connection's end posted events; nobody else takes them.
        while context.device.pollAsyncEvent() != nil {}
        Glibc.close(peer)
        withExtendedLifetime(queuePair) {}
    }

    /// Feeds `input` to one half of the handshake as everything its peer
    /// says: the first byte chooses the half (even: the server reading a
    /// client; odd: the client reading a server), the rest is the peer's
    /// bytes, handed over in the pieces each half asks for, until it
    /// refuses or the bytes run out. The halves do no I/O of their own.
    public static func feedHandshake(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        var half = FuzzingAccess.HandshakeHalf(first & 1 == 0 ? .server : .client, of: context.device)
        var rest = Array(input.dropFirst().prefix(1 << 20))[...]
        while half.bytesWanted > 0, rest.count >= half.bytesWanted {
            let wanted = half.bytesWanted
            do { try half.receive(rest.prefix(wanted)) } catch { return }
            rest = rest.dropFirst(wanted)
        }
        if half.peerProvedSecret {
            // Only the secret's holder gets here; the fuzzer cannot.
            fatalError("a peer without the job secret got through the \(first & 1 == 0 ? "server" : "client") half of the handshake")
        }
    }

    /// The counters of the device the frame fuzzer feeds (tests check
    /// with them that the seeds reach placement).
    public static var frameCounters: DeviceCounters? { framesContext?.device.counters }

    /// Valid frames to start the frame fuzzer from: each opcode a peer may
    /// send, with the sentinels where a key and an address go.
    public static func seedFrames() -> [[UInt8]] {
        FuzzingAccess.seedFrames(key: keySentinel, address: addressSentinel)
    }

    /// Handshake messages to start the handshake fuzzer from (with the
    /// byte that chooses the half in front).
    public static func seedHandshakes() -> [[UInt8]] {
        FuzzingAccess.seedHandshakes().map { role, bytes in [role == .server ? 0 : 1] + bytes }
    }

    private static func substituteSentinels(_ bytes: inout [UInt8], key: UInt32, base: UInt64) {
        guard bytes.count >= 4 else { return }
        var i = 0
        while i + 4 <= bytes.count {
            let value = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            if value == keySentinel {
                for j in 0..<4 { bytes[i + j] = UInt8(truncatingIfNeeded: key >> (8 * j)) }
                i += 4
                continue
            }
            if i + 8 <= bytes.count {
                var address: UInt64 = 0
                for j in 0..<8 { address |= UInt64(bytes[i + j]) << (8 * j) }
                if address & ~0xFFFF == addressSentinel {
                    let real = base + (address & 0xFFFF)
                    for j in 0..<8 { bytes[i + j] = UInt8(truncatingIfNeeded: real >> (8 * j)) }
                    i += 8
                    continue
                }
            }
            i += 1
        }
    }
}
