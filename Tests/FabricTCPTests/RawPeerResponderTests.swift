@testable import FabricTCP
import FabricCore
import Glibc
import Testing

/// What the software NIC answers a peer that sends what our own posting
/// never would.
@Suite("responder against a raw peer")
struct RawPeerResponderTests {
    @Test("a peer's unaligned atomic gets a NAK: remote invalid request, unaligned atomic; memory is untouched")
    func unalignedAtomicFromPeer() throws {
        let server = try AcceptingServer(secret: secretA)
        server.receiveBuffer.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 64)
        server.acceptOne()
        let peer = try RawPeer.connect(to: server.listener.endpoint)
        defer { peer.close() }
        #expect(try peer.handshake(secret: secretA) == 0)
        server.done.wait()
        // Posting refuses this (WorkRequestValidation); a peer can still send it.
        var header = FrameHeader(opcode: .fetchAndAdd, length: 16)
        header.remoteAddress = UInt64(UInt(bitPattern: server.receiveBuffer)) + 4
        header.remoteKey = server.receiveRegion.remoteKey.rawValue
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!) }
        bytes += [1, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 8)
        try peer.send(bytes)
        // The answer may follow acknowledgements; read frames until the NAK.
        var answer: FrameHeader?
        for _ in 0..<16 {
            let received = try peer.receive(FrameHeader.size)
            guard case .success(let frame) = received.withUnsafeBytes({ FrameHeader.decode(from: $0.baseAddress!, maxMessage: 64 << 20) }) else { break }
            if frame.payloadLength > 0 { _ = try peer.receive(frame.payloadLength) }
            if frame.opcode == .negativeAcknowledge || frame.opcode == .atomicResponse {
                answer = frame
                break
            }
        }
        let nak = try #require(answer)
        #expect(nak.opcode == .negativeAcknowledge, "\(nak)")
        let syndrome = try #require(NakSyndrome.decode(nak.immediate))
        #expect(syndrome.0 == .remoteInvalidRequest && syndrome.1 == .unalignedAtomic, "\(syndrome)")
        #expect((0..<64).allSatisfy { server.receiveBuffer.load(fromByteOffset: $0, as: UInt8.self) == 0x5A })
    }
}
