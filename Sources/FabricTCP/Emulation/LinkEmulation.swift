import FabricCore
import FabricSupport

/// What stands between a queue pair's output and its socket. The engine's
/// output routine is generic over it and specialized twice: for
/// `DirectLink`, where every answer is a constant and the checks vanish at
/// compile time, and for `LinkEmulation`.
protocol OutgoingLink {
    /// Whether a token bucket limits what is written.
    var isShaped: Bool { get }
    /// Whether the queue pair went silent (a `vanish` fault).
    var vanished: Bool { get }
    /// Starts a round of output; returns the clock it decides on.
    func beginRound() -> UInt64
    /// May the request at `position` leave now?
    func admit(position: Int, _ slot: SendSlot, now: UInt64, counters: inout QueuePairStatistics) -> LinkAdmission
    /// May a responder frame or acknowledgement that became ready at
    /// `readyAt` leave now?
    func mayRespond(readyAt: UInt64, now: UInt64) -> Bool
    /// Bytes the link takes now (0: wait); only asked when shaped.
    func allowance(wanted: Int, now: UInt64) -> Int
    func spend(_ bytes: Int)
}

/// The socket as it is: everything may leave at once.
struct DirectLink: OutgoingLink {
    var isShaped: Bool { false }
    var vanished: Bool { false }
    @inline(__always) func beginRound() -> UInt64 { 0 }
    @inline(__always) func admit(position: Int, _ slot: SendSlot, now: UInt64, counters: inout QueuePairStatistics) -> LinkAdmission { .go }
    @inline(__always) func mayRespond(readyAt: UInt64, now: UInt64) -> Bool { true }
    @inline(__always) func allowance(wanted: Int, now: UInt64) -> Int { .max }
    @inline(__always) func spend(_ bytes: Int) {}
}

/// What one queue pair's emulated link and fault rules do to its frames.
/// A queue pair has one only when shaping or a fault rule applies to it;
/// otherwise its engine holds nil, and the data path pays a test of a plain
/// flag here and there, nothing else. (A class, so that the engine never
/// copies the state.)
///
/// Everything here runs under the queue pair's lock, on the engine's clock
/// (CLOCK_MONOTONIC, ns). Holding a frame never changes the engine's state:
/// the engine rebuilds its batch at the next progress round and asks again,
/// so every decision is idempotent until the frame leaves.
final class LinkEmulation: OutgoingLink {
    // MARK: Shaping

    /// Bytes per nanosecond the link carries; nil: as fast as the socket.
    let bytesPerNanosecond: Double?
    var isShaped: Bool { bytesPerNanosecond != nil }
    /// Bytes the token bucket holds when full.
    let burstBytes: Double
    /// The least a write waits for, so that a slow link is not fed with a
    /// stream of tiny writes.
    let writeQuantum: Int
    private var tokens: Double
    private var refilledAt: UInt64 = 0
    /// Added to every frame's departure (ns).
    let latency: UInt64

    // MARK: Faults

    private var drops: [(packet: Int, times: Int?)]
    private var delays: [(packet: Int, by: UInt64)]
    private var vanishAt: [Int]
    private var refusals: [(sends: Int, after: Int)]
    private var accessErrors: [Int]
    private var forcedErrors: [Int]
    /// Random loss: the probability per packet transmission and the
    /// generator that decides (nil: no loss rule).
    private var loss: (probability: Double, generator: SplitMix64)?
    /// The request whose transmission was drawn and kept: asked again
    /// before it leaves (the token bucket or a full batch held it back), it
    /// is not drawn again, so a shaped link loses no more than the rate.
    private var keptPosition: Int?

    /// The wait after a lost packet before the card sends it again.
    let retryWait: UInt64
    let transportRetries: Int

    /// The number the next posted request's first packet gets (packets
    /// count from 1, in posting order).
    private var nextPacket = 1
    /// SENDs that arrived, one-sided requests that arrived, send requests
    /// posted: the ordinals the receive-side and posting rules count.
    private var sendsArrived = 0
    private var accessesArrived = 0
    private var postsSeen = 0

