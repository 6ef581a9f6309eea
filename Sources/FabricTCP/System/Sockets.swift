// UNSAFE AREA: socket setup (listen, accept, connect). Resolution is in
// Addressing.swift, the data path's transfers in SystemCalls.swift.
import CFabricShims
import FabricCore
import Glibc

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
