/// Page-aligned memory owned by a test: allocated and filled at once,
/// freed with the object (keep it alive while a region covers it).
public final class Buffer: @unchecked Sendable {  // the bytes are the test's to share; the object is immutable
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    public init(_ count: Int, fill: UInt8 = 0) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 4096)
        pointer.initializeMemory(as: UInt8.self, repeating: fill, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: count) }

    /// Fills the buffer with a pattern that differs per `seed` and per byte.
    public func fillPattern(seed: UInt8) {
        for i in 0..<count { pointer.storeBytes(of: Self.patternByte(i, seed: seed), toByteOffset: i, as: UInt8.self) }
    }

    /// Whether `count` bytes at `offset` hold the pattern of `seed` (from its start).
    public func matchesPattern(seed: UInt8, count n: Int? = nil, offset: Int = 0) -> Bool {
        for i in 0..<(n ?? count) where pointer.load(fromByteOffset: offset + i, as: UInt8.self) != Self.patternByte(i, seed: seed) {
            return false
        }
        return true
    }

    public func word(_ offset: Int = 0) -> UInt64 { pointer.load(fromByteOffset: offset, as: UInt64.self) }
    public func setWord(_ value: UInt64, _ offset: Int = 0) { pointer.storeBytes(of: value, toByteOffset: offset, as: UInt64.self) }

    private static func patternByte(_ index: Int, seed: UInt8) -> UInt8 {
        UInt8(truncatingIfNeeded: index &* 31 &+ Int(seed))
    }
}
