@testable import FabricTCP
import FabricCore
import Glibc
import Testing

/// The frame input alone: the "socket" is a scripted byte stream that hands
/// out at most a scripted number of bytes per read, and the test drives
/// the input as the engine does (ask where to read, read, say what came),
/// checking the headers, the payloads and the read plan.
@Suite("tcp engine: frame input")
struct FrameInputTests {
    /// The peer's byte stream; each read returns at most the next of
    /// `splits` (cycled), and nothing once the script is spent.
    struct ScriptedSocket {
        var bytes: [UInt8]
        var splits: [Int]
        var offset = 0
        var reads = 0

        var spent: Bool { offset == bytes.count }

        /// Fills the vectors in order; returns the bytes "read".
        mutating func read(_ vectors: [(UnsafeMutableRawPointer, Int)]) -> Int {
            var limit = min(splits[reads % splits.count], bytes.count - offset)
            reads += 1
            var total = 0
            for (base, length) in vectors where limit > 0 {
                let count = min(length, limit)
                bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
                offset += count
                total += count
                limit -= count
            }
            return total
        }
    }

    enum Event: Equatable {
        case header(FrameHeader)
        case refused(FrameError)
        case payload([UInt8])
    }

    /// What the driver saw besides the frames: the size each staging read
    /// asked for, and the staging room behind each read in place.
    struct ReadLog {
        var stagingWants: [Int] = []
        var inPlaceTails: [Int] = []
    }

    /// Runs rounds, as progress does, until the socket is spent and no
    /// frame is left to find; stops at a refused header.
    func drive(_ input: inout FrameInput, _ socket: inout ScriptedSocket, log: inout ReadLog) -> [Event] {
        var events: [Event] = []
        var payload: [UInt8] = []
        let destination = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { destination.deallocate() }
        rounds: for _ in 0..<10_000 {
            input.beginRound()
            while true {
                if !input.inPayload {
                    if let decoded = input.nextHeader() {
                        switch decoded {
                        case .success(let header):
                            events.append(.header(header))
                            payload = []
                            _ = input.expectPayload(header.payloadLength)
                        case .failure(let error):
                            events.append(.refused(error))
                            return events
                        }
                        continue
                    }
                    if !input.mayRead(budget: 1) { continue rounds }
                    let (into, want) = input.stagingRead()
                    log.stagingWants.append(want)
                    let count = socket.read([(into, want)])
                    if count == 0 { break rounds }
                    input.stagingReadReturned(count, want: want)
                    continue
                }
                if input.staged > 0 {
                    let (from, count) = input.takeStagedPayload()
                    payload += Array(UnsafeRawBufferPointer(start: from, count: count))
                    if !input.inPayload {
                        events.append(.payload(payload))
                        continue
                    }
                }
                input.clearStaging()
                if !input.mayRead(budget: 1) { continue rounds }
                let tail = input.payloadReadTail
                let planned = input.payloadRemaining
                log.inPlaceTails.append(tail)
                let count = socket.read([(destination, planned), (input.staging, tail)])
                if count == 0 { break rounds }
                let placed = input.payloadReadReturned(count, planned: planned, tail: tail)
                payload += Array(UnsafeRawBufferPointer(start: destination, count: placed))
                if !input.inPayload { events.append(.payload(payload)) }
            }
        }
        return events
    }

