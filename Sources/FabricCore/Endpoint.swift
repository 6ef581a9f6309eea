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
    /// A value naming the connection for both processes (for example an MPI
    /// rank pair), nil for none. When two processes connect to each other
    /// with the same tag at the same time, exactly one queue pair results:
    /// the connect started by the device with the lower `instance` wins,
    /// and the other attempt fails with `crossedConnection` (its process
    /// gets the winner through its listener). A connect that finds a
    /// connection request of the same tag from the same peer already handed
    /// to the application fails the same way. Different tags, no tag, or
    /// several connects from one side make separate queue pairs.
    /// On the verbs backend a tag takes the connect request's 12 bytes of
    /// application data, so `privateData` must then be empty there, and a
    /// tagged connect must name the peer (`expectedInstance`, which
    /// connecting to a fabric address sets): the acceptor decides at once.
    public var tag: UInt64?
    /// The device instance expected to answer (a fabric address names it):
    /// reaching another device fails the connect instead of connecting to
    /// whoever took the address since.
    public var expectedInstance: UInt64?

    public init(
        localAddress: String? = nil, privateData: [UInt8] = [], timeout: Duration = .seconds(10), tag: UInt64? = nil,
        expectedInstance: UInt64? = nil
    ) {
        self.localAddress = localAddress
        self.privateData = privateData
        self.timeout = timeout
        self.tag = tag
        self.expectedInstance = expectedInstance
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
