import Glibc

/// One rank's connection to the launcher's PMI server: a non-blocking
/// socket, bytes in, requests out, replies in the protocol the rank's
/// first line chose (PMI-1 lines, or PMI-2 frames after
/// `cmd=init pmi_version=2`).
final class PMIServerConnection {
    enum Dialect { case undecided, pmi1, pmi2 }

    let rank: Int
    let descriptor: Int32
    private(set) var dialect: Dialect = .undecided
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private(set) var closed = false

    init(rank: Int, descriptor: Int32) {
        self.rank = rank
        self.descriptor = descriptor
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }

    deinit { close() }

    func close() {
        if !closed {
            closed = true
            _ = Glibc.close(descriptor)
        }
    }

    var wantsToWrite: Bool { !output.isEmpty }

    /// Reads what arrived. Returns false when the peer closed or the read
    /// failed.
    func readAvailable() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                input.append(contentsOf: chunk[..<count])
                if input.count > 2 * PMI2Message.maximumPayloadLength { return true }  // parse before reading more
                continue
            }
            if count == 0 { return false }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK
        }
    }

    /// Writes what is queued; false when the peer is gone.
    func flush() -> Bool {
        while !output.isEmpty {
            let count = output.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if count > 0 {
                output.removeFirst(count)
                continue
            }
            if count < 0 && errno == ENOTSOCK {
                let plain = output.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                if plain > 0 { output.removeFirst(plain); continue }
            }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
            return false
        }
        return true
    }

    /// The next complete request, nil when more bytes are needed. Requests
    /// the connection answers itself (init, maxes, names) are answered
    /// here and not returned.
    func nextRequest(context: PMIServerContext) throws(PMIError) -> PMIRequest? {
        while true {
            switch dialect {
            case .undecided, .pmi1:
                guard let newline = input.firstIndex(of: UInt8(ascii: "\n")) else {
                    if input.count >= PMI1Message.maximumLineLength {
                        throw PMIError(.malformedMessage, "rank \(rank) sent \(input.count) bytes without a newline: '\(PMI1Message.shown(input))'")
                    }
                    return nil
                }
                let line = Array(input[..<newline])
                input.removeSubrange(...newline)
                let message = try PMI1Message(decoding: line)
                if let request = try handlePMI1(message, context: context) { return request }
            case .pmi2:
                guard input.count >= PMI2Message.lengthFieldSize else { return nil }
                let length = try PMI2Message.payloadLength(decoding: input[..<PMI2Message.lengthFieldSize])
                guard input.count >= PMI2Message.lengthFieldSize + length else { return nil }
                let payload = Array(input[PMI2Message.lengthFieldSize..<(PMI2Message.lengthFieldSize + length)])
                input.removeFirst(PMI2Message.lengthFieldSize + length)
                let message = try PMI2Message(decodingPayload: payload)
                if let request = try handlePMI2(message, context: context) { return request }
            }
        }
    }

    // MARK: - PMI-1

    private func handlePMI1(_ message: PMI1Message, context: PMIServerContext) throws(PMIError) -> PMIRequest? {
        if dialect == .undecided {
            guard message.command == "init" else {
                throw PMIError(.unexpectedReply, "rank \(rank) began with '\(message)' instead of cmd=init")
            }
            if message["pmi_version"] == "2" {
                dialect = .pmi2
                reply1(PMI1Message("response_to_init", [("rc", "0"), ("pmi_version", "2"), ("pmi_subversion", "0")]))
            } else {
                dialect = .pmi1
                reply1(PMI1Message("response_to_init", [("rc", "0"), ("pmi_version", "1"), ("pmi_subversion", "1")]))
            }
            return nil
        }
        switch message.command {
        case "get_maxes":
            reply1(PMI1Message("maxes", [("rc", "0"), ("kvsname_max", "256"), ("keylen_max", String(PMI1Message.maximumKeyLength)), ("vallen_max", String(PMI1Message.maximumValueLength))]))
        case "get_my_kvsname":
            reply1(PMI1Message("my_kvsname", [("rc", "0"), ("kvsname", context.keyValueSpace)]))
        case "get_appnum":
            reply1(PMI1Message("appnum", [("rc", "0"), ("appnum", String(context.applicationNumber(rank)))]))
        case "get_universe_size":
            reply1(PMI1Message("universe_size", [("rc", "0"), ("size", String(context.size))]))
        case "put":
            guard let key = message["key"], let value = message["value"] else {
                throw PMIError(.malformedMessage, "rank \(rank)'s put has no key or no value: '\(message)'")
            }
            return .put(key: key, value: value)
        case "barrier_in":
            return .fence
        case "get":
            guard let key = message["key"] else { throw PMIError(.malformedMessage, "rank \(rank)'s get has no key: '\(message)'") }
            if key == "PMI_process_mapping" || key == "universeSize" { return .jobAttribute(key: key) }
            return .get(key: key)
        case "abort":
            let code = message["exitcode"].flatMap { Int32($0) } ?? 1
            return .abort(exitCode: code, message: message["msg"] ?? "")
        case "finalize":
            return .finalize
        default:
            throw PMIError(.malformedMessage, "rank \(rank) sent the PMI-1 command '\(message.command)', which this server does not serve")
        }
        return nil
    }

    // MARK: - PMI-2

    private func handlePMI2(_ message: PMI2Message, context: PMIServerContext) throws(PMIError) -> PMIRequest? {
        switch message.command {
        case "fullinit":
            if let claimed = message["pmirank"], Int(claimed) != rank {
                throw PMIError(.unexpectedReply, "rank \(rank) says in fullinit that it is rank \(claimed)")
            }
            reply2(PMI2Message("fullinit-response", [
                ("rc", "0"), ("pmi-version", "2"), ("pmi-subversion", "0"), ("rank", String(rank)), ("size", String(context.size)),
                ("appnum", String(context.applicationNumber(rank))), ("debugged", "FALSE"), ("pmiverbose", "FALSE"),
            ]))
        case "job-getid":
            reply2(PMI2Message("job-getid-response", [("rc", "0"), ("jobid", context.keyValueSpace)]))
        case "kvs-put":
            guard let key = message["key"], let value = message["value"] else {
                throw PMIError(.malformedMessage, "rank \(rank)'s kvs-put has no key or no value: '\(message)'")
            }
            return .put(key: key, value: value)
        case "kvs-fence":
            return .fence
        case "kvs-get":
            guard let key = message["key"] else { throw PMIError(.malformedMessage, "rank \(rank)'s kvs-get has no key: '\(message)'") }
            return .get(key: key)
        case "info-getjobattr":
            guard let key = message["key"] else { throw PMIError(.malformedMessage, "rank \(rank)'s info-getjobattr has no key: '\(message)'") }
            return .jobAttribute(key: key)
        case "abort":
            return .abort(exitCode: nil, message: message["msg"] ?? "")
        case "finalize":
            return .finalize
        default:
            throw PMIError(.malformedMessage, "rank \(rank) sent the PMI-2 command '\(message.command)', which this server does not serve")
        }
        return nil
    }

    // MARK: - Replies

    /// Answers a request `nextRequest` returned.
    func answer(_ request: PMIRequest, value: String?) {
        switch (dialect, request) {
        case (.pmi2, .put):
            reply2(PMI2Message("kvs-put-response", [("rc", "0")]))
        case (.pmi2, .fence):
            reply2(PMI2Message("kvs-fence-response", [("rc", "0")]))
        case (.pmi2, .get), (.pmi2, .jobAttribute):
            let command = if case .get = request { "kvs-get-response" } else { "info-getjobattr-response" }
            if let value {
                reply2(PMI2Message(command, [("rc", "0"), ("found", "TRUE"), ("value", value)]))
            } else {
                reply2(PMI2Message(command, [("rc", "0"), ("found", "FALSE")]))
            }
        case (.pmi2, .finalize):
            reply2(PMI2Message("finalize-response", [("rc", "0")]))
        case (_, .put):
            reply1(PMI1Message("put_result", [("rc", "0")]))
        case (_, .fence):
            reply1(PMI1Message("barrier_out", [("rc", "0")]))
        case (_, .get(let key)), (_, .jobAttribute(let key)):
            if let value {
                reply1(PMI1Message("get_result", [("rc", "0"), ("value", value)]))
            } else {
                reply1(PMI1Message("get_result", [("rc", "-1"), ("msg", "key_\(key)_not_found")]))
            }
        case (_, .finalize):
            reply1(PMI1Message("finalize_ack", [("rc", "0")]))
        case (_, .abort):
            break
        }
    }

    private func reply1(_ message: PMI1Message) {
        // Values the server sends come from ranks' puts, which were read
        // with the same rules, so encoding does not fail; if it did, the
        // rank would wait for a reply that never comes: say so.
        do { output += try message.encoded() } catch { output += Array("cmd=\(message.command) rc=-1\n".utf8) }
    }

    private func reply2(_ message: PMI2Message) {
        do { output += try message.encoded() } catch {
            let fallback = "cmd=\(message.command);rc=-1;"
            output += Array((String(fallback.utf8.count).padding(toLength: 6, withPad: " ", startingAt: 0) + fallback).utf8)
        }
    }
}

/// What every connection of a job needs to know.
public struct PMIServerContext: Sendable {
    public var keyValueSpace: String
    public var size: Int
    /// Each rank's program on an MPMD command line (0 for the first).
    public var applicationNumbers: [Int]
    /// `(vector,(firstNode,nodes,ranksPerNode),...)`: which ranks share a node.
    public var processMapping: String

    public init(keyValueSpace: String, size: Int, applicationNumbers: [Int], processMapping: String) {
        self.keyValueSpace = keyValueSpace
        self.size = size
        self.applicationNumbers = applicationNumbers
        self.processMapping = processMapping
    }

    func applicationNumber(_ rank: Int) -> Int {
        rank < applicationNumbers.count ? applicationNumbers[rank] : 0
    }
}

extension String {
    fileprivate func padding(toLength length: Int, withPad pad: String, startingAt: Int) -> String {
        count >= length ? self : self + String(repeating: pad, count: length - count)
    }
}
