import Foundation
import Glibc

/// The plain TCP connection that fabric-perf's two processes use to agree on
/// what to run next: newline-terminated text lines.
final class ControlChannel {
    let fd: Int32
    private var pending: [UInt8] = []

    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    func send(_ line: String) throws {
        let bytes = Array((line + "\n").utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; throw PerfError("control channel: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    func receive() throws -> String {
        while true {
            if let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { throw PerfError("the peer closed the control channel") }
            if n < 0 { if errno == EINTR { continue }; throw PerfError("control channel: \(String(cString: strerror(errno)))") }
            pending.append(contentsOf: buffer[0..<n])
        }
    }

    /// Whether a line (or the end of the stream) is waiting, without blocking.
    func hasInput() -> Bool {
        if pending.contains(10) { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&descriptor, 1, 0) > 0
    }

    func expect(_ prefix: String) throws -> [String] {
        let line = try receive()
        let words = line.split(separator: " ").map(String.init)
        guard words.first == prefix else { throw PerfError("expected '\(prefix)' on the control channel, got '\(line)'") }
        return Array(words.dropFirst())
    }
}

struct PerfError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Plain sockets for the control channel and the raw-TCP reference.
enum PlainSocket {
    static func listen(host: String, port: UInt16) throws -> (fd: Int32, port: UInt16) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let entry = list else { throw PerfError("cannot resolve \(host)") }
        defer { freeaddrinfo(list) }
        let fd = socket(entry.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        guard bind(fd, entry.pointee.ai_addr, entry.pointee.ai_addrlen) == 0, Glibc.listen(fd, 16) == 0 else {
            throw PerfError("cannot listen on \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) } }
        let family = Int32(storage.ss_family)
        let bound = withUnsafePointer(to: &storage) { pointer -> UInt16 in
            if family == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        return (fd, bound)
    }

    static func accept(_ listener: Int32) throws -> Int32 {
        let fd = Glibc.accept(listener, nil, nil)
        if fd < 0 { throw PerfError("accept: \(String(cString: strerror(errno)))") }
        noDelay(fd)
        return fd
    }

    static func connect(host: String, port: UInt16, attempts: Int = 200) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let entry = list else { throw PerfError("cannot resolve \(host)") }
        defer { freeaddrinfo(list) }
        for _ in 0..<attempts {
            let fd = socket(entry.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
            if Glibc.connect(fd, entry.pointee.ai_addr, entry.pointee.ai_addrlen) == 0 {
                noDelay(fd)
                return fd
            }
            close(fd)
            usleep(20_000)
        }
        throw PerfError("cannot connect to \(host):\(port): \(String(cString: strerror(errno)))")
    }

    static func noDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
    }
}
