import FabricCore

/// The connection tag of a rank pair: the same for both ranks, so that two
/// ranks connecting to each other at once end with one queue pair (the
/// fabric's tie-break), and the acceptor learns from it who connected.
/// Lower rank in the high 32 bits, higher rank in the low 32, with the top
/// bit set so that no pair's tag is 0.
struct PairTag: Hashable {
    let lower: Int
    let higher: Int

    init(_ a: Int, _ b: Int) {
        lower = min(a, b)
        higher = max(a, b)
    }

    var value: UInt64 { 1 << 63 | UInt64(lower) << 32 | UInt64(higher) }

    /// Reads a tag; nil when it is not a pair tag of ranks below `size`.
    init?(_ value: UInt64, size: Int) {
        guard value >> 63 == 1 else { return nil }
        let lower = Int((value >> 32) & 0x7fff_ffff)
        let higher = Int(value & 0xffff_ffff)
        guard lower < higher, higher < size else { return nil }
        self.lower = lower
        self.higher = higher
    }

    /// The rank of the pair that is not `rank`; nil if `rank` is in neither place.
    func peer(of rank: Int) -> Int? {
        rank == lower ? higher : rank == higher ? lower : nil
    }
}
