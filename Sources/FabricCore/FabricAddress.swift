#if canImport(Glibc)
import Glibc
#endif

/// A listener's address as a value one process can hand to another (through
/// a launcher's key-value store, a file, a command line): the backend, its
/// wire version, the concrete addresses it can be reached at (never a
/// wildcard), the port, and the identity of the device that listens.
///
/// Printed form (at most 256 bytes, no space, `=` or `;`, so that it
/// survives PMI key-value stores):
///
///     fabric1/tcp/2/7471/10.0.0.2,127.0.0.1/9f2c1a0b3c4d5e6f
///     |       |   | |    |                  device instance, 16 hex digits
///     |       |   | |    addresses, comma-separated, most useful first
///     |       |   | port
///     |       |   wire version of the backend
///     |       backend: tcp or verbs
///     format and its version
public struct FabricAddress: Hashable, Sendable, CustomStringConvertible {
    /// The version of the printed form this library writes and reads.
    public static let formatVersion = 1
    public static let maximumLength = 256
    public static let backends = ["tcp", "verbs"]

    public let backend: String
    public let wireVersion: Int
    /// Numeric IPv4 or IPv6 addresses, in the order a connector tries them.
    public let hosts: [String]
    public let port: UInt16
    /// The listening device's identity (`FabricDevice.instance`): a connector
    /// checks that it reached this device and not another that took its
    /// address since.
    public let instance: UInt64

    /// Checks every part: a known backend, numeric addresses that are not
    /// wildcards, a port, and a printed form within 256 bytes.
    public init(backend: String, wireVersion: Int, hosts: [String], port: UInt16, instance: UInt64) throws(FabricError) {
        guard Self.backends.contains(backend) else {
            throw FabricError(.invalidArgument, "fabric address: unknown backend '\(backend)' (expected tcp or verbs)")
        }
        guard (0...Int(UInt16.max)).contains(wireVersion) else {
            throw FabricError(.invalidArgument, "fabric address: wire version \(wireVersion) is outside 0...65535")
        }
        guard !hosts.isEmpty else { throw FabricError(.invalidArgument, "fabric address: no host address") }
        for host in hosts { try Self.checkHost(host) }
        guard port != 0 else { throw FabricError(.invalidArgument, "fabric address: port 0 is not an address to connect to") }
        self.backend = backend
        self.wireVersion = wireVersion
        self.hosts = hosts
        self.port = port
        self.instance = instance
        let length = description.utf8.count
        guard length <= Self.maximumLength else {
            throw FabricError(.invalidArgument, "fabric address: \(length) bytes printed, more than \(Self.maximumLength); give fewer host addresses")
        }
    }

