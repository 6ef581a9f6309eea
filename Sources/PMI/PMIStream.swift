import Glibc

/// A launcher's byte stream: the inherited descriptor of `PMI_FD`, or a
/// TCP connection to `PMI_PORT`. Blocking reads and writes, each bounded
/// by a deadline, so a server that stops answering is an error rather than
/// a hang. The only file of the module that makes system calls.
final class PMIStream {
    private let descriptor: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    /// Takes ownership of `descriptor`: it is closed with the stream.
    init(descriptor: Int32) {
        self.descriptor = descriptor
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }

    deinit { close() }

    func close() {
        if !closed {
            closed = true
            _ = Glibc.close(descriptor)
        }
    }

    /// Connects to `host:port` (a name or a numeric address), as a PMI_PORT
    /// client does.
    static func connect(host: String, port: UInt16, timeout: Duration) throws(PMIError) -> PMIStream {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else {
            throw PMIError(.badEnvironment, "PMI_PORT names \(host):\(port), which does not resolve: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        // Every address within one deadline: a server that drops the
        // connection request is an error after `timeout`, not the kernel's.
        let deadline = ContinuousClock.now + timeout
        var lastError: Int32 = 0
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            entry = current.pointee.ai_next
            let fd = socket(current.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 { lastError = errno; continue }
            var connected = Glibc.connect(fd, current.pointee.ai_addr, current.pointee.ai_addrlen) == 0
            if !connected && errno == EINPROGRESS {
                let left = deadline - .now
                let milliseconds = left > .zero ? Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1) : 0
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var failure: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if poll(&entry, 1, milliseconds) == 1, getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0 {
                    connected = failure == 0
                    if failure != 0 { errno = failure }
                } else {
                    errno = ETIMEDOUT
                }
            }
            if connected {
                // Blocking from here on: reads and writes wait in poll with
                // their own deadlines.
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
                var one: Int32 = 1
                _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return PMIStream(descriptor: fd)
            }
            lastError = errno
            _ = Glibc.close(fd)
        }
        throw PMIError(.connectionLost, "cannot connect to the PMI server at \(host):\(port) within \(timeout): \(String(cString: strerror(lastError)))")
    }

    /// Writes all of `bytes`.
    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(PMIError) {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLOUT), deadline: deadline)
            let written = bytes.withUnsafeBytes { raw in
                send(descriptor, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                let code = errno
                if code == EINTR || code == EAGAIN { continue }
                // A socket pair or pipe that is not a socket: plain write.
                if code == ENOTSOCK {
                    let plain = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
                    if plain > 0 { offset += plain; continue }
                }
                throw PMIError(.connectionLost, "writing to the PMI server failed: \(String(cString: strerror(code)))")
            }
            offset += written
        }
    }

    /// Reads up to and without the next newline; at most `maximum` bytes.
    func readLine(maximum: Int, deadline: ContinuousClock.Instant) throws(PMIError) -> [UInt8] {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            guard buffer.count < maximum else {
                throw PMIError(.malformedMessage, "the PMI server sent \(buffer.count) bytes without a newline (a line is at most \(maximum)): '\(PMI1Message.shown(buffer))'")
            }
            try fill(deadline: deadline)
        }
    }

    /// Reads exactly `count` bytes.
    func read(exactly count: Int, deadline: ContinuousClock.Instant) throws(PMIError) -> [UInt8] {
        while buffer.count < count { try fill(deadline: deadline) }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    private func fill(deadline: ContinuousClock.Instant) throws(PMIError) {
        try wait(for: Int16(POLLIN), deadline: deadline)
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        if count > 0 {
            buffer.append(contentsOf: chunk[..<count])
            return
        }
        if count == 0 {
            throw PMIError(.connectionLost, "the PMI server closed the connection" + (buffer.isEmpty ? "" : " in the middle of a message ('\(PMI1Message.shown(buffer))')"))
        }
        let code = errno
        if code == EINTR || code == EAGAIN { return }
        throw PMIError(.connectionLost, "reading from the PMI server failed: \(String(cString: strerror(code)))")
    }

    private func wait(for events: Int16, deadline: ContinuousClock.Instant) throws(PMIError) {
        while true {
            let left = deadline - .now
            guard left > .zero else { throw PMIError(.timedOut, "the PMI server did not answer in time") }
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var entry = pollfd(fd: descriptor, events: events, revents: 0)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR {
                throw PMIError(.connectionLost, "waiting on the PMI server failed: \(String(cString: strerror(errno)))")
            }
        }
    }
}
