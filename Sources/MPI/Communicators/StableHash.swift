/// A 64-bit FNV-1a hash, the same in every process for the same input
/// (Swift's `Hasher` is seeded per process): ranks compare arguments MPI
/// requires to agree by exchanging one number.
struct StableHash {
    private var state: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func combine(bytes: some Sequence<UInt8>) {
        for byte in bytes { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
    }

    mutating func combine(_ values: [Int]) {
        for value in values {
            withUnsafeBytes(of: value.littleEndian) { combine(bytes: $0) }
        }
    }

    /// The hash as a non-negative Int (it travels in Int exchanges).
    var value: Int { Int(truncatingIfNeeded: state & 0x7fff_ffff_ffff_ffff) }
}
