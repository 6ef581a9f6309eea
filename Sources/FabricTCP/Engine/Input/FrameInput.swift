import Glibc

/// The incoming byte stream cut into frames: the staging buffer, the
/// headers found in it, and the plan of the next read. A value that knows
/// nothing of sockets or memory regions: the engine asks it where to read
/// and how much, does the read, and tells it what the read returned; it
/// hands back headers (decoded and validated) and says how much of the
/// current payload is still to come. Where payload bytes go is
/// `PayloadPlacement`'s business.
///
/// Headers and small payloads arrive together in the staging buffer, one
/// read for many small frames. A large payload is read straight into its
/// destination, with a piece of the staging buffer behind it for what
/// follows.
struct FrameInput: ~Copyable {
    static let capacity = EngineTuning.stagingCapacity

    let staging: UnsafeMutableRawPointer
    /// Staged bytes not yet consumed: `staging[start..<end]`.
    private(set) var start = 0
    private(set) var end = 0
    /// After a header whose payload is large, the next staging read asks
    /// for one header only, so that the following payload, if large again,
    /// is never over-read into the staging buffer (and never copied).
    private(set) var headerOnly = false
    /// A payload is being received: `payloadRemaining` bytes of it are
    /// still to come.
    private(set) var inPayload = false
    private(set) var payloadRemaining = 0
    /// Large SENDs in a row just before (0, 1 or 2: saturating), and the
    /// payload length of the last: from two on, the next frame is expected
    /// to be one more, and its header is read together with its payload
    /// into the oldest posted receive (`QueuePairCore.readSendAhead`).
    /// Alternating large SENDs and WRITEs never reach two, so a stream that
    /// would be mispredicted each time is not read ahead at all.
    private var largeSendsInARow = 0
    private(set) var lastLargeSendLength = 0
    /// A read came back short: the socket is drained, and reading again
    /// this round would only cost a system call that says EAGAIN.
    private(set) var drained = false
    /// The peer's side of the stream ended, or the queue pair stopped
    /// reading.
    var ended = false

    init() {
        staging = .allocate(byteCount: Self.capacity, alignment: 64)
    }

    deinit {
        staging.deallocate()
    }

    /// Whether the next frame is expected to be another large SEND, whose
    /// header and payload one read can take (the staging buffer holds
    /// nothing, and the frame before was a large SEND after another).
    var expectsLargeSend: Bool { headerOnly && largeSendsInARow == 2 && end == start }

    /// Bytes staged and not yet consumed.
    var staged: Int { end - start }

    /// A new round: the socket may have more.
    @inline(__always)
    mutating func beginRound() { drained = false }

    /// Whether another read is worth its system call this round.
    @inline(__always)
    func mayRead(budget: Int) -> Bool { !drained && budget > 0 }

    // MARK: Headers

    /// The next header, if a whole one is staged: decoded and validated
    /// (its bytes count as consumed either way). Nil: read more first.
    @inline(__always)
    mutating func nextHeader() -> Result<FrameHeader, FrameError>? {
        guard end - start >= FrameHeader.size else { return nil }
        let decoded = FrameHeader.decode(from: staging + start, maxMessage: EngineTuning.wireMaximumMessage)
        start += FrameHeader.size
        if case .success(let header) = decoded {
            // Predict the next frame from this one.
            headerOnly = header.payloadLength >= EngineTuning.largePayload
            if headerOnly {
                if header.opcode == .send || header.opcode == .sendWithImmediate {
                    largeSendsInARow = min(largeSendsInARow + 1, 2)
                    lastLargeSendLength = header.payloadLength
                } else {
                    largeSendsInARow = 0
                }
            }
        }
        return decoded
    }

    /// The header just taken announces `length` payload bytes. False when
    /// there are none (the frame is complete already).
    @inline(__always)
    mutating func expectPayload(_ length: Int) -> Bool {
        payloadRemaining = length
        inPayload = length > 0
        return inPayload
    }

