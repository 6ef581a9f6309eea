/// What PMI-1 lines and PMI-2 messages have in common: a command and its
/// `key=value` fields in order (a key may repeat; lookups take the first).
public protocol PMICommandMessage: Hashable, Sendable {
    var command: String { get }
    var fields: [(key: String, value: String)] { get }
}

extension PMICommandMessage {
    /// The value of the first field named `key`.
    public subscript(key: String) -> String? {
        fields.first(where: { $0.key == key })?.value
    }

    /// The reply's return code: 0 when the reply carries none (servers
    /// leave it out on success), nil when it is not a number.
    public var returnCode: Int? {
        guard let text = self["rc"] else { return 0 }
        return Int(text)
    }

    public static func == (left: Self, right: Self) -> Bool {
        left.command == right.command && left.fields.map(\.key) == right.fields.map(\.key)
            && left.fields.map(\.value) == right.fields.map(\.value)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(command)
        for field in fields {
            hasher.combine(field.key)
            hasher.combine(field.value)
        }
    }
}
