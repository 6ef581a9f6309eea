import Synchronization

/// Issues memory keys that are unpredictable to a peer and never repeat in a
/// process's lifetime: a counter passed through a 32-bit Feistel permutation
/// whose round keys are drawn at random when the process starts. A
/// permutation of distinct counters gives distinct keys, so no table of
/// issued keys is needed; the round keys make the sequence unguessable
/// from the keys a peer has seen.
final class KeyGenerator: Sendable {
    private let roundKeys: [UInt32]
    private let counter = Atomic<UInt64>(1)

    init() {
        var generator = SystemRandomNumberGenerator()
        roundKeys = (0..<8).map { _ in UInt32.random(in: .min ... .max, using: &generator) }
    }

    /// Process-wide, so that no two devices of a process ever share a key.
    static let shared = KeyGenerator()

    /// The next key; 0 is never returned (it reads as "no key").
    func next() -> UInt32 {
        while true {
            let value = counter.wrappingAdd(1, ordering: .relaxed).oldValue
            precondition(value <= UInt64(UInt32.max), "all 2^32 memory keys of this process are used up")
            let key = permute(UInt32(value))
            if key != 0 { return key }
        }
    }

    private func permute(_ value: UInt32) -> UInt32 {
        var left = UInt16(value >> 16)
        var right = UInt16(value & 0xffff)
        for roundKey in roundKeys {
            let mixed = round(right, roundKey)
            (left, right) = (right, left ^ mixed)
        }
        return (UInt32(left) << 16) | UInt32(right)
    }

    private func round(_ half: UInt16, _ key: UInt32) -> UInt16 {
        var x = UInt32(half) &* 0x9E37_79B1 ^ key
        x ^= x >> 15
        x = x &* 0x85EB_CA77
        x ^= x >> 13
        return UInt16(truncatingIfNeeded: x ^ (x >> 16))
    }
}
