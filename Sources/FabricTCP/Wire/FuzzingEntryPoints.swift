// UNSAFE AREA: raw socket pairs and a fixed mapping for the fuzz targets.
import CFabricShims
import Crypto
import FabricCore
import Glibc

/// Entry points for the fuzz targets (Sources/fabric-fuzz, docs/fuzzing.md):
/// arbitrary bytes fed to the real code that reads a peer's bytes, the
/// frame parser of a connected queue pair and both halves of the handshake.
/// Not part of the API: applications never see this SPI.
@_spi(Fuzzing)
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

    /// Feeds `input` to a connected queue pair as the bytes its peer sent
    /// after the handshake, and drives the queue pair until it has read them
    /// all and seen the stream end. A crash or a hang is the finding.
    public static func feedFrames(_ input: UnsafeRawBufferPointer) {
        if framesContext == nil { framesContext = try? FramesContext() }
        guard let context = framesContext else { fatalError("the fuzz context could not be set up") }
        // At most 1 MiB, so that the whole input fits the socket pair's
        // buffers and writing it never blocks (libFuzzer runs use 4 KiB).
        var bytes = Array(input.prefix(1 << 20))
        substituteSentinels(&bytes, key: context.region.remoteKey.rawValue, base: UInt64(UInt(bitPattern: context.memory)))

        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { fatalError("socketpair failed") }
        let peer = fds[1]
        // Room for the whole input, so that writing it never blocks.
        SystemCalls.setOption(peer, SOL_SOCKET, SO_SNDBUF, Int32(max(bytes.count * 2, 65536)))
        let engine = QueuePairEngine(socket: fds[0], number: context.device.core.makeQueuePairNumber(), device: context.device.core, setup: context.setup)
        let queuePair = TCPQueuePair(engine: engine)
        for i in 0..<8 {
            _ = try? queuePair.postReceive(ReceiveWorkRequest(id: UInt64(i), local: .single(context.receiveRegion.element(offset: i * 4096, length: 4096))))
        }
        engine.activate()
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
            if engine.state == .error { break }
        }
        while completions.withUnsafeMutableBufferPointer({ context.queue.poll(into: $0) }) > 0 {}
        // The connection's end posted events; nobody else takes them.
        while context.device.pollAsyncEvent() != nil {}
        SystemCalls.close(peer)
        withExtendedLifetime(queuePair) {}
    }

    /// Feeds `input` to one half of the handshake as everything its peer
    /// says: the first byte chooses the half (even: the server reading a
    /// client; odd: the client reading a server), the rest is the peer's
    /// bytes, handed over in the pieces each half asks for, until it
    /// refuses or the bytes run out. The halves do no I/O of their own.
    public static func feedHandshake(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        if framesContext == nil { framesContext = try? FramesContext() }
        guard let context = framesContext else { fatalError("the fuzz context could not be set up") }
        var rest = Array(input.dropFirst().prefix(1 << 20))[...]
        let secret = context.device.core.secret
        if first & 1 == 0 {
            var server = ServerHandshake(secret: secret, instance: 1)
            while server.bytesWanted > 0, rest.count >= server.bytesWanted {
                let wanted = server.bytesWanted
                do { try server.receive(rest.prefix(wanted)) } catch { return }
                rest = rest.dropFirst(wanted)
            }
            if server.phase == .authenticated {
                // Only the secret's holder gets here; the fuzzer cannot.
                fatalError("a handshake without the secret was accepted: \(server.privateData)")
            }
        } else {
            var client = ClientHandshake(secret: secret, tag: nil, instance: 1, privateData: [], peer: "fuzz")
            while client.bytesWanted > 0, rest.count >= client.bytesWanted {
                let wanted = client.bytesWanted
                do { try client.receive(rest.prefix(wanted)) } catch { return }
                rest = rest.dropFirst(wanted)
            }
            if client.serverInstance != nil {
                fatalError("a server without the secret proved it knows it")
            }
        }
    }

    /// The counters of the device the frame fuzzer feeds (tests check
    /// with them that the seeds reach placement).
    public static var frameCounters: DeviceCounters? { framesContext?.device.counters }

    /// Valid frames to start the frame fuzzer from: each opcode a peer may
    /// send, with the sentinels where a key and an address go.
    public static func seedFrames() -> [[UInt8]] {
        func frame(_ header: FrameHeader, payload: [UInt8] = []) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: FrameHeader.size)
            bytes.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!) }
            return bytes + payload
        }
        func request(_ opcode: WireOpcode, sequence: UInt32, length: UInt32 = 0, immediate: UInt32 = 0) -> FrameHeader {
            var header = FrameHeader(opcode: opcode)
            header.sequence = sequence
            header.length = length
            header.immediate = immediate
            if opcode != .send && opcode != .sendWithImmediate {
                header.remoteKey = keySentinel
                header.remoteAddress = addressSentinel | 0x40
            }
            return header
        }
        let payload = [UInt8](repeating: 0xAB, count: 64)
        let atomicOperands = [UInt8](repeating: 1, count: 16)
        let send = frame(request(.send, sequence: 0, length: 64), payload: payload)
        let write = frame(request(.write, sequence: 1, length: 64), payload: payload)
        let writeImmediate = frame(request(.writeWithImmediate, sequence: 2, length: 64, immediate: 7), payload: payload)
        let read = frame(request(.readRequest, sequence: 3, length: 64))
        let add = frame(request(.fetchAndAdd, sequence: 4, length: 16), payload: atomicOperands)
        let swap = frame(request(.compareAndSwap, sequence: 5, length: 16), payload: atomicOperands)
        var acknowledge = FrameHeader(opcode: .acknowledge)
        acknowledge.acknowledge = 0
        var disconnect = FrameHeader(opcode: .disconnect)
        disconnect.acknowledge = 6
        return [
            send, write, read, add,
            send + write + writeImmediate + read + add + swap + frame(acknowledge) + frame(disconnect),
        ]
    }

    /// Handshake messages to start the handshake fuzzer from (with the
    /// byte that chooses the half in front).
    public static func seedHandshakes() -> [[UInt8]] {
        let nonce = [UInt8](repeating: 3, count: Handshake.nonceSize)
        let mac = [UInt8](repeating: 9, count: Handshake.macSize)
        let hello = Handshake.encodeHello(nonce: nonce, tag: 7, instance: 2, privateData: [1, 2, 3])
        let challenge = Handshake.encodeChallenge(status: .proceed, nonce: nonce, instance: 2, proof: mac)
        return [
            [0] + hello + Handshake.encodeProof(mac),
            [0] + Handshake.encodeHello(version: 1, nonce: nonce, tag: nil, instance: 2, privateData: []),
            [1] + challenge + Handshake.encodeVerdict(.accepted, privateData: [4, 5]),
            [1] + Handshake.encodeVersionRefusal(),
        ]
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
