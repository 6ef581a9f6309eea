/// Where to listen or connect: a host name or numeric address (IPv4 or IPv6)
/// and a port, as rdma_cm takes them.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses "host:port", "[v6]:port" or "v6-without-port-is-ambiguous".
    public init(parsing text: String) throws(FabricError) {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else {
                throw FabricError(.invalidArgument, "endpoint '\(text)': expected [address]:port with a port from 0 to 65535")
            }
            self.init(host: host, port: port)
            return
        }
        guard let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon else {
            throw FabricError(.invalidArgument, "endpoint '\(text)': expected host:port (write IPv6 addresses as [address]:port)")
        }
        guard let port = UInt16(text[text.index(after: colon)...]) else {
            throw FabricError(.invalidArgument, "endpoint '\(text)': the port must be a number from 0 to 65535")
        }
        let host = String(text[..<colon])
        guard !host.isEmpty else {
            throw FabricError(.invalidArgument, "endpoint '\(text)': the host is empty")
        }
        self.init(host: host, port: port)
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Options of an outgoing connection.
public struct ConnectOptions: Hashable, Sendable {
    /// The local address to bind before connecting (nil: the system picks),
    /// or an interface name such as "lo" whose address is used.
    public var localAddress: String?
    /// Bytes for the peer's application, delivered with the connection
    /// request (rdma_cm's private data).
    public var privateData: [UInt8]
    public var timeout: Duration

    public init(localAddress: String? = nil, privateData: [UInt8] = [], timeout: Duration = .seconds(10)) {
        self.localAddress = localAddress
        self.privateData = privateData
        self.timeout = timeout
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The process environment, read without Foundation.
public enum ProcessEnvironment {
    public static func variables() -> [String: String] {
        var result: [String: String] = [:]
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            cursor += 1
        }
        return result
    }
}
