/// The random numbers behind the `loss` fault: splitmix64, seeded from the
/// rule's seed and the queue pair's number, so that every queue pair draws
/// its own sequence and a run with the same seed loses the same packets.
/// Not for anything that needs unpredictability.
struct LossGenerator {
    private var state: UInt64

    init(seed: UInt64, queuePair: UInt32) {
        state = seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(queuePair)
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}
