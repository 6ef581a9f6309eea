import Glibc

/// The raw reference for a group of N queue pairs: N plain TCP connections
/// between the same two processes, served by one thread on each side in
/// turns. Every call is non-blocking (MSG_DONTWAIT), so that one full or
/// empty connection never holds up the others; busy-polling, the loops spin
/// over the connections, and blocking, they sleep in poll(2) over those
/// with work left whenever a whole turn moved nothing, as the measured path
/// sleeps on its completion queue's descriptor. Each message is offered
/// whole to one send(2), like `RawTCP.stream`'s, and received into the first
/// `size` bytes of the buffer, like `RawTCP.sink`'s.
struct RawStreams {
    let descriptors: [Int32]
    let buffer: UnsafeMutableRawPointer
    let busyPoll: Bool
    /// send(2) and recv(2) calls made so far, those that moved nothing
    /// included (the waits in poll(2) are not counted, as the engine's
    /// counters do not count its waits either).
    private(set) var calls = 0
    /// poll(2)'s entries, made once: the loops only fill them in.
    private var waiting: [pollfd]

    init(descriptors: [Int32], buffer: UnsafeMutableRawPointer, busyPoll: Bool) {
        self.descriptors = descriptors
        self.buffer = buffer
        self.busyPoll = busyPoll
        waiting = [pollfd](repeating: pollfd(), count: descriptors.count)
    }

    /// Client side: `countPerStream` messages of `size` bytes on every
    /// connection, then one byte back from each (the server's sign that it
    /// has them all). Returns the seconds it took.
    mutating func stream(size: Int, countPerStream: Int) -> Double {
        let streams = descriptors.count
        var sent = [Int](repeating: 0, count: streams)
        // Bytes of the current message already taken by the socket: a
        // message the socket took only in part is finished before the next.
        var offset = [Int](repeating: 0, count: streams)
        var unfinished = streams
        let start = now()
        while unfinished > 0 {
            var moved = false
            for stream in 0..<streams where sent[stream] < countPerStream {
                calls += 1
                let n = Glibc.send(descriptors[stream], buffer + offset[stream], size - offset[stream], Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                if n > 0 {
                    moved = true
                    offset[stream] += n
                    if offset[stream] == size {
                        offset[stream] = 0
                        sent[stream] += 1
                        if sent[stream] == countPerStream { unfinished -= 1 }
                    }
                } else if errno != EAGAIN && errno != EINTR {
                    fatalError("raw send: \(String(cString: strerror(errno)))")
                }
            }
            if !moved && !busyPoll {
                sleepUntilReady(Int16(POLLOUT)) { sent[$0] < countPerStream }
            }
        }
        var acknowledged = [Bool](repeating: false, count: streams)
        unfinished = streams
        while unfinished > 0 {
            var moved = false
            for stream in 0..<streams where !acknowledged[stream] {
                if receive(on: stream, into: buffer, length: 1) > 0 {
                    moved = true
                    acknowledged[stream] = true
                    unfinished -= 1
                }
            }
            if !moved && !busyPoll {
                sleepUntilReady(Int16(POLLIN)) { !acknowledged[$0] }
            }
        }
        return Double(now() - start) / 1e9
    }

    /// Server side: takes `countPerStream` messages of `size` bytes from
    /// every connection and answers each connection with one byte once it
    /// has all of them.
    mutating func sink(size: Int, countPerStream: Int) {
        let streams = descriptors.count
        let total = size * countPerStream
        var received = [Int](repeating: 0, count: streams)
        var unfinished = streams
        while unfinished > 0 {
            var moved = false
            for stream in 0..<streams where received[stream] < total {
                // At most the rest of the current message, into its place
                // in the first `size` bytes.
                let inMessage = received[stream] % size
                let n = receive(on: stream, into: buffer + inMessage, length: size - inMessage)
                guard n > 0 else { continue }
                moved = true
                received[stream] += n
                if received[stream] == total {
                    unfinished -= 1
                    answer(on: stream)
                }
            }
            if !moved && !busyPoll {
                sleepUntilReady(Int16(POLLIN)) { received[$0] < total }
            }
        }
    }

    /// One recv(2) that does not wait; the bytes received, 0 for none yet.
    private mutating func receive(on stream: Int, into destination: UnsafeMutableRawPointer, length: Int) -> Int {
        calls += 1
        let n = Glibc.recv(descriptors[stream], destination, length, Int32(MSG_DONTWAIT))
        if n > 0 { return n }
        if n == 0 { fatalError("raw: the peer closed connection \(stream + 1) of \(descriptors.count)") }
        if errno != EAGAIN && errno != EINTR { fatalError("raw recv: \(String(cString: strerror(errno)))") }
        return 0
    }

    /// The one byte that tells the client a connection's messages all came.
    private mutating func answer(on stream: Int) {
        var byte: UInt8 = 1
        while true {
            calls += 1
            if Glibc.send(descriptors[stream], &byte, 1, Int32(MSG_NOSIGNAL)) == 1 { return }
            if errno != EINTR && errno != EAGAIN { fatalError("raw send: \(String(cString: strerror(errno)))") }
        }
    }

    /// Sleeps in poll(2) until one of the connections for which `pending`
    /// holds is ready for `events`.
    private mutating func sleepUntilReady(_ events: Int16, _ pending: (Int) -> Bool) {
        var count = 0
        for stream in 0..<descriptors.count where pending(stream) {
            waiting[count] = pollfd(fd: descriptors[stream], events: events, revents: 0)
            count += 1
        }
        let ready = waiting.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t(count), 30_000) }
        if ready < 0 && errno != EINTR { fatalError("raw poll: \(String(cString: strerror(errno)))") }
    }
}
