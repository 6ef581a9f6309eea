import Glibc
import PMI

/// The messages between mpirun and its proxy on another host, over the
/// remote shell's standard input (mpirun to proxy) and output (proxy to
/// mpirun). One message per line: a verb, then `key=value` words whose
/// values are written with `PMIValueText` (so no value holds a space or
/// a newline). This file is the one place that writes and reads the
/// format; version 1.
///
/// mpirun first sends the job secret (the proxy's ranks need it, and it
/// must never appear on a command line), then a nonce the proxy answers
/// with a proof of the secret, then the job, then `start`.
enum ProxyMessage: Equatable, Sendable {
    static let version = 1
    /// The longest line either side accepts (output travels in chunks).
    static let maximumLineLength = 1 << 20
    /// Output is sent in pieces of at most this many bytes.
    static let outputChunk = 64 * 1024

    // mpirun to proxy
    case secret(String)
    case hello(version: Int, nonce: String)
    case job(size: Int, keyValueSpace: String, processMapping: String)
    case application(index: Int, program: String, workingDirectory: String?)
    case argument(application: Int, value: String)
    /// A variable for one program's ranks, or every rank's (nil).
    case environment(application: Int?, name: String, value: String)
    case rank(rank: Int, application: Int)
    case start
    /// A value of the job's key-value space (before `fence` or `fenceDone`).
    case value(key: String, value: String)
    case fenceDone
    case signal(Int32)
    /// Asks what each unfinished rank is doing.
    case report
    /// mpirun's standard input, for rank 0 on the proxy's host; then its end.
    case input(data: [UInt8])
    case inputEnd

    // proxy to mpirun
    case proof(String)
    case started
    case output(rank: Int, isError: Bool, data: [UInt8])
    /// Every rank of the proxy's host entered the fence; the `value`
    /// messages before it are what they put.
    case fence
    case abort(rank: Int, exitCode: Int32?, message: String)
    case ended(rank: Int, end: RankEnd)
    case failed(rank: Int, reason: String)
    case state(rank: Int, processID: Int32, text: String)
    /// The proxy could not do its part; it ends.
    case problem(String)
    /// Every rank of the host ended and its output was sent.
    case done

    var line: String {
        func words(_ verb: String, _ fields: [(String, String)], raw: [(String, String)] = []) -> String {
            ([verb] + fields.map { "\($0.0)=\(PMIValueText.encode($0.1))" } + raw.map { "\($0.0)=\($0.1)" }).joined(separator: " ") + "\n"
        }
        switch self {
        case .secret(let value): return words("secret", [("value", value)])
        case .hello(let version, let nonce): return words("hello", [("version", String(version)), ("nonce", nonce)])
        case .job(let size, let space, let mapping): return words("job", [("size", String(size)), ("space", space), ("mapping", mapping)])
        case .application(let index, let program, let directory):
            return words("application", [("index", String(index)), ("program", program)] + (directory.map { [("wdir", $0)] } ?? []))
        case .argument(let application, let value): return words("argument", [("application", String(application)), ("value", value)])
        case .environment(let application, let name, let value):
            return words("environment", (application.map { [("application", String($0))] } ?? []) + [("name", name), ("value", value)])
        case .rank(let rank, let application): return words("rank", [("rank", String(rank)), ("application", String(application))])
        case .start: return "start\n"
        case .value(let key, let value): return words("value", [("key", key), ("value", value)])
        case .fenceDone: return "fence-done\n"
        case .signal(let number): return words("signal", [("number", String(number))])
        case .report: return "report\n"
        case .input(let data): return words("input", [], raw: [("data", PMIValueText.encode(bytes: data))])
        case .inputEnd: return "input-end\n"
        case .proof(let value): return words("proof", [("value", value)])
        case .started: return "started\n"
        case .output(let rank, let isError, let data):
            return words("output", [("rank", String(rank)), ("stream", isError ? "err" : "out")], raw: [("data", PMIValueText.encode(bytes: data))])
        case .fence: return "fence\n"
        case .abort(let rank, let code, let message):
            return words("abort", [("rank", String(rank))] + (code.map { [("code", String($0))] } ?? []) + [("message", message)])
        case .ended(let rank, let end):
            switch end {
            case .exited(let code): return words("ended", [("rank", String(rank)), ("exited", String(code))])
            case .killed(let number): return words("ended", [("rank", String(rank)), ("killed", String(number))])
            }
        case .failed(let rank, let reason): return words("failed", [("rank", String(rank)), ("reason", reason)])
        case .state(let rank, let processID, let text): return words("state", [("rank", String(rank)), ("pid", String(processID)), ("text", text)])
        case .problem(let text): return words("problem", [("text", text)])
        case .done: return "done\n"
        }
    }

