// UNSAFE AREA: the software NIC's direct system calls. The rule: FabricTCP
// calls the system only from System/: here (descriptors, transfers, polling,
// clocks, the process), Sleeping.swift (sleeps with deadlines in
// nanoseconds, the threads' timer slack), TimerReference.swift (the raw
// timerfd sleep fabric-perf measures), Sockets.swift (set-up of sockets),
// Addressing.swift (resolution) and Files.swift (set-up-time files, through
// swift-system); Locked.swift wraps the futex lock of CFabricShims; the
// progress thread is a FabricSupport SystemThread, shared with verbs. Every
// wrapper here reads errno at once, retries EINTR, and returns "would block"
// as a value. The transfers go through CFabricShims' syscall(2) calls,
// which skip libc's thread-cancellation bookkeeping.
import CFabricShims
import FabricCore
import Glibc

/// The result of a non-blocking transfer.
enum TransferResult: Equatable {
    /// This many bytes moved (never 0 for a read: see `endOfStream`).
    case transferred(Int)
    case wouldBlock
    /// The peer closed its side (a read returned 0).
    case endOfStream
    /// errno of the failure (EFAULT when a buffer is not mapped).
    case failed(Int32)
}

enum SystemCalls {
    static func errorText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    static func error(_ what: String, _ code: Int32 = errno) -> FabricError {
        FabricError(.system(errno: code), "\(what): \(errorText(code))")
    }

    /// Runs one transfer call, retrying EINTR; maps the outcome. A read that
    /// returns 0 means the peer ended the stream; a write of 0 bytes is just 0.
    @inline(__always)
    private static func transfer(isRead: Bool, _ call: () -> Int) -> TransferResult {
        while true {
            let n = call()
            if n > 0 { return .transferred(n) }
            if n == 0 { return isRead ? .endOfStream : .transferred(0) }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            return .failed(code)
        }
    }

    /// readv on a non-blocking descriptor.
    @inline(__always)
    static func readVector(_ fd: Int32, _ vectors: UnsafeMutablePointer<iovec>, _ count: Int) -> TransferResult {
        transfer(isRead: true) { fabric_readv(fd, vectors, Int32(count)) }
    }

    /// recv into one buffer (lighter than readv: no iovec to import).
    @inline(__always)
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> TransferResult {
        transfer(isRead: true) { fabric_recv(fd, buffer, count, Int32(MSG_DONTWAIT)) }
    }

