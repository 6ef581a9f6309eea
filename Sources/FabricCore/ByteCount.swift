/// A number of bytes written the way people write them in settings and on
/// command lines: `4096`, `64K`, `64KiB`, `1M`, `2G`, `8B`.
public enum ByteCount {
    /// The multiples of a unit are binary (K is 1024) and the unit's case
    /// does not matter (`64k` is `64K`).
    private static let units: [(suffix: String, scale: Int)] = [
        ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30),
        ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("b", 1),
    ]

    /// The bytes `text` names, or nil when it is not a whole number of at
    /// least 0 with one of the units above (or none), or the count does not
    /// fit an `Int`. What range a caller accepts is the caller's to check.
    public static func parse(_ text: some StringProtocol) -> Int? {
        let lower = text.lowercased()
        var digits = Substring(lower)
        var scale = 1
        for unit in units where lower.hasSuffix(unit.suffix) {
            digits = digits.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), let value = Int(digits) else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? nil : bytes
    }

}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