    // MARK: Reading into the staging buffer

    /// Where the next read into the staging buffer goes and how many bytes
    /// it asks for: the rest of one header after a large payload, else a
    /// window for a run of small frames. Staged bytes move to the front
    /// first.
    @inline(__always)
    mutating func stagingRead() -> (into: UnsafeMutableRawPointer, want: Int) {
        let available = end - start
        if start > 0 {
            if available > 0 {
                staging.copyMemory(from: staging + start, byteCount: available)
            }
            start = 0
            end = available
        }
        let want = headerOnly
            ? FrameHeader.size - available
            : min(EngineTuning.readWindow, Self.capacity - end)
        return (staging + end, want)
    }

    /// The staging read that asked for `want` bytes returned `count`.
    @inline(__always)
    mutating func stagingReadReturned(_ count: Int, want: Int) {
        drained = count < want
        end += count
    }

    // MARK: Reading a SEND ahead

    /// A read ahead put `headerBytes` (at most a header) at the front of
    /// the empty staging buffer, and the rest of what it read elsewhere.
    @inline(__always)
    mutating func readAheadStaged(_ headerBytes: Int) {
        start = 0
        end = headerBytes
    }

    /// `count` bytes of the current payload were already in place when
    /// its header was handled (read ahead into the receive).
    @inline(__always)
    mutating func payloadPlacedAhead(_ count: Int) {
        payloadRemaining -= count
        if payloadRemaining == 0 { inPayload = false }
    }

    /// Stages `count` stream bytes that a read ahead put elsewhere: what
    /// followed the payload, or a frame that was not the SEND expected.
    /// `source` may lie further on in the staging buffer itself (the read's
    /// tail), overlapping where the bytes go.
    @inline(__always)
    mutating func stage(copying source: UnsafeRawPointer, count: Int) {
        if count > 0 { memmove(staging + end, source, count) }
        end += count
    }

    /// Whether the read ahead drained the socket.
    @inline(__always)
    mutating func readAheadReturned(drained: Bool) {
        self.drained = drained
    }

    // MARK: Payload

    /// Payload bytes already staged, at most what the payload still needs:
    /// where they are and how many. They count as consumed; the caller
    /// places them.
    @inline(__always)
    mutating func takeStagedPayload() -> (from: UnsafeMutableRawPointer, count: Int) {
        let count = min(end - start, payloadRemaining)
        let from = staging + start
        start += count
        payloadRemaining -= count
        if payloadRemaining == 0 { inPayload = false }
        return (from, count)
    }

    /// The staging buffer holds nothing more (every staged byte went to the
    /// payload): the next read in place fills it from the front.
    @inline(__always)
    mutating func clearStaging() {
        start = 0
        end = 0
    }

    /// Room a read in place leaves behind the payload, at the front of the
    /// staging buffer: one header while a large part of the payload is
    /// still to come (nothing of a following payload is over-read), else a
    /// window for a run of small frames.
    @inline(__always)
    var payloadReadTail: Int {
        payloadRemaining >= EngineTuning.largePayload ? FrameHeader.size : EngineTuning.readWindow
    }

    /// A read in place that offered `planned` bytes of payload room and
    /// `tail` bytes of staging room returned `count` bytes. Returns how
    /// many of them were payload; the rest are staged.
    @inline(__always)
    mutating func payloadReadReturned(_ count: Int, planned: Int, tail: Int) -> Int {
        let payload = min(count, planned)
        payloadRemaining -= payload
        // In the middle of a payload the rest is on its way: read again at
        // once (until the socket says EAGAIN, or the round's budget is
        // spent) rather than go back through the application's poll for
        // each piece. (A 64 KiB frame is two TCP segments on loopback: the
        // second, 85 bytes, often lands while the first is being copied.)
        drained = count < planned + tail && payloadRemaining == 0
        end = count - payload
        if payloadRemaining == 0 { inPayload = false }
        return payload
    }
}