    /// send of one buffer without SIGPIPE (lighter than sendmsg).
    @inline(__always)
    static func write(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> TransferResult {
        transfer(isRead: false) { fabric_send(fd, buffer, count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    /// sendmsg without SIGPIPE on a non-blocking socket.
    @inline(__always)
    static func writeVector(_ fd: Int32, _ vectors: UnsafeMutablePointer<iovec>, _ count: Int) -> TransferResult {
        var message = msghdr()
        message.msg_iov = vectors
        message.msg_iovlen = count
        return transfer(isRead: false) { fabric_sendmsg(fd, &message, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var value = value
        _ = setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Blocking exact read/write with a deadline, for the handshake only.
    static func readExactly(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, deadline: UInt64) throws(FabricError) {
        var done = 0
        while done < buffer.count {
            try waitFor(fd, events: Int16(POLLIN), deadline: deadline, what: "reading the handshake")
            let n = Glibc.read(fd, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 { done += n; continue }
            if n == 0 {
                throw FabricError(.connectionFailed, "the peer closed the connection during the handshake")
            }
            let code = errno
            if code == EINTR || code == EAGAIN || code == EWOULDBLOCK { continue }
            throw error("reading the handshake", code)
        }
    }

    static func writeExactly(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, deadline: UInt64) throws(FabricError) {
        var done = 0
        while done < buffer.count {
            try waitFor(fd, events: Int16(POLLOUT), deadline: deadline, what: "writing the handshake")
            let n = Glibc.send(fd, buffer.baseAddress! + done, buffer.count - done, Int32(MSG_NOSIGNAL))
            if n >= 0 { done += n; continue }
            let code = errno
            if code == EINTR || code == EAGAIN || code == EWOULDBLOCK { continue }
            throw error("writing the handshake", code)
        }
    }

    static func waitFor(_ fd: Int32, events: Int16, deadline: UInt64, what: String) throws(FabricError) {
        while true {
            let now = MonotonicClock.now()
            if now >= deadline {
                throw FabricError(.timedOut, "timed out \(what)")
            }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&descriptor, 1, until: deadline)
            if n > 0 { return }
            if n < 0 { throw error(what) }
        }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Ends both directions of a socket (the descriptor stays open).
    static func shutdown(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Ends the sending direction only: the peer reads the end of the
    /// stream after what was sent.
    static func shutdownForWriting(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// poll(2) on `count` descriptors; the number ready, 0 on timeout, -1 on
    /// failure (an interrupted sleep counts as a timeout: callers look again).
    /// For connection set-up, where a millisecond does not matter; timers
    /// sleep with `poll(_:_:until:)` (Sleeping.swift).
    @inline(__always)
    static func poll(_ descriptors: UnsafeMutablePointer<pollfd>, _ count: Int, milliseconds: Int32) -> Int32 {
        let n = Glibc.poll(descriptors, nfds_t(count), milliseconds)
        return n < 0 && errno == EINTR ? 0 : n
    }

    /// poll(2) on one descriptor; its returned events (0 if none).
    static func poll(_ fd: Int32, events: Int16, milliseconds: Int32) -> Int16 {
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        return poll(&descriptor, 1, milliseconds: milliseconds) > 0 ? descriptor.revents : 0
    }

    /// Gives the processor to another thread (a spin that went on too long).
    static func yield() {
        _ = sched_yield()
    }

    static var processID: Int32 { getpid() }

    static var userID: UInt32 { getuid() }

    /// Whether the process `pid` is gone (signal 0 finds no such process).
    static func processIsGone(_ pid: Int32) -> Bool {
        kill(pid, 0) != 0 && errno == ESRCH
    }

    /// The wall clock in milliseconds since 1970 (counter snapshots' time).
    static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, about 20 ns).
enum MonotonicClock {
    @inline(__always)
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    @inline(__always)
    static func nanoseconds(_ duration: Duration) -> UInt64 { duration.wholeNanoseconds }
}

/// An eventfd, used to wake a sleeper from another thread.
final class EventNotifier: @unchecked Sendable {  // the descriptor is immutable; eventfd is thread-safe
    let fd: Int32

    init() throws(FabricError) {
        fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        if fd < 0 { throw SystemCalls.error("eventfd") }
    }

    func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }

    deinit { SystemCalls.close(fd) }
}

/// An epoll set. Each registered descriptor carries a 64-bit token.
final class EventPoller: @unchecked Sendable {  // epoll calls are thread-safe; the members are immutable
    let fd: Int32
    /// How `wait(_:capacity:until:)` sleeps (Sleeping.swift); tests choose
    /// the fallback to cover it on a kernel that has epoll_pwait2.
    let deadlineSleep: EpollDeadlineSleep

    init(deadlineSleep: EpollDeadlineSleep = .detected) throws(FabricError) {
        self.deadlineSleep = deadlineSleep
        fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        if fd < 0 { throw SystemCalls.error("epoll_create1") }
    }

    func add(_ target: Int32, token: UInt64, events: UInt32) throws(FabricError) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        if epoll_ctl(fd, EPOLL_CTL_ADD, target, &event) != 0 {
            throw SystemCalls.error("epoll_ctl add")
        }
    }

    func modify(_ target: Int32, token: UInt64, events: UInt32) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        _ = epoll_ctl(fd, EPOLL_CTL_MOD, target, &event)
    }

    func remove(_ target: Int32) {
        var event = epoll_event()
        _ = epoll_ctl(fd, EPOLL_CTL_DEL, target, &event)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever; 0: only looks);
    /// returns the count. Timers sleep with `wait(_:capacity:until:)`.
    func wait(_ events: UnsafeMutablePointer<epoll_event>, capacity: Int, timeoutMilliseconds: Int32) -> Int {
        let n = epoll_wait(fd, events, Int32(capacity), timeoutMilliseconds)
        return n < 0 ? 0 : Int(n)
    }

    deinit { SystemCalls.close(fd) }
}

extension UInt32 {
    static let epollIn = UInt32(EPOLLIN.rawValue)
    static let epollOut = UInt32(EPOLLOUT.rawValue)
    static let epollRDHup = UInt32(EPOLLRDHUP.rawValue)
}
