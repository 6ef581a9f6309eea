/// What the proxy channel's fuzz target calls (Sources/FabricTestSupport):
/// the format stays internal to the launcher.
package enum ProxyChannelFuzzing {
    /// Each line parsed; a parsed message written and parsed again must be
    /// equal.
    package static func feed(_ bytes: [UInt8]) {
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard let message = try? ProxyMessage(parsing: line) else { continue }
            let written = Array(message.line.utf8)
            guard written.last == UInt8(ascii: "\n"), let again = try? ProxyMessage(parsing: written.dropLast()), again == message else {
                fatalError("proxy message '\(String(decoding: line, as: UTF8.self))' does not read back as written")
            }
        }
    }

    package static func seeds() -> [[UInt8]] {
        let messages: [ProxyMessage] = [
            .secret("0123456789abcdef0123456789abcdef"), .hello(version: 1, nonce: "abc"), .job(size: 2, keyValueSpace: "k", processMapping: "(vector,(0,1,2))"),
            .application(index: 0, program: "/bin/true", workingDirectory: "/tmp"), .argument(application: 0, value: "a b"),
            .environment(application: nil, name: "A", value: "1"), .rank(rank: 1, application: 0), .start, .value(key: "k", value: "v"),
            .fenceDone, .signal(15), .report, .proof("00"), .started, .output(rank: 1, isError: false, data: Array("hello\n".utf8)), .fence,
            .abort(rank: 1, exitCode: 3, message: "m"), .ended(rank: 1, end: .killed(9)), .failed(rank: 1, reason: "r"),
            .state(rank: 1, processID: 5, text: "t"), .problem("p"), .done,
        ]
        return [Array(messages.map(\.line).joined().utf8), Array("output rank=0 stream=err data=%FF%00\nended rank=2 exited=7\n".utf8)]
    }
}
