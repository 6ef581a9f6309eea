/// Text in a form every PMI server carries as a value: PMI-1 splits on
/// spaces, PMI-2 on `;`, both stop at newlines. Bytes other than letters,
/// digits and `-._/,:@+` are written `%XX`, as in a URL.
public enum PMIValueText {
    private static let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/,:@+".utf8)

    public static func encode(_ text: String) -> String { encode(bytes: text.utf8) }

    /// Any bytes, not only text (a program's output).
    public static func encode(bytes: some Sequence<UInt8>) -> String {
        var out = ""
        for byte in bytes {
            if plain.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let digits = String(byte, radix: 16, uppercase: true)
                out += "%" + (digits.count == 1 ? "0" : "") + digits
            }
        }
        return out
    }

    /// The text `encode` made; nil for a malformed escape or bytes that
    /// are not UTF-8.
    public static func decode(_ value: String) -> String? {
        decodeBytes(value).flatMap { String(validating: $0, as: UTF8.self) }
    }

    /// The bytes `encode` made; nil for a malformed escape.
    public static func decodeBytes(_ value: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = value.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let number = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(number)
            } else {
                bytes.append(byte)
            }
        }
        return bytes
    }
}