    /// The request being held back by a drop or a delay.
    private var heldPosition: Int?
    private var heldUntil: UInt64 = 0
    /// For a drop: how often this request was lost so far; nil for a delay.
    private var lostAttempts: Int?
    private var lostLimit: Int?
    /// The held request was lost at random: each retransmission is drawn
    /// again rather than counted against a limit.
    private var lostAtRandom = false

    /// Once set, nothing leaves and everything arriving is swallowed.
    private(set) var vanished = false

    /// The earliest time a held frame may leave (.max: nothing held). The
    /// engine resets it before it builds a batch and adds it to its timers.
    var releaseAt: UInt64 = .max

    /// nil when neither shaping nor any rule applies to queue pair `number`.
    init?(link: LinkShape, faults: FaultScript, queuePair number: UInt32, retry: RetryPolicy) {
        let rules = faults.rules.filter { $0.queuePair == nil || $0.queuePair == number }
        guard link.isShaped || !rules.isEmpty else { return nil }
        if let bitsPerSecond = link.bitsPerSecond {
            let perNanosecond = bitsPerSecond / 8 / 1e9
            bytesPerNanosecond = perNanosecond
            burstBytes = Double(link.burstBytes ?? max(64 * 1024, Int(perNanosecond * 100_000)))
        } else {
            bytesPerNanosecond = nil
            burstBytes = 0
        }
        writeQuantum = max(1, min(Int(burstBytes), 16 * 1024))
        tokens = burstBytes
        latency = UInt64(MonotonicClock.nanoseconds(link.latency))
        drops = []
        delays = []
        vanishAt = []
        refusals = []
        accessErrors = []
        forcedErrors = []
        for rule in rules {
            switch rule.action {
            case .drop(let packet, let times): drops.append((packet, times))
            case .delay(let packet, let by): delays.append((packet, UInt64(MonotonicClock.nanoseconds(by))))
            case .receiverNotReady(let sends, let after): refusals.append((sends, after))
            case .accessError(let request): accessErrors.append(request)
            case .forceError(let post): forcedErrors.append(post)
            case .vanish(let packet): vanishAt.append(packet)
            case .loss(let probability, let seed):
                // Each queue pair draws its own sequence from the rule's seed.
                loss = (probability, SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(number)))
            }
        }
        transportRetries = retry.transportRetries
        retryWait = max(1, UInt64(MonotonicClock.nanoseconds(retry.responseTimeout)) / UInt64(retry.transportRetries + 1))
    }

    // MARK: Requests leaving

    typealias Admission = LinkAdmission

    func beginRound() -> UInt64 {
        releaseAt = .max
        return MonotonicClock.now()
    }

    /// Numbers the packets of a request being posted; returns the first.
    func numberPackets(_ count: Int) -> Int {
        defer { nextPacket += count }
        return nextPacket
    }

    /// May the request at `position` leave at `now`? Counts the faults and
    /// retries it injects into `counters`.
    func admit(position: Int, _ slot: SendSlot, now: UInt64, counters: inout QueuePairStatistics) -> Admission {
        let range = slot.firstPacket..<(slot.firstPacket + slot.packetCount)
        let readyAt = slot.readyAt
        if let index = vanishAt.firstIndex(where: { range.contains($0) }) {
            vanishAt.remove(at: index)
            counters.faultsInjected += 1
            vanished = true
            return .vanish
        }
        if latency > 0 && now < readyAt &+ latency {
            return hold(until: readyAt &+ latency)
        }
        if heldPosition == position {
            if now < heldUntil { return hold(until: heldUntil) }
            guard let lost = lostAttempts else {
                heldPosition = nil  // a delay that has run out
                return .go
            }
            // The retry timer of a lost packet fired.
            if lost > transportRetries {
                // Asked again, the answer stays the same until the engine
                // has failed the request (now, or at the next round).
                releaseAt = min(releaseAt, now)
                return .retriesExhausted
            }
            counters.retries += 1
            let lostAgain = lostAtRandom ? losesTransmission(packets: slot.packetCount) : (lostLimit.map({ lost < $0 }) ?? true)
            if lostAgain {
                lostAttempts = lost + 1
                counters.faultsInjected += 1
                heldUntil = now &+ retryWait
                return hold(until: heldUntil)
            }
            heldPosition = nil
            if lostAtRandom { keptPosition = position }
            return .go
        }
        if let index = drops.firstIndex(where: { range.contains($0.packet) }) {
            lostLimit = drops[index].times
            drops.remove(at: index)
            return lose(position: position, now: now, atRandom: false, counters: &counters)
        }
        if loss != nil, keptPosition != position {
            if losesTransmission(packets: slot.packetCount) {
                return lose(position: position, now: now, atRandom: true, counters: &counters)
            }
            keptPosition = position
        }
        if let index = delays.firstIndex(where: { range.contains($0.packet) }) {
            let by = delays[index].by
            delays.remove(at: index)
            counters.faultsInjected += 1
            heldPosition = position
            lostAttempts = nil
            heldUntil = now &+ by
            return hold(until: heldUntil)
        }
        return .go
    }

    /// The request at `position` is lost: held for a retry timeout.
    private func lose(position: Int, now: UInt64, atRandom: Bool, counters: inout QueuePairStatistics) -> Admission {
        counters.faultsInjected += 1
        heldPosition = position
        lostAttempts = 1
        lostAtRandom = atRandom
        heldUntil = now &+ retryWait
        return hold(until: heldUntil)
    }

    /// Draws, for each of a transmission's packets, whether it is lost.
    private func losesTransmission(packets: Int) -> Bool {
        guard var current = loss, current.probability > 0 else { return false }
        defer { loss = current }
        var lost = false
        for _ in 0..<max(1, packets) where current.generator.nextUnit() < current.probability { lost = true }
        return lost
    }

    private func hold(until time: UInt64) -> Admission {
        releaseAt = min(releaseAt, time)
        return .hold
    }

    /// May a responder frame (READ response, atomic response, NAK) or an
    /// acknowledgement that became ready at `readyAt` leave at `now`?
    func mayRespond(readyAt: UInt64, now: UInt64) -> Bool {
        guard latency > 0, now < readyAt &+ latency else { return true }
        releaseAt = min(releaseAt, readyAt &+ latency)
        return false
    }

    // MARK: The token bucket

    /// Bytes the link takes now, given `wanted` bytes waiting; 0 means wait
    /// (and `releaseAt` says until when). Int.max when unshaped.
    func allowance(wanted: Int, now: UInt64) -> Int {
        guard let rate = bytesPerNanosecond else { return .max }
        if now > refilledAt {
            tokens = min(burstBytes, tokens + Double(now - refilledAt) * rate)
            refilledAt = now
        }
        let needed = Double(min(wanted, writeQuantum))
        if tokens >= needed { return Int(tokens) }
        let wait = UInt64(((needed - tokens) / rate).rounded(.up))
        releaseAt = min(releaseAt, now &+ max(1, wait))
        return 0
    }

    func spend(_ bytes: Int) {
        if bytesPerNanosecond != nil { tokens -= Double(bytes) }
    }

    // MARK: Requests arriving and being posted

    /// A SEND arrived: must it be refused as receiver-not-ready?
    func refusesSend() -> Bool {
        sendsArrived += 1
        return refusals.contains { sendsArrived > $0.after && sendsArrived <= $0.after + $0.sends }
    }

    /// A WRITE, READ or atomic arrived: must it fail as a remote access error?
    func refusesAccess() -> Bool {
        accessesArrived += 1
        return accessErrors.contains(accessesArrived)
    }

    /// A send request was posted: must the queue pair go to the error state?
    func forcesError() -> Bool {
        postsSeen += 1
        return forcedErrors.contains(postsSeen)
    }
}

/// The answer to a request frame that wants to leave.
enum LinkAdmission: Equatable {
    /// The frame may leave now.
    case go
    /// Not yet: `releaseAt` says when to ask again.
    case hold
    /// Its retries ran out: the request fails with transport retry exceeded.
    case retriesExhausted
    /// The queue pair just went silent.
    case vanish
}
