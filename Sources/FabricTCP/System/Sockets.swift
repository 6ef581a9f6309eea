// UNSAFE AREA: socket setup (resolution, listen, accept, connect). The data
// path's transfers are in SystemCalls.swift.
import CFabricShims
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

enum Sockets {
    /// Options every data socket gets: no Nagle (latency), large buffers
    /// (bandwidth), close-on-exec (fork/exec safety).
    static func configureDataSocket(_ fd: Int32) {
        SystemCalls.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        SystemCalls.setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1)
    }

    static func listen(on endpoint: Endpoint, backlog: Int) throws(FabricError) -> (fd: Int32, bound: Endpoint) {
        let addresses = try ResolvedAddress.resolve(host: endpoint.host, port: endpoint.port, passive: true)
        var lastError = FabricError(.connectionFailed, "no address to listen on for \(endpoint)")
        for address in addresses {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { lastError = SystemCalls.error("socket"); continue }
            SystemCalls.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if address.family == AF_INET6 { SystemCalls.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
            let bound = address.withPointer { Glibc.bind(fd, $0, $1) }
            if bound != 0 {
                lastError = SystemCalls.error("binding \(endpoint)")
                SystemCalls.close(fd)
                continue
            }
            if Glibc.listen(fd, Int32(max(1, min(backlog, 4096)))) != 0 {
                lastError = SystemCalls.error("listening on \(endpoint)")
                SystemCalls.close(fd)
                continue
            }
            var actual = ResolvedAddress()
            actual.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutablePointer(to: &actual.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &actual.length) }
            }
            SystemCalls.setNonBlocking(fd)
            return (fd, actual.endpoint)
        }
        throw lastError
    }

    /// Accepts one pending connection; nil if none is pending.
    static func accept(_ listener: Int32) throws(FabricError) -> (fd: Int32, peer: Endpoint)? {
        var address = ResolvedAddress()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let fd = withUnsafeMutablePointer(to: &address.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    fabric_accept4(listener, $0, &address.length, Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            if fd >= 0 {
                configureDataSocket(fd)
                return (fd, address.endpoint)
            }
            let code = errno
            if code == EINTR || code == ECONNABORTED { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return nil }
            throw SystemCalls.error("accept", code)
        }
    }

    /// Starts a non-blocking connect to one resolved address, optionally
    /// from a chosen local address or interface. Returns the socket; the
    /// connect finishes when it is writable (see `connectOutcome`).
    static func startConnect(to address: ResolvedAddress, localAddress: String?, describing endpoint: Endpoint) throws(FabricError) -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        if fd < 0 { throw SystemCalls.error("socket") }
        if let localAddress {
            let local: ResolvedAddress
            do { local = try ResolvedAddress.local(localAddress, family: address.family) } catch {
                SystemCalls.close(fd)
                throw error
            }
            if local.withPointer({ Glibc.bind(fd, $0, $1) }) != 0 {
                let failure = SystemCalls.error("binding the local address \(localAddress)")
                SystemCalls.close(fd)
                throw failure
            }
        }
        let status = address.withPointer { Glibc.connect(fd, $0, $1) }
        if status != 0 && errno != EINPROGRESS {
            let code = errno
            SystemCalls.close(fd)
            throw refusal(endpoint, code)
        }
        return fd
    }

    /// A started connect's outcome: nil while in progress, else the error
    /// (nil error: connected, and the socket is configured for data).
    static func connectOutcome(_ fd: Int32, describing endpoint: Endpoint) -> Result<Void, FabricError>? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard Glibc.poll(&descriptor, 1, 0) > 0 else { return nil }
        var socketError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length)
        if socketError != 0 { return .failure(refusal(endpoint, socketError)) }
        configureDataSocket(fd)
        return .success(())
    }

    private static func refusal(_ endpoint: Endpoint, _ code: Int32) -> FabricError {
        FabricError(.connectionFailed, "connecting to \(endpoint): \(SystemCalls.errorText(code))\(code == ECONNREFUSED ? refusedHint : "")")
    }
}

/// Why a connection may be refused although the peer runs: the verbs
/// backend listens through rdma_cm, whose ports are not TCP ports.
private let refusedHint = "; nothing listens there over TCP: if the peer uses the verbs backend, both sides must use the same one (FABRIC_BACKEND)"
