/// PMI-2's message: a six-character decimal length, then that many bytes
/// of `cmd=NAME;key=value;...;`. This file is the one place that writes
/// and reads the format.
///
/// Servers pad the length differently (Slurm on the right, `"51    "`;
/// Hydra on the left, `"   113"`): reading trims both. Neither server
/// honours the specification's `;;` escape (both cut a value at its first
/// `;`), so writing refuses a `;` in a value instead of escaping it.
public struct PMI2Message: PMICommandMessage, CustomStringConvertible {
    public static let lengthFieldSize = 6
    /// The longest payload either server handles.
    public static let maximumPayloadLength = 64 * 1024
    public static let maximumKeyLength = 64
    public static let maximumValueLength = 1024

    public var command: String
    /// The fields after `cmd`, in order.
    public var fields: [(key: String, value: String)]

    public init(_ command: String, _ fields: [(key: String, value: String)] = []) {
        self.command = command
        self.fields = fields
    }

    /// The payload as text.
    public var description: String {
        "cmd=\(command);" + fields.map { "\($0.key)=\($0.value);" }.joined()
    }

    /// Length field and payload, ready to send.
    public func encoded() throws(PMIError) -> [UInt8] {
        try Self.check(command, what: "command", limit: Self.maximumKeyLength)
        for field in fields {
            try Self.check(field.key, what: "key", limit: Self.maximumKeyLength)
            guard !field.key.contains("=") else { throw PMIError(.invalidArgument, "PMI-2 key '\(field.key)' contains '='") }
            if !field.value.isEmpty {
                try Self.check(field.value, what: "value of '\(field.key)'", limit: Self.maximumValueLength)
            }
        }
        let payload = Array(description.utf8)
        guard payload.count <= Self.maximumPayloadLength else {
            throw PMIError(.invalidArgument, "PMI-2 message of \(payload.count) bytes, more than \(Self.maximumPayloadLength)")
        }
        let digits = String(payload.count)
        let lengthField = Array((digits + String(repeating: " ", count: Self.lengthFieldSize - digits.utf8.count)).utf8)
        return lengthField + payload
    }

    /// Reads the six-byte length field; the payload length it announces.
    public static func payloadLength(decoding field: some Collection<UInt8>) throws(PMIError) -> Int {
        guard field.count == lengthFieldSize else {
            throw PMIError(.malformedMessage, "PMI-2 length field of \(field.count) bytes, expected \(lengthFieldSize)")
        }
        let digits = field.drop(while: { $0 == UInt8(ascii: " ") }).prefix(while: { $0 != UInt8(ascii: " ") })
        let rest = field.drop(while: { $0 == UInt8(ascii: " ") }).dropFirst(digits.count)
        guard !digits.isEmpty, rest.allSatisfy({ $0 == UInt8(ascii: " ") }),
            digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let length = Int(String(decoding: digits, as: UTF8.self))
        else {
            throw PMIError(.malformedMessage, "PMI-2 length field '\(PMI1Message.shown(field))' is not a decimal number")
        }
        guard length <= maximumPayloadLength else {
            throw PMIError(.malformedMessage, "PMI-2 message announces \(length) bytes, more than \(maximumPayloadLength)")
        }
        return length
    }

    /// Reads a payload (without its length field).
    public init(decodingPayload payload: some Collection<UInt8>) throws(PMIError) {
        for byte in payload where byte < 0x20 || byte > 0x7e {
            throw PMIError(.malformedMessage, "PMI-2 message has byte 0x\(String(byte, radix: 16)), which is not printable ASCII: '\(PMI1Message.shown(payload))'")
        }
        var command: String?
        var fields: [(key: String, value: String)] = []
        for part in payload.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: true) {
            guard let equals = part.firstIndex(of: UInt8(ascii: "=")), equals != part.startIndex else {
                throw PMIError(.malformedMessage, "PMI-2 field '\(PMI1Message.shown(part))' is not key=value: '\(PMI1Message.shown(payload))'")
            }
            let key = String(decoding: part[..<equals], as: UTF8.self)
            let value = String(decoding: part[part.index(after: equals)...], as: UTF8.self)
            if command == nil {
                guard key == "cmd", !value.isEmpty else {
                    throw PMIError(.malformedMessage, "PMI-2 message does not start with cmd=NAME: '\(PMI1Message.shown(payload))'")
                }
                command = value
            } else {
                fields.append((key, value))
            }
        }
        guard let command else { throw PMIError(.malformedMessage, "PMI-2 message is empty") }
        self.command = command
        self.fields = fields
    }

    private static func check(_ word: String, what: String, limit: Int) throws(PMIError) {
        guard !word.isEmpty else { throw PMIError(.invalidArgument, "PMI-2 \(what) is empty") }
        guard word.utf8.count <= limit else {
            throw PMIError(.invalidArgument, "PMI-2 \(what) is \(word.utf8.count) bytes, more than \(limit)")
        }
        for byte in word.utf8 where byte < 0x20 || byte > 0x7e || byte == UInt8(ascii: ";") {
            throw PMIError(.invalidArgument, "PMI-2 \(what) '\(word.prefix(80))' has ';' or a byte outside printable ASCII")
        }
    }
}