    /// Reads the printed form; refuses anything else with an error that
    /// names what is wrong.
    public init(parsing text: String) throws(FabricError) {
        func refuse(_ what: String) -> FabricError {
            let shown = text.count > 64 ? String(text.prefix(64)) + "..." : text
            return FabricError(.invalidArgument, "fabric address '\(shown)': \(what)")
        }
        guard text.utf8.count <= Self.maximumLength else {
            throw refuse("\(text.utf8.count) bytes, more than \(Self.maximumLength)")
        }
        if let bad = text.first(where: { $0 == " " || $0 == "=" || $0 == ";" || $0.isNewline }) {
            throw refuse("contains '\(bad == " " ? "space" : String(bad))', which no fabric address has")
        }
        let fields = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let marker = fields[0]
        guard marker.hasPrefix("fabric"), let version = Int(marker.dropFirst("fabric".count)) else {
            throw refuse("not a fabric address (it should start with fabric\(Self.formatVersion)/)")
        }
        guard version == Self.formatVersion else {
            throw refuse("format version \(version); this library reads version \(Self.formatVersion)")
        }
        let names = ["format", "backend", "wire version", "port", "host addresses", "device instance"]
        guard fields.count >= names.count else {
            throw refuse("truncated: it ends before its \(names[fields.count])")
        }
        guard fields.count == names.count else {
            throw refuse("\(fields.count) fields separated by '/', expected \(names.count)")
        }
        guard Self.backends.contains(fields[1]) else {
            throw refuse("unknown backend '\(fields[1])' (expected tcp or verbs)")
        }
        // Numbers in their one printed spelling (digits only, no sign, no
        // leading zero): two texts that differ name two addresses.
        guard Self.isCanonicalDecimal(fields[2]), let wire = Int(fields[2]), (0...Int(UInt16.max)).contains(wire) else {
            throw refuse("wire version '\(fields[2])' is not a number from 0 to 65535 in plain digits")
        }
        guard Self.isCanonicalDecimal(fields[3]), let port = UInt16(fields[3]), port != 0 else {
            throw refuse("port '\(fields[3])' is not a number from 1 to 65535 in plain digits")
        }
        let hosts = fields[4].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for host in hosts {
            do { try Self.checkHost(host) } catch { throw refuse(error.message.replacingPrefix("fabric address: ", with: "")) }
        }
        guard fields[5].utf8.count == 16, fields[5].utf8.allSatisfy({ Self.lowerHexDigits.contains($0) }),
            let instance = UInt64(fields[5], radix: 16)
        else {
            throw refuse("device instance '\(fields[5])' is not 16 hexadecimal digits (lower-case)")
        }
        guard instance != 0 else {
            throw refuse("device instance 0 names no device (instances are never 0)")
        }
        try self.init(backend: fields[1], wireVersion: wire, hosts: hosts, port: port, instance: instance)
    }

    public var description: String {
        "fabric\(Self.formatVersion)/\(backend)/\(wireVersion)/\(port)/\(hosts.joined(separator: ","))/\(Self.instanceText(instance))"
    }

    /// A device instance as addresses and messages print it: 16 hex digits.
    public static func instanceText(_ instance: UInt64) -> String {
        let digits = String(instance, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Where to connect, in order.
    public var endpoints: [Endpoint] { hosts.map { Endpoint(host: $0, port: port) } }

    /// Refuses an address a device of `backend` speaking `wireVersion`
    /// cannot reach, naming the difference.
    public func checkReachable(byBackend ownBackend: String, wireVersion ownWire: Int) throws(FabricError) {
        guard backend == ownBackend else {
            throw FabricError(.invalidArgument, "the address \(self) is of the \(backend) backend; this device is \(ownBackend) (both sides must use the same backend: FABRIC_BACKEND)")
        }
        guard wireVersion == ownWire else {
            throw FabricError(.protocolMismatch, "the address \(self) speaks \(backend) wire version \(wireVersion); this library speaks version \(ownWire)")
        }
    }

    /// Whether `host` is a wildcard (any address) rather than one address,
    /// however it is spelled (`::0`, `0:0::0` and `::` are one address).
    public static func isWildcard(_ host: String) -> Bool {
        if host.isEmpty || host == "*" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return v4.s_addr == 0 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.allSatisfy { $0 == 0 } }
        }
        return false
    }

    private static func checkHost(_ host: String) throws(FabricError) {
        guard !isWildcard(host) else {
            throw FabricError(.invalidArgument, "fabric address: '\(host)' is a wildcard, not an address a peer can reach")
        }
        var v4 = in_addr()
        var v6 = in6_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else {
            throw FabricError(.invalidArgument, "fabric address: '\(host)' is not a numeric IPv4 or IPv6 address")
        }
    }

    private static let lowerHexDigits = Set("0123456789abcdef".utf8)

    /// Digits only, and no leading zero unless the number is 0.
    private static func isCanonicalDecimal(_ text: String) -> Bool {
        let digits = text.utf8
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            return false
        }
        return digits.count == 1 || digits.first != UInt8(ascii: "0")
    }
}

extension String {
    fileprivate func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : self
    }
}