    /// Reads one line (without its newline); names what is wrong.
    init(parsing line: some Collection<UInt8>) throws(LaunchError) {
        guard line.count < Self.maximumLineLength else { throw LaunchError("a proxy message of \(line.count) bytes, more than \(Self.maximumLineLength)") }
        let words = line.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        guard let verb = words.first else { throw LaunchError("an empty proxy message") }
        var fields: [String: String] = [:]
        var rawFields: [String: String] = [:]
        for word in words.dropFirst() {
            guard let equals = word.firstIndex(of: "=") else {
                throw LaunchError("proxy message '\(verb)': '\(word.prefix(60))' is not key=value")
            }
            let key = String(word[..<equals])
            let raw = String(word[word.index(after: equals)...])
            rawFields[key] = raw
            // Output data may be any bytes: it is decoded where it is used.
            if key == "data" { continue }
            guard let value = PMIValueText.decode(raw) else {
                throw LaunchError("proxy message '\(verb)': the value of \(key) is not escaped text")
            }
            fields[key] = value
        }
        func text(_ key: String) throws(LaunchError) -> String {
            guard let value = fields[key] else { throw LaunchError("proxy message '\(verb)' has no \(key)") }
            return value
        }
        func number(_ key: String) throws(LaunchError) -> Int {
            guard let value = Int(try text(key)), value >= 0 else { throw LaunchError("proxy message '\(verb)': \(key) is not a number") }
            return value
        }
        func code(_ key: String) throws(LaunchError) -> Int32 {
            guard let value = Int32(try text(key)) else { throw LaunchError("proxy message '\(verb)': \(key) is not a status") }
            return value
        }
        switch verb {
        case "secret": self = .secret(try text("value"))
        case "hello": self = .hello(version: try number("version"), nonce: try text("nonce"))
        case "job": self = .job(size: try number("size"), keyValueSpace: try text("space"), processMapping: try text("mapping"))
        case "application": self = .application(index: try number("index"), program: try text("program"), workingDirectory: fields["wdir"])
        case "argument": self = .argument(application: try number("application"), value: try text("value"))
        case "environment":
            self = .environment(application: fields["application"] == nil ? nil : try number("application"), name: try text("name"), value: try text("value"))
        case "rank": self = .rank(rank: try number("rank"), application: try number("application"))
        case "start": self = .start
        case "value": self = .value(key: try text("key"), value: try text("value"))
        case "fence-done": self = .fenceDone
        case "signal": self = .signal(try code("number"))
        case "report": self = .report
        case "input":
            guard let encoded = rawFields["data"], let data = PMIValueText.decodeBytes(encoded) else {
                throw LaunchError("proxy message 'input' has no readable data")
            }
            self = .input(data: data)
        case "input-end": self = .inputEnd
        case "proof": self = .proof(try text("value"))
        case "started": self = .started
        case "output":
            let stream = try text("stream")
            guard stream == "out" || stream == "err" else { throw LaunchError("proxy message 'output': stream '\(stream)'") }
            guard let encoded = rawFields["data"], let data = PMIValueText.decodeBytes(encoded) else {
                throw LaunchError("proxy message 'output' has no readable data")
            }
            self = .output(rank: try number("rank"), isError: stream == "err", data: data)
        case "fence": self = .fence
        case "abort": self = .abort(rank: try number("rank"), exitCode: fields["code"] == nil ? nil : try code("code"), message: fields["message"] ?? "")
        case "ended":
            if fields["exited"] != nil {
                self = .ended(rank: try number("rank"), end: .exited(try code("exited")))
            } else {
                self = .ended(rank: try number("rank"), end: .killed(try code("killed")))
            }
        case "failed": self = .failed(rank: try number("rank"), reason: try text("reason"))
        case "state": self = .state(rank: try number("rank"), processID: try code("pid"), text: try text("text"))
        case "problem": self = .problem(try text("text"))
        case "done": self = .done
        default: throw LaunchError("unknown proxy message '\(verb.prefix(40))'")
        }
    }
}

/// Reads proxy messages from a non-blocking descriptor, a line at a time.
final class ProxyChannelReader {
    let descriptor: Int32
    private var buffer: [UInt8] = []
    private(set) var ended = false

    init(descriptor: Int32) { self.descriptor = descriptor }

    /// The messages that arrived; throws on a malformed one.
    func read() throws(LaunchError) -> [ProxyMessage] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 { buffer += chunk[..<count]; continue }
            if count == 0 { ended = true }
            break
        }
        var messages: [ProxyMessage] = []
        while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            let line = buffer[..<newline]
            defer { buffer.removeSubrange(...newline) }
            messages.append(try ProxyMessage(parsing: line))
        }
        if buffer.count >= ProxyMessage.maximumLineLength { throw LaunchError("a proxy message longer than \(ProxyMessage.maximumLineLength) bytes") }
        return messages
    }
}

/// Writes proxy messages to a descriptor (blocking: both ends read all the
/// time, and a stalled peer is a failed one).
struct ProxyChannelWriter {
    let descriptor: Int32

    @discardableResult
    func send(_ message: ProxyMessage) -> Bool {
        let bytes = Array(message.line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written > 0 { offset += written; continue }
            if written < 0 && (errno == EINTR || errno == EAGAIN) {
                var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                _ = poll(&entry, 1, 1000)
                continue
            }
            return false
        }
        return true
    }
}
