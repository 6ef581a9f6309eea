import PMI
import Testing

@Suite("PMI clients against scripted servers")
struct ClientTests {
    static let address = "fabric1/tcp/2/7471/127.0.0.1/9f2c1a0b3c4d5e6f"

    @Test("PMI-1: the exchange recorded against Hydra, from init to finalize")
    func pmi1Exchange() throws {
        let server = ScriptedServer([
            .line(expect: "cmd=init pmi_version=1 pmi_subversion=1", reply: "cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0\n"),
            .line(expect: "cmd=get_maxes", reply: "cmd=maxes kvsname_max=256 keylen_max=64 vallen_max=1024\n"),
            .line(expect: "cmd=get_my_kvsname", reply: "cmd=my_kvsname kvsname=kvs_18328_0_1233226485_vm\n"),
            .line(expect: "cmd=put kvsname=kvs_18328_0_1233226485_vm key=addr-0 value=\(Self.address)", reply: "cmd=put_result rc=0 msg=success\n"),
            .line(expect: "cmd=barrier_in", reply: "cmd=barrier_out\n"),
            .line(expect: "cmd=get kvsname=kvs_18328_0_1233226485_vm key=addr-1", reply: "cmd=get_result rc=0 msg=success value=\(Self.address)\n"),
            .line(expect: "cmd=get kvsname=kvs_18328_0_1233226485_vm key=nobody", reply: "cmd=get_result rc=-1 msg=key_nobody_not_found value=unknown\n"),
            .line(expect: "cmd=finalize", reply: "cmd=finalize_ack\n"),
        ])
        let client = try PMI1Client(descriptor: server.clientDescriptor, rank: 0, size: 2)
        #expect(client.keyValueSpace == "kvs_18328_0_1233226485_vm")
        #expect(client.rank == 0 && client.size == 2)
        try client.put(key: "addr-0", value: Self.address)
        try client.fence()
        #expect(try client.get(key: "addr-1") == Self.address)
        #expect {
            try client.get(key: "nobody")
        } throws: { ($0 as? PMIError)?.kind == .keyNotFound && ($0 as? PMIError)?.message.contains("'nobody'") == true }
        try client.finalize()
        #expect(server.finished() == nil)
    }

    @Test("PMI-2: the init line alone first, then frames; Slurm's right-padded lengths")
    func pmi2Exchange() throws {
        let server = ScriptedServer([
            .line(expect: "cmd=init pmi_version=2 pmi_subversion=0", reply: "cmd=response_to_init rc=0 pmi_version=2 pmi_subversion=0\n"),
            .frame(expect: "cmd=fullinit;pmijobid=41.0;pmirank=1;threaded=FALSE;", reply: "cmd=fullinit-response;rc=0;pmi-version=2;pmi-subversion=0;rank=1;size=3;appnum=0;debugged=FALSE;pmiverbose=FALSE;"),
            .frame(expect: "cmd=job-getid;", reply: "cmd=job-getid-response;rc=0;jobid=41.0;"),
            .frame(expect: "cmd=kvs-put;key=addr-1;value=\(Self.address);", reply: "cmd=kvs-put-response;rc=0;"),
            .frame(expect: "cmd=kvs-fence;", reply: "cmd=kvs-fence-response;rc=0;"),
            .frame(expect: "cmd=kvs-get;jobid=41.0;srcid=-1;key=addr-2;", reply: "cmd=kvs-get-response;rc=0;found=TRUE;value=\(Self.address);"),
            .frame(expect: "cmd=kvs-get;jobid=41.0;srcid=-1;key=nobody;", reply: "cmd=kvs-get-response;rc=0;found=FALSE;"),
            .frame(expect: "cmd=finalize;", reply: "cmd=finalize-response;rc=0;"),
        ])
        let client = try PMI2Client(descriptor: server.clientDescriptor, rank: 1, jobID: "41.0")
        #expect(client.rank == 1 && client.size == 3 && client.jobID == "41.0")
        try client.put(key: "addr-1", value: Self.address)
        try client.fence()
        #expect(try client.get(key: "addr-2") == Self.address)
        #expect { try client.get(key: "nobody") } throws: { ($0 as? PMIError)?.kind == .keyNotFound }
        try client.finalize()
        #expect(server.finished() == nil)
    }

    @Test("a server that sends garbage, truncates, oversizes or goes quiet ends in a named error, not a hang")
    func badServers() throws {
        // Short enough for a test, long enough for a loaded machine to schedule
        // the scripted server's thread.
        let quick = BootstrapTimeouts(request: .seconds(2), fence: .seconds(2))
        let cases: [(ScriptedServer.Step, PMIError.Kind)] = [
            (.send("this is not PMI\n"), .malformedMessage),
            (.send("cmd=response_to_init rc=0"), .connectionLost),  // then closes mid-line
            (.send(String(repeating: "x", count: 5000)), .malformedMessage),
            (.send("cmd=barrier_out\n"), .unexpectedReply),
            (.send(""), .timedOut),
        ]
        for (step, kind) in cases {
            let steps: [ScriptedServer.Step]
            if kind == .timedOut {
                steps = [.line(expect: "cmd=init", reply: ""), .pause(.seconds(4))]
            } else {
                steps = [.line(expect: "cmd=init", reply: ""), step, .close]
            }
            let server = ScriptedServer(steps)
            let started = ContinuousClock.now
            #expect {
                try PMI1Client(descriptor: server.clientDescriptor, rank: 0, size: 1, timeouts: quick)
            } throws: { ($0 as? PMIError)?.kind == kind }
            #expect(ContinuousClock.now - started < .seconds(8))
            _ = server.finished()
        }
        // PMI-2: an oversized length and a length that is not a number.
        for frame in ["999999", "abcdef"] {
            let server = ScriptedServer([
                .line(expect: "cmd=init pmi_version=2", reply: "cmd=response_to_init rc=0 pmi_version=2 pmi_subversion=0\n"),
                .frameThenRaw(expect: "cmd=fullinit;", send: frame), .close,
            ])
            #expect {
                try PMI2Client(descriptor: server.clientDescriptor, rank: 0, jobID: nil, timeouts: quick)
            } throws: { ($0 as? PMIError)?.kind == .malformedMessage }
            _ = server.finished()
        }
    }

    @Test("a server that speaks only PMI-1 refuses the PMI-2 init, and says so")
    func pmi2Refused() {
        let server = ScriptedServer([
            .line(expect: "cmd=init pmi_version=2", reply: "cmd=response_to_init rc=-1 pmi_version=1 pmi_subversion=1\n"), .close,
        ])
        #expect {
            try PMI2Client(descriptor: server.clientDescriptor, rank: 0, jobID: nil)
        } throws: { ($0 as? PMIError)?.kind == .refused && ($0 as? PMIError)?.message.contains("does not speak PMI-2") == true }
        _ = server.finished()
    }
}
