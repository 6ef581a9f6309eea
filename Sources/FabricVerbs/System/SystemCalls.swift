// UNSAFE AREA: the verbs backend's system calls. The rule: libibverbs and
// librdmacm are the library's API and are called where they are used; every
// other call into the system is made in System/: here (polling, pipes,
// clocks, sysfs through swift-system) and Addressing.swift (resolution,
// interfaces); the event thread is a FabricSupport SystemThread, shared
// with the tcp backend.
import Glibc
import SystemPackage

enum SystemCalls {
    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// poll(2) on `count` descriptors; the number ready, 0 on timeout, -1 on
    /// failure with errno set (EINTR counts as a timeout: callers look again).
    static func poll(_ descriptors: UnsafeMutablePointer<pollfd>, _ count: Int, milliseconds: Int32) -> Int32 {
        let n = Glibc.poll(descriptors, nfds_t(count), milliseconds)
        return n < 0 && errno == EINTR ? 0 : n
    }

    /// poll(2) on one descriptor for input; its returned events (0 if none),
    /// or -1 on failure with errno set.
    static func waitForInput(_ fd: Int32, milliseconds: Int32) -> Int32 {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = poll(&descriptor, 1, milliseconds: milliseconds)
        return n < 0 ? -1 : Int32(descriptor.revents)
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Gives the processor to another thread (a spin that went on too long).
    static func yield() {
        _ = sched_yield()
    }

    /// The wall clock in milliseconds since 1970.
    static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// The first line of a small file (sysfs attributes), without its
    /// newline; nil if it cannot be read or is empty.
    static func firstLine(of path: String) -> String? {
        guard let fd = try? FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) else { return nil }
        defer { try? fd.close() }
        var bytes = [UInt8](repeating: 0, count: 256)
        guard let count = try? bytes.withUnsafeMutableBytes({ try fd.read(into: $0) }), count > 0 else { return nil }
        let line = bytes[0..<count].prefix { $0 != 10 && $0 != 0 }
        return line.isEmpty ? nil : String(decoding: line, as: UTF8.self)
    }
}

/// A pipe whose write end wakes a thread sleeping on the read end.
struct WakePipe {
    let read: Int32
    let write: Int32

    /// A new pipe, or errno.
    static func make() -> Result<WakePipe, Errno> {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return .failure(Errno(rawValue: errno)) }
        return .success(WakePipe(read: ends[0], write: ends[1]))
    }

    func signal() {
        var one: UInt8 = 1
        _ = Glibc.write(write, &one, 1)
    }

    func close() {
        _ = Glibc.close(read)
        _ = Glibc.close(write)
    }
}

