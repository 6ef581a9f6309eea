import CFabricShims
import FabricCore
import Glibc

/// What to do once the current incoming payload is fully placed.
enum ReceiveAction {
    case none
    case writePlaced
    case receivePlaced(id: UInt64, opcode: CompletionOpcode, immediate: UInt32?, length: Int)
    case readResponse(position: Int)
    case atomicRequest(FrameHeader)
    case atomicResponse(position: Int)
    /// The payload is being thrown away; then send this NAK (if any).
    case discard(nak: (sequence: UInt32, status: CompletionStatus, detail: CompletionDetail)?)
}

/// Where the current incoming payload goes, and what finishing it means:
/// the destination segments (a receive's scatter list, a WRITE's target,
/// a READ requester's buffers, the atomic operands), or the scratch buffer
/// when it is thrown away. Every byte is placed with its region pinned
/// (`beginAccess`), and a destination its owner unmapped fails the
/// placement instead of the process.
struct PayloadPlacement: ~Copyable {
    static let scratchCapacity = EngineTuning.scratchCapacity
    static let vectorCapacity = EngineTuning.iovecCapacity

    var targets: PlacementTargets
    /// What finishing the payload does.
    var action: ReceiveAction = .none
    /// The payload goes to the scratch buffer and is forgotten.
    var discarding = false
    /// Where thrown-away payload bytes are read to.
    let scratch: UnsafeMutableRawPointer
    /// An atomic request's operands, or a READ response's status trailer
    /// (at offset 16).
    let operands: UnsafeMutableRawPointer
    /// The vectors of a read in place, and the regions it pins.
    let vectors: UnsafeMutablePointer<iovec>
    private let pinned: UnsafeMutablePointer<Unmanaged<RegionRecord>>

    init(segments: Int) {
        targets = PlacementTargets(capacity: segments)
        scratch = .allocate(byteCount: Self.scratchCapacity, alignment: 64)
        operands = .allocate(byteCount: 32, alignment: 16)
        vectors = .allocate(capacity: Self.vectorCapacity)
        pinned = .allocate(capacity: Self.vectorCapacity)
    }

    deinit {
        scratch.deallocate()
        operands.deallocate()
        vectors.deallocate()
        pinned.deallocate()
    }

    /// A payload starts: what to do with it once placed.
    @inline(__always)
    mutating func begin(_ action: ReceiveAction, discard: Bool) {
        self.action = action
        discarding = discard
    }

    /// The payload is complete: what it was for (the placement is ready
    /// for the next one, though its targets stay until reset).
    @inline(__always)
    mutating func finish() -> ReceiveAction {
        let finished = action
        action = .none
        discarding = false
        return finished
    }

    // MARK: Copies from the staging buffer

    /// Copies `count` payload bytes from `source` to the destination, under
    /// the fault guard. Returns why the placement failed, or nil. (Inlined
    /// into `receive`, as before the parts: out of line, with the cursor's
    /// `advance` it pulls along, it cost about 100 instructions per small
    /// message.)
    @inline(__always)
    mutating func copy(from source: UnsafeMutableRawPointer, count: Int) -> CompletionDetail? {
        var source = source
        var left = count
        while left > 0 && targets.index < targets.count {
            let index = targets.index
            let length = min(targets.lengths[index] - targets.offset, left)
            if length > 0, let base = targets.bases[index] {
                let record = targets.records[index]
                if let record, !record.beginAccess() { return .unknownKey }
                let status = fabric_guarded_copy(base + targets.offset, source, length)
                record?.endAccess()
                if status != 0 { return .pageNotMapped }
            }
            targets.advance(length)
            source += length
            left -= length
        }
        return nil
    }

    // MARK: Reads in place

    /// The vectors of one read in place: the payload's next destination
    /// pieces, then the staging room `tail` for what follows.
    struct ReadPlan {
        /// Vectors to read into (`vectors[0..<vectorCount]`).
        var vectorCount: Int
        /// Payload bytes they make room for (the rest is the tail).
        var planned: Int
        /// Regions pinned until `endRead`.
        var pinnedCount: Int
    }

    /// Plans a read of at most `remaining` payload bytes, with `tail` bytes
    /// at `staging` behind them. A failure names why the destination cannot
    /// be used (nothing stays pinned then). Inlined into its one caller.
    @inline(__always)
    mutating func planRead(remaining: Int, staging: UnsafeMutableRawPointer, tail: Int) -> Result<ReadPlan, CompletionDetail> {
        var vectorCount = 0
        var pinnedCount = 0
        var planned = 0
        if discarding {
            planned = min(remaining, Self.scratchCapacity)
            vectors[0] = iovec(iov_base: scratch, iov_len: planned)
            vectorCount = 1
        } else {
            var index = targets.index
            var offset = targets.offset
            while planned < remaining && index < targets.count && vectorCount < Self.vectorCapacity - 1 {
                let length = min(targets.lengths[index] - offset, remaining - planned)
                if length > 0 {
                    if let record = targets.records[index] {
                        guard record.beginAccess() else {
                            endRead(pinnedCount)
                            return .failure(.unknownKey)
                        }
                        pinned[pinnedCount] = Unmanaged.passUnretained(record)
                        pinnedCount += 1
                    }
                    vectors[vectorCount] = iovec(iov_base: targets.bases[index].map { $0 + offset }, iov_len: length)
                    vectorCount += 1
                    planned += length
                }
                index += 1
                offset = 0
            }
        }
        vectors[vectorCount] = iovec(iov_base: staging, iov_len: tail)
        vectorCount += 1
        return .success(ReadPlan(vectorCount: vectorCount, planned: planned, pinnedCount: pinnedCount))
    }

    /// The read is over: the regions it pinned are free again.
    @inline(__always)
    func endRead(_ pinnedCount: Int) {
        // Through the unretained reference as it is (the targets keep the
        // record alive): takeUnretainedValue() cost a retain and a release
        // around each endAccess.
        for i in 0..<pinnedCount { pinned[i]._withUnsafeGuaranteedRef { $0.endAccess() } }
    }

    /// `count` payload bytes were read in place.
    @inline(__always)
    mutating func placed(_ count: Int) {
        if !discarding { targets.advance(count) }
    }
}
