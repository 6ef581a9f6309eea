// UNSAFE AREA: socket addresses (getaddrinfo and sockaddr storage).
import FabricCore
import Glibc

/// A resolved socket address, IPv4 or IPv6.
struct ResolvedAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    var family: Int32 { Int32(storage.ss_family) }

    func withPointer<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// Host and port in numeric form.
    var endpoint: Endpoint {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        _ = withPointer { address, length in
            getnameinfo(address, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                        NI_NUMERICHOST | NI_NUMERICSERV)
        }
        let hostText = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let serviceText = String(decoding: service.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Endpoint(host: hostText, port: UInt16(serviceText) ?? 0)
    }

    static func resolve(host: String, port: UInt16, passive: Bool) throws(FabricError) -> [ResolvedAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        if passive { hints.ai_flags = AI_PASSIVE }
        var list: UnsafeMutablePointer<addrinfo>?
        let name: String? = (passive && (host.isEmpty || host == "*")) ? nil : host
        let status = getaddrinfo(name, String(port), &hints, &list)
        if status != 0 {
            let reason = String(cString: gai_strerror(status))
            throw FabricError(.invalidArgument, "cannot resolve host '\(host)': \(reason)")
        }
        defer { freeaddrinfo(list) }
        var result: [ResolvedAddress] = []
        var cursor = list
        while let entry = cursor {
            var address = ResolvedAddress()
            withUnsafeMutableBytes(of: &address.storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: entry.pointee.ai_addr, count: Int(entry.pointee.ai_addrlen)))
            }
            address.length = entry.pointee.ai_addrlen
            result.append(address)
            cursor = entry.pointee.ai_next
        }
        if result.isEmpty {
            throw FabricError(.invalidArgument, "host '\(host)' has no address")
        }
        return result
    }

    /// The address of a local interface (by name, such as "lo") of the given
    /// family, or a numeric address.
    static func local(_ text: String, family: Int32) throws(FabricError) -> ResolvedAddress {
        var interfaces: UnsafeMutablePointer<ifaddrs>?
        if getifaddrs(&interfaces) == 0 {
            defer { freeifaddrs(interfaces) }
            var cursor = interfaces
            var namedButOtherFamily = false
            while let entry = cursor {
                cursor = entry.pointee.ifa_next
                guard String(cString: entry.pointee.ifa_name) == text, let address = entry.pointee.ifa_addr else { continue }
                let entryFamily = Int32(address.pointee.sa_family)
                guard entryFamily == AF_INET || entryFamily == AF_INET6 else { continue }
                guard entryFamily == family else { namedButOtherFamily = true; continue }
                var resolved = ResolvedAddress()
                let size = entryFamily == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                withUnsafeMutableBytes(of: &resolved.storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: address, count: size))
                }
                resolved.length = socklen_t(size)
                resolved.clearPort()  // the system picks the local port
                return resolved
            }
            if namedButOtherFamily {
                throw FabricError(.invalidArgument, "interface '\(text)' has no \(family == AF_INET ? "IPv4" : "IPv6") address")
            }
        }
        let candidates = try resolve(host: text, port: 0, passive: false)
        guard let match = candidates.first(where: { $0.family == family }) else {
            throw FabricError(.invalidArgument, "local address '\(text)' is neither an interface nor an address of the peer's family")
        }
        return match
    }

    mutating func clearPort() {
        if family == AF_INET {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = 0 }
            }
        } else if family == AF_INET6 {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = 0 }
            }
        }
    }
}
