/// Comparing secrets without telling an attacker, through the time it takes,
/// where the first difference is.
package enum ConstantTime {
    /// True when both byte strings are equal; the time depends only on the
    /// length.
    package static func equal(_ received: [UInt8], _ expected: [UInt8]) -> Bool {
        guard received.count == expected.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<received.count { difference |= received[index] ^ expected[index] }
        return difference == 0
    }
}
