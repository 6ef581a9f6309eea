@testable import FabricTCP
import FabricCore
import Testing

@Suite("wire format")
struct WireFormatTests {
    func encoded(_ header: FrameHeader) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!) }
        return bytes
    }

    func decode(_ bytes: [UInt8], max: Int = 64 << 20) -> Result<FrameHeader, FrameError> {
        bytes.withUnsafeBytes { FrameHeader.decode(from: $0.baseAddress!, maxMessage: max) }
    }

    @Test("headers survive a round trip, little-endian on the wire")
    func roundTrip() throws {
        var header = FrameHeader(opcode: .writeWithImmediate, flags: [.acknowledgeRequested], length: 0x0102_0304)
        header.sequence = 0xA1B2_C3D4
        header.acknowledge = 7
        header.remoteAddress = 0x1122_3344_5566_7788
        header.remoteKey = 0xCAFE_F00D
        header.immediate = 99
        let bytes = encoded(header)
        #expect(bytes[0] == 1 && bytes[1] == WireOpcode.writeWithImmediate.rawValue)
        #expect(Array(bytes[4..<8]) == [0x04, 0x03, 0x02, 0x01])
        #expect(Array(bytes[16..<24]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        #expect(try decode(bytes, max: Int(UInt32.max)).get() == header)
    }

    @Test("bad headers are refused with a named cause")
    func refusals() {
        var bytes = encoded(FrameHeader(opcode: .send, length: 8))
        bytes[0] = 2
        #expect(decode(bytes) == .failure(.unsupportedVersion(2)))
        bytes[0] = 1
        bytes[1] = 200
        #expect(decode(bytes) == .failure(.unknownOpcode(200)))
        bytes[1] = WireOpcode.send.rawValue
        bytes[2] = 0x80
        #expect(decode(bytes) == .failure(.unknownFlags(0x80)))
        #expect(decode(encoded(FrameHeader(opcode: .send, length: 65))) == .success(FrameHeader(opcode: .send, length: 65)))
        #expect(decode(encoded(FrameHeader(opcode: .send, length: 65)), max: 64) == .failure(.lengthTooLarge(65)))
        #expect(decode(encoded(FrameHeader(opcode: .fetchAndAdd, length: 8))) == .failure(.lengthNotAllowed(opcode: .fetchAndAdd, length: 8)))
        #expect(decode(encoded(FrameHeader(opcode: .acknowledge, length: 1))) == .failure(.lengthNotAllowed(opcode: .acknowledge, length: 1)))
        #expect(decode(encoded(FrameHeader(opcode: .atomicResponse, length: 16))) == .failure(.lengthNotAllowed(opcode: .atomicResponse, length: 16)))
    }

    @Test("a READ request's length is what it asks for and carries no payload; a READ response's and a WRITE's length is their data")
    func payloadLengths() throws {
        #expect(FrameHeader(opcode: .readRequest, length: 4096).payloadLength == 0)
        #expect(FrameHeader(opcode: .write, length: 4096).payloadLength == 4096)
        // The response's 4-byte status trailer follows its data, outside
        // `length` (docs/wire-protocol.md): the data length is checked
        // against the largest message, the trailer is not counted in it.
        #expect(FrameHeader(opcode: .readResponse, length: 4096).payloadLength == 4096)
        #expect(try decode(encoded(FrameHeader(opcode: .readResponse, length: 64)), max: 64).get().length == 64)
        #expect(decode(encoded(FrameHeader(opcode: .readResponse, length: 65)), max: 64) == .failure(.lengthTooLarge(65)))
    }

    @Test("NAK syndromes round-trip and reject nonsense")
    func syndromes() {
        let value = NakSyndrome.encode(status: .remoteAccessError, detail: .outOfBounds)
        #expect(NakSyndrome.decode(value)! == (.remoteAccessError, .outOfBounds))
        #expect(NakSyndrome.decode(NakSyndrome.encode(status: .success, detail: .none)) == nil)
        #expect(NakSyndrome.decode(0xFFFF_FFFF) == nil)
    }

    @Test("memory keys are distinct and not sequential")
    func keys() {
        let generator = KeyGenerator()
        var seen = Set<UInt32>()
        var previous: UInt32 = 0
        var sequentialSteps = 0
        for _ in 0..<100_000 {
            let key = generator.next()
            #expect(key != 0)
            #expect(seen.insert(key).inserted)
            if key == previous &+ 1 { sequentialSteps += 1 }
            previous = key
        }
        #expect(sequentialSteps < 10)
        // Two generators (two processes) give different sequences.
        let other = KeyGenerator()
        #expect((0..<16).map { _ in other.next() } != (0..<16).map { _ in KeyGenerator().next() })
    }

    @Test("handshake messages decode only when well formed")
    func handshakeDecoding() throws {
        let nonce = Handshake.freshNonce()
        #expect(nonce.count == 32 && nonce != Handshake.freshNonce())
        let hello = Handshake.encodeHello(nonce: nonce, tag: 42, instance: 9, privateData: [1, 2, 3])
        #expect(hello.count == Handshake.prefixSize + Handshake.helloBodySize + 3)
        let prefix = try Handshake.decodePrefix(hello.prefix(Handshake.prefixSize), what: "hello")
        #expect(prefix.version == Handshake.version && prefix.field == 3)
        let body = try Handshake.decodeHelloBody(hello[Handshake.prefixSize..<(Handshake.prefixSize + Handshake.helloBodySize)])
        #expect(body.nonce == nonce && body.tag == 42 && body.instance == 9)
        let untagged = Handshake.encodeHello(nonce: nonce, tag: nil, instance: 9, privateData: [])
        #expect(try Handshake.decodeHelloBody(untagged.dropFirst(Handshake.prefixSize)).tag == nil)
        var unknownFlag = untagged
        unknownFlag[Handshake.prefixSize + Handshake.nonceSize] = 2
        #expect(throws: FabricError.self) { try Handshake.decodeHelloBody(unknownFlag.dropFirst(Handshake.prefixSize)) }
        #expect(throws: FabricError.self) { try Handshake.decodePrefix(Array("GET / HT".utf8)[...], what: "hello") }
        #expect(throws: FabricError.self) { try Handshake.decodePrefix([0, 1, 2][...], what: "challenge") }
        #expect(!Handshake.proofMatches([1, 2, 3], [1, 2, 4]))
        #expect(Handshake.proofMatches([1, 2, 3], [1, 2, 3]))
    }

    @Test("a NAK syndrome is the status number in its low byte and the detail number in the next")
    func syndromeNumbers() {
        // docs/wire-protocol.md, NAK syndromes (the numbers themselves are
        // FabricCore's, checked in FabricCoreTests).
        #expect(NakSyndrome.encode(status: .remoteInvalidRequest, detail: .messageTooLong) == 5 | (9 << 8))
        #expect(NakSyndrome.encode(status: .remoteAccessError, detail: .injectedFault) == 4 | (25 << 8))
    }
}
