import FabricCore
import Glibc

/// The numeric addresses of this host's interfaces, for the fabric address
/// of a listener bound to a wildcard: a peer needs addresses it can reach.
package enum InterfaceAddresses {
    /// Addresses of interfaces that are up, of `families` (AF_INET,
    /// AF_INET6), optionally of one interface only; other interfaces'
    /// addresses before loopback ones; IPv6 link-local addresses left out
    /// (they need a scope a peer cannot know).
    package static func list(families: [Int32], interface: String? = nil) -> [String] {
        var interfaces: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&interfaces) == 0 else { return [] }
        defer { freeifaddrs(interfaces) }
        var outward: [String] = []
        var loopback: [String] = []
        var cursor = interfaces
        while let entry = cursor {
            cursor = entry.pointee.ifa_next
            guard let address = entry.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard families.contains(family) else { continue }
            let flags = entry.pointee.ifa_flags
            guard flags & UInt32(IFF_UP) != 0 else { continue }
            if let interface, String(cString: entry.pointee.ifa_name) != interface { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            if family == AF_INET {
                var v4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                guard inet_ntop(AF_INET, &v4, &text, socklen_t(text.count)) != nil else { continue }
            } else {
                var v6 = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                let first = withUnsafeBytes(of: &v6) { ($0[0], $0[1]) }
                if first.0 == 0xfe && first.1 & 0xc0 == 0x80 { continue }  // fe80::/10
                guard inet_ntop(AF_INET6, &v6, &text, socklen_t(text.count)) != nil else { continue }
            }
            let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if flags & UInt32(IFF_LOOPBACK) != 0 { loopback.append(host) } else { outward.append(host) }
        }
        return outward + loopback
    }

    /// A listener's fabric address: its bound host, or for a wildcard the
    /// addresses of the host's interfaces (of `interface` when given), as
    /// many as fit in the printed form.
    package static func listenerAddress(
        backend: String, wireVersion: Int, bound: Endpoint, instance: UInt64, interface: String? = nil
    ) throws(FabricError) -> FabricAddress {
        var hosts: [String]
        if FabricAddress.isWildcard(bound.host) {
            let families = bound.host.contains(":") ? [AF_INET6, AF_INET] : [AF_INET]
            hosts = list(families: families, interface: interface)
            guard !hosts.isEmpty else {
                throw FabricError(.unavailable, "the listener on \(bound) has no interface address a peer could reach")
            }
        } else {
            hosts = [bound.host]
        }
        while true {
            do {
                return try FabricAddress(backend: backend, wireVersion: wireVersion, hosts: hosts, port: bound.port, instance: instance)
            } catch where hosts.count > 1 && error.message.contains("bytes printed") {
                hosts.removeLast()
            }
        }
    }
}
