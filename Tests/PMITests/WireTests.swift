import PMI
import Testing

@Suite("PMI wire formats")
struct WireTests {
    @Test("PMI-1 lines as Hydra sends them read back, with extra keys, no rc, and a msg with spaces")
    func pmi1Replies() throws {
        let hydra = try PMI1Message(decoding: Array("cmd=get_result rc=0 msg=success value=fabric1/tcp/2/7471/10.0.0.2/9f2c1a0b3c4d5e6f".utf8))
        #expect(hydra.command == "get_result")
        #expect(hydra.returnCode == 0)
        #expect(hydra["value"] == "fabric1/tcp/2/7471/10.0.0.2/9f2c1a0b3c4d5e6f")
        let missing = try PMI1Message(decoding: Array("cmd=get_result rc=-1 msg=key addr-9 not found value=unknown".utf8))
        #expect(missing.returnCode == -1)
        #expect(missing["msg"] == "key addr-9 not found")
        #expect(missing["value"] == "unknown")
        let noCode = try PMI1Message(decoding: Array("cmd=barrier_out".utf8))
        #expect(noCode.returnCode == 0 && noCode.fields.isEmpty)
        let reordered = try PMI1Message(decoding: Array("cmd=maxes vallen_max=1024 kvsname_max=256 keylen_max=64".utf8))
        #expect(reordered["keylen_max"] == "64")
    }

    @Test("a PMI-1 request encodes to one line and reads back the same")
    func pmi1RoundTrip() throws {
        let message = PMI1Message("put", [("kvsname", "kvs_1_0"), ("key", "addr-0"), ("value", "fabric1/tcp/2/7471/127.0.0.1/0000000000000001")])
        let line = try message.encoded()
        #expect(String(decoding: line, as: UTF8.self) == "cmd=put kvsname=kvs_1_0 key=addr-0 value=fabric1/tcp/2/7471/127.0.0.1/0000000000000001\n")
        #expect(try PMI1Message(decoding: line.dropLast()) == message)
    }

    @Test("PMI-1 input that is not a message is refused, naming what is wrong", arguments: [
        ("", "does not start with cmd=NAME"),
        ("put key=a", "does not start with cmd=NAME"),
        ("cmd= key=a", "does not start with cmd=NAME"),
        ("key=a cmd=put", "does not start with cmd=NAME"),
        ("cmd=put key=a\u{01}", "not printable ASCII"),
        ("cmd=put " + String(repeating: "k=v ", count: 300), "longer than 1024"),
    ])
    func pmi1Garbage(line: String, naming: String) {
        #expect {
            try PMI1Message(decoding: Array(line.utf8))
        } throws: { error in
            (error as? PMIError)?.kind == .malformedMessage && (error as? PMIError)?.message.contains(naming) == true
        }
    }

    @Test("a PMI-1 request the server could not read back is refused before it is sent", arguments: [
        PMI1Message("put", [("key", "a b")]),
        PMI1Message("put", [("k=y", "v")]),
        PMI1Message("put", [("", "v")]),
        PMI1Message("put", [("key", "caf\u{e9}")]),
        PMI1Message("put", [(String(repeating: "k", count: 65), "v")]),
        PMI1Message("put", [("key", String(repeating: "v", count: 1025))]),
    ])
    func pmi1Unsendable(message: PMI1Message) {
        #expect {
            try message.encoded()
        } throws: { ($0 as? PMIError)?.kind == .invalidArgument }
    }

    @Test("PMI-2 length fields padded on either side, as Slurm and Hydra pad them")
    func pmi2Padding() throws {
        #expect(try PMI2Message.payloadLength(decoding: Array("51    ".utf8)) == 51)
        #expect(try PMI2Message.payloadLength(decoding: Array("   113".utf8)) == 113)
        #expect(try PMI2Message.payloadLength(decoding: Array("000007".utf8)) == 7)
        for bad in ["      ", "5 1   ", "-1    ", "0x10  ", "999999", "12345"] {
            #expect(throws: PMIError.self) { try PMI2Message.payloadLength(decoding: Array(bad.utf8)) }
        }
    }

    @Test("a PMI-2 message encodes with its length and reads back the same")
    func pmi2RoundTrip() throws {
        let message = PMI2Message("fullinit", [("pmijobid", "12.0"), ("pmirank", "3"), ("threaded", "FALSE")])
        let bytes = try message.encoded()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text == "52    cmd=fullinit;pmijobid=12.0;pmirank=3;threaded=FALSE;")
        let length = try PMI2Message.payloadLength(decoding: bytes.prefix(6))
        #expect(length == bytes.count - 6)
        #expect(try PMI2Message(decodingPayload: bytes.dropFirst(6)) == message)
        let reply = try PMI2Message(decodingPayload: Array("cmd=kvs-get-response;rc=0;found=TRUE;value=fabric1/verbs/2/1/10.0.0.1/00000000000000aa;".utf8))
        #expect(reply["found"] == "TRUE" && reply.returnCode == 0)
    }

    @Test("PMI-2 garbage is refused, and a ';' in a value is refused before sending")
    func pmi2Garbage() {
        for bad in ["", ";;;", "rc=0;cmd=x;", "cmd=x;novalue;", "cmd=x;=v;", "cmd=x;k=\u{7f};"] {
            #expect(throws: PMIError.self) { try PMI2Message(decodingPayload: Array(bad.utf8)) }
        }
        #expect {
            try PMI2Message("kvs-put", [("key", "a"), ("value", "x;y")]).encoded()
        } throws: { ($0 as? PMIError)?.kind == .invalidArgument }
        #expect {
            try PMI2Message("kvs-put", [("key", "a"), ("value", String(repeating: "v", count: 1025))]).encoded()
        } throws: { ($0 as? PMIError)?.kind == .invalidArgument }
    }
}

@Suite("values in a form PMI carries")
struct ValueTextTests {
    @Test("text with spaces, ';', '=', newlines and non-ASCII survives both protocols")
    func roundTrip() throws {
        let text = "no RDMA device; using tcp = fine\nnäme 100%"
        let value = PMIValueText.encode(text)
        #expect(!value.contains(" ") && !value.contains(";") && !value.contains("=") && !value.contains("\n"))
        _ = try PMI1Message("put", [("key", "k"), ("value", value)]).encoded()
        _ = try PMI2Message("kvs-put", [("key", "k"), ("value", value)]).encoded()
        #expect(PMIValueText.decode(value) == text)
        #expect(PMIValueText.encode("fabric1/tcp/2/7471/10.0.0.2/9f2c1a0b3c4d5e6f") == "fabric1/tcp/2/7471/10.0.0.2/9f2c1a0b3c4d5e6f")
        #expect(PMIValueText.decode("%4") == nil && PMIValueText.decode("%zz") == nil)
    }
}
