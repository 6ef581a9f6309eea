/// PMI-1, the text protocol every launcher that sets `PMI_FD` or
/// `PMI_PORT` serves (Hydra, Slurm's `--mpi=pmi2` plugin, Flux).
/// Strictly one request, then its reply.
public final class PMI1Client: BootstrapClient {
    public let rank: Int
    public let size: Int
    public let protocolName: String
    /// The job's key-value space, named by the server.
    public let keyValueSpace: String
    /// The limits the server reported (`get_maxes`).
    public let maximumKeyLength: Int
    public let maximumValueLength: Int

    private let stream: PMIStream
    private let timeouts: BootstrapTimeouts

    /// Over an inherited descriptor (`PMI_FD`); rank and size come from the
    /// launcher's environment (`PMI_RANK`, `PMI_SIZE`).
    public convenience init(descriptor: Int32, rank: Int, size: Int, timeouts: BootstrapTimeouts = BootstrapTimeouts()) throws(PMIError) {
        try self.init(stream: PMIStream(descriptor: descriptor), rank: rank, size: size, name: "PMI-1 over PMI_FD", timeouts: timeouts)
    }

    /// Over a connection to `PMI_PORT`: the server tells rank and size
    /// after the client names itself with `PMI_ID`.
    public convenience init(host: String, port: UInt16, identifier: String, timeouts: BootstrapTimeouts = BootstrapTimeouts()) throws(PMIError) {
        let stream = try PMIStream.connect(host: host, port: port, timeout: timeouts.request)
        let deadline = ContinuousClock.now + timeouts.request
        try Self.send(PMI1Message("initack", [("pmiid", identifier)]), on: stream, deadline: deadline)
        _ = try Self.receive("initack", on: stream, deadline: deadline)
        var settings: [String: String] = [:]
        // The server follows with `set size=`, `set rank=`, `set debug=`.
        while settings["size"] == nil || settings["rank"] == nil || settings["debug"] == nil {
            let reply = try Self.receive("set", on: stream, deadline: deadline)
            for field in reply.fields { settings[field.key] = field.value }
        }
        guard let size = settings["size"].flatMap(Int.init), size > 0,
            let rank = settings["rank"].flatMap(Int.init), (0..<size).contains(rank)
        else {
            throw PMIError(.unexpectedReply, "the PMI server at \(host):\(port) gave rank '\(settings["rank"] ?? "")' and size '\(settings["size"] ?? "")', which are not a rank within a size")
        }
        try self.init(stream: stream, rank: rank, size: size, name: "PMI-1 over PMI_PORT", timeouts: timeouts)
    }

    private init(stream: PMIStream, rank: Int, size: Int, name: String, timeouts: BootstrapTimeouts) throws(PMIError) {
        self.stream = stream
        self.rank = rank
        self.size = size
        self.protocolName = name
        self.timeouts = timeouts
        let deadline = ContinuousClock.now + timeouts.request
        try Self.send(PMI1Message("init", [("pmi_version", "1"), ("pmi_subversion", "1")]), on: stream, deadline: deadline)
        let initialized = try Self.receive("response_to_init", on: stream, deadline: deadline)
        guard initialized.returnCode == 0 else {
            throw PMIError(.refused, "the PMI server refused PMI-1 init: \(initialized)")
        }
        try Self.send(PMI1Message("get_maxes"), on: stream, deadline: deadline)
        let maxes = try Self.receive("maxes", on: stream, deadline: deadline)
        maximumKeyLength = maxes["keylen_max"].flatMap(Int.init) ?? PMI1Message.maximumKeyLength
        maximumValueLength = maxes["vallen_max"].flatMap(Int.init) ?? PMI1Message.maximumValueLength
        try Self.send(PMI1Message("get_my_kvsname"), on: stream, deadline: deadline)
        let named = try Self.receive("my_kvsname", on: stream, deadline: deadline)
        guard let space = named["kvsname"], !space.isEmpty else {
            throw PMIError(.unexpectedReply, "the PMI server's my_kvsname reply names no kvsname: \(named)")
        }
        keyValueSpace = space
    }

    public func put(key: String, value: String) throws(PMIError) {
        guard key.utf8.count <= maximumKeyLength, value.utf8.count <= maximumValueLength else {
            throw PMIError(.invalidArgument, "PMI-1 put of '\(key.prefix(80))': key or value longer than the server's limits (\(maximumKeyLength), \(maximumValueLength))")
        }
        let reply = try request(PMI1Message("put", [("kvsname", keyValueSpace), ("key", key), ("value", value)]), expecting: "put_result")
        guard reply.returnCode == 0 else { throw PMIError(.refused, "the PMI server refused to put '\(key)': \(reply)") }
    }

    public func fence() throws(PMIError) {
        _ = try request(PMI1Message("barrier_in"), expecting: "barrier_out", timeout: timeouts.fence)
    }

    public func get(key: String) throws(PMIError) -> String {
        let reply = try request(PMI1Message("get", [("kvsname", keyValueSpace), ("key", key)]), expecting: "get_result")
        guard reply.returnCode == 0, let value = reply["value"] else {
            throw PMIError(.keyNotFound, "no rank put the key '\(key)' in the job's key-value space (\(protocolName): \(reply))")
        }
        return value
    }

    public func abort(exitCode: Int32, message: String) {
        let deadline = ContinuousClock.now + timeouts.request
        try? Self.send(PMI1Message("abort", [("exitcode", String(exitCode))]), on: stream, deadline: deadline)
    }

    public func finalize() throws(PMIError) {
        _ = try request(PMI1Message("finalize"), expecting: "finalize_ack")
        stream.close()
    }

    private func request(_ message: PMI1Message, expecting reply: String, timeout: Duration? = nil) throws(PMIError) -> PMI1Message {
        let deadline = ContinuousClock.now + (timeout ?? timeouts.request)
        try Self.send(message, on: stream, deadline: deadline)
        return try Self.receive(reply, on: stream, deadline: deadline)
    }

    private static func send(_ message: PMI1Message, on stream: PMIStream, deadline: ContinuousClock.Instant) throws(PMIError) {
        try stream.write(message.encoded(), deadline: deadline)
    }

    private static func receive(_ command: String, on stream: PMIStream, deadline: ContinuousClock.Instant) throws(PMIError) -> PMI1Message {
        let line = try stream.readLine(maximum: PMI1Message.maximumLineLength, deadline: deadline)
        let message = try PMI1Message(decoding: line)
        guard message.command == command else {
            throw PMIError(.unexpectedReply, "the PMI server answered '\(message)' where cmd=\(command) was due")
        }
        return message
    }
}
