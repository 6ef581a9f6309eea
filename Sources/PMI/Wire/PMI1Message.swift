/// PMI-1's message: one line of `name=value` words separated by spaces,
/// the first word naming the command (`cmd=put kvsname=k key=a value=b`).
/// This file is the one place that writes and reads the format.
///
/// What peers send, seen from MPICH's Hydra and Slurm: keys in any order,
/// extra keys (`msg=`), a reply without `rc` (meaning success), and a
/// server message whose `msg=` text has spaces in it. Reading accepts all
/// of them; writing refuses what a server could not read back.
public struct PMI1Message: PMICommandMessage, CustomStringConvertible {
    /// The longest line, newline included, that both servers accept.
    public static let maximumLineLength = 1024
    /// Hydra's and Slurm's limits, as their `get_maxes` report them.
    public static let maximumKeyLength = 64
    public static let maximumValueLength = 1024

    /// `cmd` or, for the multi-line spawn request, `mcmd`.
    public var command: String
    /// The words after the command, in order.
    public var fields: [(key: String, value: String)]

    public init(_ command: String, _ fields: [(key: String, value: String)] = []) {
        self.command = command
        self.fields = fields
    }

    /// The line without its newline.
    public var description: String {
        (["cmd=" + command] + fields.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
    }

    /// The line to send, newline included. Refuses a key or value that
    /// would not read back as written: empty keys, spaces, `=` in a key,
    /// bytes outside printable ASCII, or a line over 1024 bytes.
    public func encoded() throws(PMIError) -> [UInt8] {
        try Self.checkWord(command, what: "command")
        for field in fields {
            try Self.checkWord(field.key, what: "key")
            guard !field.key.contains("=") else {
                throw PMIError(.invalidArgument, "PMI-1 key '\(field.key)' contains '='")
            }
            guard field.key.utf8.count <= Self.maximumKeyLength else {
                throw PMIError(.invalidArgument, "PMI-1 key '\(field.key.prefix(80))' is longer than \(Self.maximumKeyLength) bytes")
            }
            guard field.value.utf8.count <= Self.maximumValueLength else {
                throw PMIError(.invalidArgument, "PMI-1 value of '\(field.key)' is \(field.value.utf8.count) bytes, more than \(Self.maximumValueLength)")
            }
            if !field.value.isEmpty { try Self.checkWord(field.value, what: "value of '\(field.key)'") }
        }
        let line = Array((description + "\n").utf8)
        guard line.count <= Self.maximumLineLength else {
            throw PMIError(.invalidArgument, "PMI-1 line '\(description.prefix(60))...' is \(line.count) bytes, more than \(Self.maximumLineLength)")
        }
        return line
    }

    /// Reads one line (without its newline). The first word must be
    /// `cmd=NAME` or `mcmd=NAME`.
    public init(decoding line: some Collection<UInt8>) throws(PMIError) {
        guard line.count < Self.maximumLineLength else {
            throw PMIError(.malformedMessage, "PMI-1 line of \(line.count) bytes, longer than \(Self.maximumLineLength)")
        }
        for byte in line where byte < 0x20 || byte > 0x7e {
            throw PMIError(.malformedMessage, "PMI-1 line has byte 0x\(String(byte, radix: 16)), which is not printable ASCII: '\(Self.shown(line))'")
        }
        let words = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard let first = words.first, let command = Self.split(first), command.key == "cmd" || command.key == "mcmd",
            !command.value.isEmpty
        else {
            throw PMIError(.malformedMessage, "PMI-1 line does not start with cmd=NAME: '\(Self.shown(line))'")
        }
        var fields: [(key: String, value: String)] = []
        for word in words.dropFirst() {
            if let field = Self.split(word), !field.key.isEmpty {
                fields.append(field)
            } else if let last = fields.popLast() {
                // A word without '=' continues the previous value: a
                // server's `msg=` text may hold spaces.
                fields.append((last.key, last.value + " " + String(decoding: word, as: UTF8.self)))
            } else {
                throw PMIError(.malformedMessage, "PMI-1 word '\(String(decoding: word, as: UTF8.self))' is not key=value: '\(Self.shown(line))'")
            }
        }
        self.command = command.value
        self.fields = fields
    }

    private static func split(_ word: some Collection<UInt8>) -> (key: String, value: String)? {
        guard let equals = word.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        return (String(decoding: word[..<equals], as: UTF8.self), String(decoding: word[word.index(after: equals)...], as: UTF8.self))
    }

    private static func checkWord(_ word: String, what: String) throws(PMIError) {
        guard !word.isEmpty else { throw PMIError(.invalidArgument, "PMI-1 \(what) is empty") }
        for byte in word.utf8 where byte <= 0x20 || byte > 0x7e {
            throw PMIError(.invalidArgument, "PMI-1 \(what) '\(word.prefix(80))' has a space or a byte outside printable ASCII")
        }
    }

    static func shown(_ bytes: some Collection<UInt8>) -> String {
        let text = String(decoding: bytes.prefix(80).map { (0x20...0x7e).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
        return bytes.count > 80 ? text + "..." : text
    }
}
