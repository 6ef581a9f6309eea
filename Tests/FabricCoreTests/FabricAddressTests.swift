import FabricCore
import Testing

@Suite("fabric addresses")
struct FabricAddressTests {
    static let sample = "fabric1/tcp/1/7471/10.0.0.2,127.0.0.1,fd00::5/9f2c1a0b3c4d5e6f"

    @Test("the printed form reads back to the same value, and survives a key-value store")
    func roundTrip() throws {
        let address = try FabricAddress(parsing: Self.sample)
        #expect(address.backend == "tcp")
        #expect(address.wireVersion == 1)
        #expect(address.hosts == ["10.0.0.2", "127.0.0.1", "fd00::5"])
        #expect(address.port == 7471)
        #expect(address.instance == 0x9f2c_1a0b_3c4d_5e6f)
        #expect(address.description == Self.sample)
        #expect(try FabricAddress(parsing: address.description) == address)
        #expect(address.endpoints.map(\.description) == ["10.0.0.2:7471", "127.0.0.1:7471", "[fd00::5]:7471"])
        let small = try FabricAddress(backend: "verbs", wireVersion: 1, hosts: ["192.168.7.1"], port: 9, instance: 1)
        #expect(small.description == "fabric1/verbs/1/9/192.168.7.1/0000000000000001")
        for text in [Self.sample, small.description] {
            #expect(!text.contains(" ") && !text.contains("=") && !text.contains(";"))
        }
    }

    /// Each bad input with a piece of the message that must name what is wrong.
    @Test("garbage, truncated, wrong-version, too long and wildcard text is refused, naming what is wrong", arguments: [
        ("", "not a fabric address"),
        ("hello world", "space"),
        ("PMI_KEY=fabric1/tcp/1/7471/127.0.0.1/9f2c1a0b3c4d5e6f", "'='"),
        ("fabric1/tcp/1/7471/127.0.0.1/9f2c1a0b3c4d5e6f;x", "';'"),
        ("tcp://127.0.0.1:7471", "not a fabric address"),
        ("fabric2/tcp/1/7471/127.0.0.1/9f2c1a0b3c4d5e6f", "format version 2"),
        ("fabric1/tcp/1/7471", "truncated: it ends before its host addresses"),
        ("fabric1/tcp/1/7471/127.0.0.1", "truncated: it ends before its device instance"),
        ("fabric1/tcp", "truncated: it ends before its wire version"),
        ("fabric1/tcp/1/7471/127.0.0.1/9f2c1a0b3c4d5e6f/extra", "7 fields"),
        ("fabric1/tcp/+1/7471/127.0.0.1/9f2c1a0b3c4d5e6f", "wire version '+1'"),
        ("fabric1/tcp/1/+7471/127.0.0.1/9f2c1a0b3c4d5e6f", "port '+7471'"),
        ("fabric1/tcp/1/07471/127.0.0.1/9f2c1a0b3c4d5e6f", "port '07471'"),
        ("fabric1/tcp/1/7471/127.0.0.1/9F2C1A0B3C4D5E6F", "hexadecimal digits (lower-case)"),
        ("fabric1/tcp/1/7471/127.0.0.1/+f2c1a0b3c4d5e6f", "hexadecimal digits (lower-case)"),
        ("fabric1/tcp/1/7471/127.0.0.1/0000000000000000", "instance 0"),
        ("fabric1/tcp/1/7471/::0/9f2c1a0b3c4d5e6f", "wildcard"),
        ("fabric1/tcp/1/7471/0:0::0/9f2c1a0b3c4d5e6f", "wildcard"),
        ("fabric1/ib/1/7471/127.0.0.1/9f2c1a0b3c4d5e6f", "unknown backend 'ib'"),
        ("fabric1/tcp/x/7471/127.0.0.1/9f2c1a0b3c4d5e6f", "wire version 'x'"),
        ("fabric1/tcp/1/0/127.0.0.1/9f2c1a0b3c4d5e6f", "port '0'"),
        ("fabric1/tcp/1/70000/127.0.0.1/9f2c1a0b3c4d5e6f", "port '70000'"),
        ("fabric1/tcp/1/7471/0.0.0.0/9f2c1a0b3c4d5e6f", "wildcard"),
        ("fabric1/tcp/1/7471/::/9f2c1a0b3c4d5e6f", "wildcard"),
        ("fabric1/tcp/1/7471/node-3/9f2c1a0b3c4d5e6f", "not a numeric IPv4 or IPv6 address"),
        ("fabric1/tcp/1/7471/127.0.0.1,,10.0.0.1/9f2c1a0b3c4d5e6f", "wildcard"),
        ("fabric1/tcp/1/7471/127.0.0.1/9f2c1a0b3c4d", "16 hexadecimal digits"),
        ("fabric1/tcp/1/7471/127.0.0.1/zz2c1a0b3c4d5e6f", "16 hexadecimal digits"),
        ("fabric1/tcp/1/7471/" + Array(repeating: "127.0.0.1", count: 30).joined(separator: ",") + "/9f2c1a0b3c4d5e6f", "more than 256"),
    ])
    func refused(text: String, naming: String) {
        #expect {
            try FabricAddress(parsing: text)
        } throws: { error in
            guard let error = error as? FabricError else { return false }
            return error.kind == .invalidArgument && error.message.contains(naming)
        }
    }

    @Test("building an address checks it the same way")
    func construction() {
        #expect(throws: FabricError.self) { try FabricAddress(backend: "tcp", wireVersion: 1, hosts: [], port: 1, instance: 1) }
        #expect(throws: FabricError.self) { try FabricAddress(backend: "tcp", wireVersion: 1, hosts: ["0.0.0.0"], port: 1, instance: 1) }
        #expect(throws: FabricError.self) { try FabricAddress(backend: "udp", wireVersion: 1, hosts: ["127.0.0.1"], port: 1, instance: 1) }
        #expect(throws: FabricError.self) { try FabricAddress(backend: "tcp", wireVersion: 1, hosts: ["127.0.0.1"], port: 0, instance: 1) }
        let many = Array(repeating: "fd00:1234:5678:9abc:def0:1234:5678:9abc", count: 8)
        #expect(throws: FabricError.self) { try FabricAddress(backend: "tcp", wireVersion: 1, hosts: many, port: 1, instance: 1) }
    }

    @Test("an address of the other backend or another wire version is refused by name")
    func reachability() throws {
        let address = try FabricAddress(parsing: Self.sample)
        #expect(throws: Never.self) { try address.checkReachable(byBackend: "tcp", wireVersion: 1) }
        #expect {
            try address.checkReachable(byBackend: "verbs", wireVersion: 1)
        } throws: { ($0 as? FabricError)?.message.contains("of the tcp backend; this device is verbs") == true }
        #expect {
            try address.checkReachable(byBackend: "tcp", wireVersion: 2)
        } throws: { ($0 as? FabricError)?.kind == .protocolMismatch }
    }
}
