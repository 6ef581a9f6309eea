import FabricCore

/// The few internals of the software NIC that the fuzz targets
/// (Sources/FabricTestSupport/Fuzzing, docs/fuzzing.md) drive: a queue pair
/// over a socket the caller holds, either half of the handshake fed from
/// memory, and the encoders of the seed inputs. `package` access: the
/// package's own targets see it, applications never do. None of it is on
/// the data path.
package enum FuzzingAccess {
    /// A queue pair of `device` whose peer is the far end of `socket` (a
    /// connected stream socket), as if the handshake had just finished.
    /// Nothing drives it until `activate`: post receives first.
    package static func queuePair(over socket: Int32, on device: TCPDevice, setup: QueuePairSetup<TCPDevice>) -> TCPQueuePair {
        let engine = QueuePairEngine(socket: socket, number: device.core.makeQueuePairNumber(), device: device.core, setup: setup)
        return TCPQueuePair(engine: engine)
    }

    /// Hands `queuePair` to its device's progress, as a finished connect does.
    package static func activate(_ queuePair: TCPQueuePair) {
        queuePair.engine.activate()
    }

    /// One half of the connection handshake of `device`, with its job
    /// secret, taking a peer's bytes in the pieces it asks for. It does no
    /// I/O: what it would send is dropped.
    package struct HandshakeHalf {
        package enum Role: Sendable { case server, client }
        private var server: ServerHandshake?
        private var client: ClientHandshake?

        package init(_ role: Role, of device: TCPDevice) {
            switch role {
            case .server: server = ServerHandshake(secret: device.core.secret, instance: 1)
            case .client: client = ClientHandshake(secret: device.core.secret, tag: nil, instance: 1, privateData: [], peer: "fuzz")
            }
        }

        /// How many bytes `receive` takes next (0: this half is done).
        package var bytesWanted: Int { server?.bytesWanted ?? client?.bytesWanted ?? 0 }

        /// Takes exactly `bytesWanted` bytes; throws why the peer is refused.
        package mutating func receive(_ bytes: ArraySlice<UInt8>) throws(FabricError) {
            if server != nil {
                try server!.receive(bytes)
            } else {
                try client!.receive(bytes)
            }
        }

        /// Whether the peer proved it knows the job secret: the server half
        /// authenticated it, or the client half checked the server's proof.
        package var peerProvedSecret: Bool {
            if let server { return server.phase == .authenticated }
            return client?.serverInstance != nil
        }
    }

    /// Valid frames to start the frame fuzzer from: each opcode a peer may
    /// send, with `key` where a remote key goes and `address` (plus an
    /// offset in its low bits) where a remote address goes.
    package static func seedFrames(key: UInt32, address: UInt64) -> [[UInt8]] {
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
                header.remoteKey = key
                header.remoteAddress = address | 0x40
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

    /// Handshake messages to start the handshake fuzzer from, each with the
    /// half it is for: the server's (a client's HELLO and PROOF) or the
    /// client's (a server's CHALLENGE and VERDICT).
    package static func seedHandshakes() -> [(HandshakeHalf.Role, [UInt8])] {
        let nonce = [UInt8](repeating: 3, count: Handshake.nonceSize)
        let mac = [UInt8](repeating: 9, count: Handshake.macSize)
        let hello = Handshake.encodeHello(nonce: nonce, tag: 7, instance: 2, privateData: [1, 2, 3])
        let challenge = Handshake.encodeChallenge(status: .proceed, nonce: nonce, instance: 2, proof: mac)
        return [
            (.server, hello + Handshake.encodeProof(mac)),
            (.server, Handshake.encodeHello(version: 1, nonce: nonce, tag: nil, instance: 2, privateData: [])),
            (.client, challenge + Handshake.encodeVerdict(.accepted, privateData: [4, 5])),
            (.client, Handshake.encodeVersionRefusal()),
        ]
    }
}
