import FabricCore
import Testing

@Suite("endpoints and work requests")
struct EndpointTests {
    @Test("host:port, [v6]:port and bad input")
    func parsing() throws {
        #expect(try Endpoint(parsing: "127.0.0.1:80") == Endpoint(host: "127.0.0.1", port: 80))
        #expect(try Endpoint(parsing: "[::1]:7000") == Endpoint(host: "::1", port: 7000))
        #expect(try Endpoint(parsing: "node-3:18515") == Endpoint(host: "node-3", port: 18515))
        for bad in ["", "host", "::1:80", "host:99999", ":80", "[::1]", "[::1]x80", "host:port"] {
            #expect(throws: FabricError.self, "\(bad)") { try Endpoint(parsing: bad) }
        }
        #expect(Endpoint(host: "::1", port: 5).description == "[::1]:5")
    }

    @Test("scatter lists count and sum")
    func scatterLists() {
        let a = ScatterGatherElement(address: 0x1000, length: 10, localKey: LocalKey(rawValue: 1))
        let b = ScatterGatherElement(address: 0x2000, length: 20, localKey: LocalKey(rawValue: 1))
        #expect(ScatterList.empty.count == 0 && ScatterList.empty.totalLength == 0)
        #expect(ScatterList.single(a).count == 1 && ScatterList.single(a).totalLength == 10)
        #expect(ScatterList.multiple([a, b]).count == 2 && ScatterList.multiple([a, b]).totalLength == 30)
        #expect(ScatterList.multiple([a, b])[1] == b)
    }

    @Test("a scatter element of 4 GiB or more is refused, never cut to its low 32 bits")
    func elementLength() throws {
        let pointer = UnsafeRawPointer(bitPattern: 0x10000)!
        let largest = try ScatterGatherElement(pointer: pointer, length: Int(UInt32.max), localKey: LocalKey(rawValue: 1))
        #expect(largest.length == UInt32.max)
        for length in [1 << 32, (1 << 32) + 8, -1] {
            #expect {
                try ScatterGatherElement(pointer: pointer, length: length, localKey: LocalKey(rawValue: 1))
            } throws: { ($0 as? FabricError)?.message.contains("\(length) bytes") == true }
        }
    }

    @Test("completions describe themselves")
    func completionText() {
        let failure = Completion(workRequestID: 4, status: .remoteAccessError, opcode: .write, queuePair: QueuePairNumber(rawValue: 2), detail: .outOfBounds)
        #expect(failure.description.contains("remote access error"))
        #expect(failure.description.contains("outside the registered region"))
        let success = Completion(workRequestID: 5, status: .success, opcode: .receive, byteLength: 8, immediate: 3, queuePair: QueuePairNumber(rawValue: 2))
        #expect(success.hasImmediate && success.immediate == 3 && success.isSuccess)
        #expect(MemoryLayout<Completion>.size <= 32)
    }
}