    static func encoded(_ header: FrameHeader) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!) }
        return bytes
    }

    static func frame(_ opcode: WireOpcode, sequence: UInt32, payload: Int) -> (FrameHeader, [UInt8]) {
        var header = FrameHeader(opcode: opcode)
        header.sequence = sequence
        header.length = UInt32(payload)
        let body = (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(sequence)) }
        return (header, body)
    }

    /// A stream of small and large frames, and the events it must give.
    static func mixedStream() -> (bytes: [UInt8], events: [Event]) {
        var bytes: [UInt8] = []
        var events: [Event] = []
        let frames = [
            frame(.send, sequence: 0, payload: 10),
            frame(.acknowledge, sequence: 0, payload: 0),
            frame(.write, sequence: 1, payload: 9000),
            frame(.write, sequence: 2, payload: 5000),
            frame(.sendWithImmediate, sequence: 3, payload: 3),
        ]
        for (header, body) in frames {
            bytes += encoded(header) + body
            events.append(.header(header))
            if !body.isEmpty { events.append(.payload(body)) }
        }
        return (bytes, events)
    }

    @Test("small frames that arrive in one read are all found in the staging buffer")
    func smallFramesInOneRead() {
        var bytes: [UInt8] = []
        var expected: [Event] = []
        for sequence: UInt32 in 0..<4 {
            let (header, body) = Self.frame(.send, sequence: sequence, payload: 16)
            bytes += Self.encoded(header) + body
            expected += [.header(header), .payload(body)]
        }
        var input = FrameInput()
        var socket = ScriptedSocket(bytes: bytes, splits: [1 << 20])
        var log = ReadLog()
        let events = drive(&input, &socket, log: &log)
        #expect(events == expected)
        #expect(socket.spent)
        // One read brought everything: a window, not a header, was asked for.
        #expect(log.stagingWants.first == EngineTuning.readWindow)
        #expect(log.inPlaceTails.isEmpty)
    }

    @Test("the same frames come out whatever the splits of the reads", arguments: [[1], [7], [31, 33], [20, 12, 4096], [5000], [32], [100_000]])
    func arbitrarySplits(splits: [Int]) {
        let (bytes, expected) = Self.mixedStream()
        var input = FrameInput()
        var socket = ScriptedSocket(bytes: bytes, splits: splits)
        var log = ReadLog()
        let events = drive(&input, &socket, log: &log)
        #expect(events == expected)
        #expect(socket.spent)
    }

    @Test("a header split across reads is decoded only once it is whole")
    func headerSplitAcrossReads() {
        let (header, _) = Self.frame(.readRequest, sequence: 9, payload: 0)
        let bytes = Self.encoded(header)
        var input = FrameInput()
        var (into, want) = input.stagingRead()
        bytes.withUnsafeBytes { into.copyMemory(from: $0.baseAddress!, byteCount: 20) }
        input.stagingReadReturned(20, want: want)
        let incomplete = input.nextHeader()
        #expect(incomplete == nil)
        #expect(input.staged == 20)
        let mayReadAgain = input.mayRead(budget: 1)
        #expect(!mayReadAgain)  // the short read drained the socket
        input.beginRound()
        (into, want) = input.stagingRead()
        bytes.withUnsafeBytes { into.copyMemory(from: $0.baseAddress! + 20, byteCount: 12) }
        input.stagingReadReturned(12, want: want)
        let whole = input.nextHeader()
        #expect(whole == .success(header))
        #expect(input.staged == 0)
    }

    @Test("a bad header is refused with what is wrong with it", arguments: [
        (0, UInt8(2), FrameError.unsupportedVersion(2)),
        (1, UInt8(200), FrameError.unknownOpcode(200)),
    ])
    func badHeader(offset: Int, value: UInt8, error: FrameError) {
        let (good, body) = Self.frame(.send, sequence: 0, payload: 4)
        var bad = Self.encoded(good)
        bad[offset] = value
        var input = FrameInput()
        var socket = ScriptedSocket(bytes: Self.encoded(good) + body + bad, splits: [1 << 20])
        var log = ReadLog()
        let events = drive(&input, &socket, log: &log)
        #expect(events == [.header(good), .payload(body), .refused(error)])
    }

    @Test("an atomic request of the wrong length is refused")
    func atomicWrongLength() {
        var header = FrameHeader(opcode: .fetchAndAdd)
        header.length = 8
        var input = FrameInput()
        var socket = ScriptedSocket(bytes: Self.encoded(header) + [UInt8](repeating: 0, count: 8), splits: [64])
        var log = ReadLog()
        let events = drive(&input, &socket, log: &log)
        #expect(events == [.refused(.lengthNotAllowed(opcode: .fetchAndAdd, length: 8))])
    }

    @Test("a large payload straddles reads: its staged head is copied, the rest read in place, and the next read asks for one header")
    func payloadStraddlingReads() {
        let (first, body1) = Self.frame(.write, sequence: 0, payload: 20_000)
        let (second, body2) = Self.frame(.write, sequence: 1, payload: 20_000)
        let bytes = Self.encoded(first) + body1 + Self.encoded(second) + body2
        var input = FrameInput()
        // The first read brings the header and 1000 payload bytes; then
        // 6000 per read.
        var socket = ScriptedSocket(bytes: bytes, splits: [FrameHeader.size + 1000, 6000])
        var log = ReadLog()
        let events = drive(&input, &socket, log: &log)
        #expect(events == [.header(first), .payload(body1), .header(second), .payload(body2)])
        // In place, with a header's room behind while much is left, and a
        // window once little is.
        #expect(log.inPlaceTails.contains(FrameHeader.size))
        // After the large payload, no staging read asked for a window: the
        // second header came behind the first payload, or alone.
        #expect(log.stagingWants.dropFirst().allSatisfy { $0 <= FrameHeader.size })
    }

    @Test("after a large payload the next staging read asks for the rest of one header only")
    func headerOnlyAfterLargePayload() {
        var input = FrameInput()
        let (header, _) = Self.frame(.write, sequence: 0, payload: EngineTuning.largePayload)
        let bytes = Self.encoded(header)
        var (into, want) = input.stagingRead()
        #expect(want == EngineTuning.readWindow)
        bytes.withUnsafeBytes { into.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        input.stagingReadReturned(bytes.count, want: want)
        let decoded = input.nextHeader()
        #expect(decoded == .success(header))
        let hasPayload = input.expectPayload(header.payloadLength)
        #expect(hasPayload)
        let tail = input.payloadReadTail
        #expect(tail == FrameHeader.size)
        // The whole payload and 10 bytes of the next header arrive in place.
        input.clearStaging()
        let placed = input.payloadReadReturned(EngineTuning.largePayload + 10, planned: EngineTuning.largePayload, tail: FrameHeader.size)
        #expect(placed == EngineTuning.largePayload)
        let inPayload = input.inPayload
        #expect(!inPayload)
        #expect(input.staged == 10)
        (into, want) = input.stagingRead()
        #expect(want == FrameHeader.size - 10)
        let expectedInto = input.staging + 10
        #expect(into == expectedInto)
    }

    @Test("a read shorter than asked drains the socket for the round; a new round may read again")
    func shortReadDrains() {
        var input = FrameInput()
        let (_, want) = input.stagingRead()
        input.stagingReadReturned(want, want: want)
        let afterFullRead = input.mayRead(budget: 1)
        let withoutBudget = input.mayRead(budget: 0)
        #expect(afterFullRead)
        #expect(!withoutBudget)
        let (_, again) = input.stagingRead()
        input.stagingReadReturned(again - 1, want: again)
        let afterShortRead = input.mayRead(budget: 1)
        #expect(!afterShortRead)
        input.beginRound()
        let nextRound = input.mayRead(budget: 1)
        #expect(nextRound)
    }
}
