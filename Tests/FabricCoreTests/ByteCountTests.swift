import FabricCore
import Testing

@Suite("byte counts written with units")
struct ByteCountTests {
    @Test("a bare number is bytes; K, M and G are binary multiples in either case, with or without iB")
    func units() {
        #expect(ByteCount.parse("4096") == 4096)
        #expect(ByteCount.parse("8B") == 8)
        #expect(ByteCount.parse("64K") == 64 << 10)
        #expect(ByteCount.parse("64k") == 64 << 10)
        #expect(ByteCount.parse("64KiB") == 64 << 10)
        #expect(ByteCount.parse("1M") == 1 << 20)
        #expect(ByteCount.parse("1mib") == 1 << 20)
        #expect(ByteCount.parse("2G") == 2 << 30)
        #expect(ByteCount.parse("0") == 0)
    }

    @Test("no number, a sign, a fraction, an unknown unit or a count past Int is not a byte count")
    func rejects() {
        for text in ["", "K", "-1", "+5", "1.5M", "12furlongs", "64KB", " 64K", "9223372036854775807K"] {
            #expect(ByteCount.parse(text) == nil, "\(text)")
        }
    }
}
