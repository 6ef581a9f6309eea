import Foundation
import Glibc

/// The reference: the same exchanges over one plain TCP connection, with the
/// same waiting style as the measured path (busy-polling non-blocking reads
/// against busy-polling, blocking reads against sleeping on the completion
/// queue's descriptor).
struct RawTCP {
    let fd: Int32
    let buffer: UnsafeMutableRawPointer
    let capacity: Int
    let busyPoll: Bool
    /// send(2) and recv(2) calls made so far, those that moved nothing
    /// included: the reference's side of fabric-perf's calls per message.
    private(set) var calls = 0

    init(fd: Int32, buffer: UnsafeMutableRawPointer, capacity: Int, busyPoll: Bool) {
        self.fd = fd
        self.buffer = buffer
        self.capacity = capacity
        self.busyPoll = busyPoll
    }

    @inline(__always)
    mutating func sendAll(_ count: Int) {
        var done = 0
        while done < count {
            calls += 1
            let n = Glibc.send(fd, buffer + done, count - done, Int32(MSG_NOSIGNAL))
            if n > 0 { done += n } else if n < 0 && errno != EINTR && errno != EAGAIN { fatalError("raw send: \(String(cString: strerror(errno)))") }
        }
    }

    @inline(__always)
    mutating func receiveAll(_ count: Int) {
        var done = 0
        let flags = busyPoll ? Int32(MSG_DONTWAIT) : 0
        while done < count {
            calls += 1
            let n = Glibc.recv(fd, buffer + done, min(count - done, capacity), flags)
            if n > 0 { done += n; continue }
            if n == 0 { fatalError("raw: the peer closed the connection") }
            if errno != EAGAIN && errno != EINTR { fatalError("raw recv: \(String(cString: strerror(errno)))") }
        }
    }

    /// Client side of a ping-pong: request `request` bytes, answer `response`
    /// bytes; returns the round trips.
    mutating func pingPong(request: Int, response: Int, iterations: Int, warmup: Int) -> LatencyHistogram {
        var timings = LatencyHistogram()
        // One clock reading per iteration, as in the fabric loop.
        var last = now()
        for i in 0..<(iterations + warmup) {
            sendAll(request)
            receiveAll(response)
            let end = now()
            if i >= warmup { timings.record(nanoseconds: end - last) }
            last = end
        }
        return timings
    }

    /// Server side of the ping-pong.
    mutating func echo(request: Int, response: Int, iterations: Int) {
        for _ in 0..<iterations {
            receiveAll(request)
            sendAll(response)
        }
    }

    /// Client side of a stream: `count` writes of `size` bytes, then wait
    /// for one byte back. Returns MB/s (1e6 B/s).
    mutating func stream(size: Int, count: Int) -> Double {
        let start = now()
        for _ in 0..<count { sendAll(size) }
        receiveAll(1)
        let seconds = Double(now() - start) / 1e9
        return Double(size * count) / seconds / 1e6
    }

    /// Server side of a stream: each message lands in the first `size`
    /// bytes of the buffer, as each WRITE of the measured path lands in the
    /// same `size` bytes of the target's region (a reference that spread the
    /// stream over the whole buffer would pay cache misses the measured
    /// path does not).
    mutating func sink(size: Int, count: Int) {
        let piece = max(1, min(size, capacity))
        var left = size * count
        while left > 0 {
            let length = min(left, piece)
            receiveAll(length)
            left -= length
        }
        sendAll(1)
    }
}

@inline(__always)
func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
