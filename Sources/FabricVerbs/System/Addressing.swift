import FabricCore
import Glibc

/// Socket addresses for rdma_cm: resolving endpoints and interface names,
/// and the canonical form both sides hash into the connection proof.
enum Addressing {
    /// The address of `endpoint` (a numeric address or a host name).
    static func resolve(_ endpoint: Endpoint, passive: Bool = false) throws(FabricError) -> sockaddr_storage {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let host = endpoint.host.isEmpty ? nil : endpoint.host
        let status = getaddrinfo(host, String(endpoint.port), &hints, &result)
        guard status == 0, let first = result else {
            throw FabricError(.connectionFailed, "cannot resolve \(endpoint): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        return storage
    }

    /// A local address given as a numeric address or an interface name.
    static func local(_ text: String) throws(FabricError) -> sockaddr_storage {
        // Numeric first, without a name lookup: an interface name must not
        // wait on a resolver.
        if isNumeric(text), let numeric = try? resolve(Endpoint(host: text, port: 0), passive: false) {
            return numeric
        }
        var interfaces: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&interfaces) == 0 else {
            throw FabricError(.system(errno: errno), "listing the network interfaces failed")
        }
        defer { freeifaddrs(interfaces) }
        var found: sockaddr_storage?
        var cursor = interfaces
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard String(cString: entry.pointee.ifa_name) == text, let address = entry.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var storage = sockaddr_storage()
            let size = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: size)) }
            // Prefer IPv4: RoCE v2 routes it without a link-local scope.
            if family == AF_INET { return storage }
            if found == nil { found = storage }
        }
        if let found { return found }
        throw FabricError(.invalidArgument, "local address '\(text)' is neither a numeric address nor the name of an interface with an address")
    }

    private static func isNumeric(_ text: String) -> Bool {
        var buffer = in6_addr()
        return inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1
    }

    /// 16 bytes of address (IPv4 in its IPv6-mapped form) and 2 of port.
    static func identity(_ address: UnsafeMutablePointer<sockaddr>) -> [UInt8] {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                let raw = withUnsafeBytes(of: v4.pointee.sin_addr) { Array($0) }
                let port = withUnsafeBytes(of: v4.pointee.sin_port) { Array($0) }
                return [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + raw + port
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                withUnsafeBytes(of: v6.pointee.sin6_addr) { Array($0) } + withUnsafeBytes(of: v6.pointee.sin6_port) { Array($0) }
            }
        default:
            return [UInt8](repeating: 0, count: 18)
        }
    }

    /// The address as an endpoint, for messages and `peer`.
    static func endpoint(_ address: UnsafeMutablePointer<sockaddr>) -> Endpoint {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                var raw = v4.pointee.sin_addr
                inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
                return Endpoint(host: String(cString: text), port: UInt16(bigEndian: v4.pointee.sin_port))
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                var raw = v6.pointee.sin6_addr
                inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
                return Endpoint(host: String(cString: text), port: UInt16(bigEndian: v6.pointee.sin6_port))
            }
        default:
            return Endpoint(host: "?", port: 0)
        }
    }
}
