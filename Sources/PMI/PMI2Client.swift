/// PMI-2 over an inherited descriptor (`PMI_FD`), as Slurm's
/// `srun --mpi=pmi2` and Hydra serve it: one PMI-1 line to choose the
/// version, then length-prefixed messages.
public final class PMI2Client: BootstrapClient {
    public let rank: Int
    public let size: Int
    public let protocolName = "PMI-2 over PMI_FD"
    /// The job's identifier as the server names it (`job-getid`).
    public let jobID: String
    /// The application number (MPMD: which program of the command line).
    public let applicationNumber: Int

    private let stream: PMIStream
    private let timeouts: BootstrapTimeouts

    /// `rank` is the launcher's `PMI_RANK`; `jobID` its `PMI_JOBID`, which
    /// Slurm requires in the first request and Hydra does not set.
    public init(descriptor: Int32, rank: Int, jobID: String?, timeouts: BootstrapTimeouts = BootstrapTimeouts()) throws(PMIError) {
        stream = PMIStream(descriptor: descriptor)
        self.timeouts = timeouts
        let deadline = ContinuousClock.now + timeouts.request
        // The version line must go alone and be answered before anything
        // else is sent: Slurm reads it with one short read, and a second
        // message in the same read is lost.
        try stream.write(PMI1Message("init", [("pmi_version", "2"), ("pmi_subversion", "0")]).encoded(), deadline: deadline)
        let answer = try PMI1Message(decoding: stream.readLine(maximum: PMI1Message.maximumLineLength, deadline: deadline))
        guard answer.command == "response_to_init" else {
            throw PMIError(.unexpectedReply, "the PMI server answered '\(answer)' to the PMI-2 init line")
        }
        guard answer.returnCode == 0, answer["pmi_version"] == "2" else {
            throw PMIError(.refused, "the PMI server does not speak PMI-2: \(answer)")
        }
        var fields: [(key: String, value: String)] = []
        if let jobID { fields.append(("pmijobid", jobID)) }
        fields += [("pmirank", String(rank)), ("threaded", "FALSE")]
        let started = try Self.exchange(PMI2Message("fullinit", fields), expecting: "fullinit-response", on: stream, deadline: deadline)
        guard started.returnCode == 0 else { throw PMIError(.refused, "the PMI server refused fullinit: \(started)") }
        guard let size = started["size"].flatMap(Int.init), size > 0,
            let given = started["rank"].flatMap(Int.init), (0..<size).contains(given)
        else {
            throw PMIError(.unexpectedReply, "the PMI server's fullinit reply gives no rank within a size: \(started)")
        }
        guard given == rank else {
            throw PMIError(.unexpectedReply, "the PMI server says this is rank \(given), PMI_RANK says \(rank)")
        }
        self.rank = given
        self.size = size
        applicationNumber = started["appnum"].flatMap(Int.init) ?? 0
        let identified = try Self.exchange(PMI2Message("job-getid"), expecting: "job-getid-response", on: stream, deadline: deadline)
        guard identified.returnCode == 0, let id = identified["jobid"], !id.isEmpty else {
            throw PMIError(.unexpectedReply, "the PMI server's job-getid reply names no job: \(identified)")
        }
        self.jobID = id
    }

    public func put(key: String, value: String) throws(PMIError) {
        let reply = try request(PMI2Message("kvs-put", [("key", key), ("value", value)]), expecting: "kvs-put-response")
        guard reply.returnCode == 0 else { throw PMIError(.refused, "the PMI server refused to put '\(key)': \(reply)") }
    }

    public func fence() throws(PMIError) {
        let reply = try request(PMI2Message("kvs-fence"), expecting: "kvs-fence-response", timeout: timeouts.fence)
        guard reply.returnCode == 0 else { throw PMIError(.refused, "the PMI server's fence failed: \(reply)") }
    }

    public func get(key: String) throws(PMIError) -> String {
        let reply = try request(PMI2Message("kvs-get", [("jobid", jobID), ("srcid", "-1"), ("key", key)]), expecting: "kvs-get-response")
        guard reply.returnCode == 0, reply["found"] == "TRUE", let value = reply["value"] else {
            throw PMIError(.keyNotFound, "no rank put the key '\(key)' in the job's key-value space (\(protocolName): \(reply))")
        }
        return value
    }

    public func abort(exitCode: Int32, message: String) {
        let deadline = ContinuousClock.now + timeouts.request
        let text = String(message.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != ";" ? Character($0) : "_" }.prefix(512))
        var fields: [(key: String, value: String)] = [("isworld", "TRUE")]
        if !text.isEmpty { fields.append(("msg", text)) }
        // No reply: the server ends the job.
        if let bytes = try? PMI2Message("abort", fields).encoded() { try? stream.write(bytes, deadline: deadline) }
    }

    public func finalize() throws(PMIError) {
        let reply = try request(PMI2Message("finalize"), expecting: "finalize-response")
        guard reply.returnCode == 0 else { throw PMIError(.refused, "the PMI server's finalize failed: \(reply)") }
        stream.close()
    }

    private func request(_ message: PMI2Message, expecting command: String, timeout: Duration? = nil) throws(PMIError) -> PMI2Message {
        try Self.exchange(message, expecting: command, on: stream, deadline: ContinuousClock.now + (timeout ?? timeouts.request))
    }

    private static func exchange(_ message: PMI2Message, expecting command: String, on stream: PMIStream, deadline: ContinuousClock.Instant) throws(PMIError) -> PMI2Message {
        try stream.write(message.encoded(), deadline: deadline)
        let length = try PMI2Message.payloadLength(decoding: stream.read(exactly: PMI2Message.lengthFieldSize, deadline: deadline))
        let reply = try PMI2Message(decodingPayload: stream.read(exactly: length, deadline: deadline))
        guard reply.command == command else {
            throw PMIError(.unexpectedReply, "the PMI server answered '\(reply)' where cmd=\(command) was due")
        }
        return reply
    }
}
