import Glibc

/// One frame of the outgoing byte stream.
enum OutputItem: Equatable {
    case request(position: Int)
    case response(index: Int)
    case standaloneAck
    case disconnect
}

/// The frames one `sendmsg` carries, and the frame a previous call left
/// half-written. A value that knows nothing of sockets: the engine fills it
/// (pieces of memory, then the item they belong to), hands its vectors to
/// the socket, and tells it how many bytes the socket took; the batch says
/// which frames are now gone whole and which one is cut, and remembers
/// where the cut is. (SwiftNIO's PendingWritesManager splits the same job
/// the same way.)
///
/// The memory regions a batch's payloads come from stay pinned (`pin`) from
/// building to the write: a deregistration waits for them.
struct OutputBatch: ~Copyable {
    static let vectorCapacity = EngineTuning.iovecCapacity
    static let itemCapacity = EngineTuning.batchCapacity

    let vectors: UnsafeMutablePointer<iovec>
    let items: UnsafeMutablePointer<OutputItem>
    /// Bytes of each item in this batch: from where it resumes to its end.
    let lengths: UnsafeMutablePointer<Int>
    private let pins: UnsafeMutablePointer<Unmanaged<RegionRecord>>

    private(set) var vectorCount = 0
    private(set) var count = 0
    private var pinCount = 0
    /// False once an item's pieces did not all fit in the vectors: nothing
    /// may follow it in this batch (it is written in part, and resumed).
    var complete = true
    /// Whether `items[0]` is the frame a previous write cut.
    private(set) var resumesPartial = false

    /// The frame a previous write cut, and how many of its bytes went.
    private(set) var partial: OutputItem?
    private(set) var partialOffset = 0

    init() {
        vectors = .allocate(capacity: Self.vectorCapacity)
        items = .allocate(capacity: Self.itemCapacity)
        lengths = .allocate(capacity: Self.itemCapacity)
        pins = .allocate(capacity: Self.vectorCapacity)
    }

    deinit {
        vectors.deallocate()
        items.deallocate()
        lengths.deallocate()
        pins.deallocate()
    }

    // MARK: Building

    /// Starts an empty batch (the cut frame, if any, is still remembered).
    @inline(__always)
    mutating func begin() {
        vectorCount = 0
        count = 0
        pinCount = 0
        complete = true
        resumesPartial = false
    }

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == Self.itemCapacity }

    /// Vectors still free.
    var vectorsLeft: Int { Self.vectorCapacity - vectorCount }

    /// Adds a piece of `length` bytes at `pointer`, minus the first `skip`
    /// of them (already written); lowers `skip` by what it skipped.
    @inline(__always)
    mutating func addPiece(_ pointer: UnsafeMutableRawPointer?, _ length: Int, skip: inout Int) {
        if skip >= length {
            skip -= length
            return
        }
        precondition(vectorCount < Self.vectorCapacity, "output batch: more pieces than vectors")
        vectors[vectorCount] = iovec(iov_base: pointer.map { $0 + skip }, iov_len: length - skip)
        skip = 0
        vectorCount += 1
    }

    /// Forgets the pieces added since the batch had `vectorCount` of them
    /// (an item that could not be claimed after all).
    @inline(__always)
    mutating func dropPieces(after vectorCount: Int) {
        self.vectorCount = vectorCount
    }

    /// Pins a region a piece comes from until `releasePins`; false if it
    /// is being deregistered (then nothing was pinned).
    @inline(__always)
    mutating func pin(_ record: RegionRecord) -> Bool {
        pin(Unmanaged.passUnretained(record))
    }

    /// The same for a record the caller holds unretained (its queue entry
    /// keeps it alive).
    @inline(__always)
    mutating func pin(_ record: Unmanaged<RegionRecord>) -> Bool {
        guard record._withUnsafeGuaranteedRef({ $0.beginAccess() }) else { return false }
        pins[pinCount] = record
        pinCount += 1
        return true
    }

    /// Lets go of every pinned region (after the write, or when the batch
    /// is abandoned).
    @inline(__always)
    mutating func releasePins() {
        // Through the unretained reference as it is (the send queue or the
        // response keeps the record alive): takeUnretainedValue() cost a
        // retain and a release around each endAccess.
        for i in 0..<pinCount { pins[i]._withUnsafeGuaranteedRef { $0.endAccess() } }
        pinCount = 0
    }

    /// Closes the cut frame, resumed as the batch's first item: `length`
    /// is its whole wire length.
    @inline(__always)
    mutating func appendCut(length: Int) {
        precondition(count == 0, "output batch: the cut frame must come first")
        resumesPartial = true
        lengths[0] = length - partialOffset
        items[0] = partial!
        count = 1
    }

    /// Closes a fresh item whose pieces were just added: `length` is its
    /// wire length.
    @inline(__always)
    mutating func append(_ item: OutputItem, length: Int) {
        precondition(count < Self.itemCapacity, "output batch: more items than room")
        lengths[count] = length
        items[count] = item
        count += 1
    }

    /// The items that start in this batch (their headers carry the current
    /// acknowledgement).
    var freshItems: Range<Int> { (resumesPartial ? 1 : 0)..<count }

    /// Bytes the vectors hold.
    var byteCount: Int {
        var total = 0
        for i in 0..<vectorCount { total += vectors[i].iov_len }
        return total
    }

    /// Cuts the vectors so that they hold at most `limit` bytes: one write
    /// call moves at most a chunk, or what the emulated link allows.
    /// (Inlined, like `wrote`: called once per write, a call costs more
    /// than the loop over one or two vectors.)
    @inline(__always)
    mutating func limit(to limit: Int) {
        var left = limit
        for i in 0..<vectorCount {
            if vectors[i].iov_len >= left {
                vectors[i].iov_len = left
                vectorCount = i + 1
                return
            }
            left -= vectors[i].iov_len
        }
    }

    // MARK: After the write

    /// What one write did to the batch.
    struct Outcome: Equatable {
        /// Items `0..<finished` left whole.
        var finished: Int
        /// The item at `finished` began in this write but did not end (a
        /// fresh frame is now the cut one).
        var startedCut: Bool
        /// Not everything was taken: the socket (or the link) is full.
        var stoppedShort: Bool
        /// The first fresh item's header left whole: the acknowledgement
        /// it carries reached the stream.
        var acknowledgementSent: Bool
    }

    /// The socket took `written` bytes of the vectors: which items are
    /// gone, and where the new cut is.
    @inline(__always)
    mutating func wrote(_ written: Int) -> Outcome {
        let fresh = resumesPartial ? 1 : 0
        let headerSent = count > fresh && written >= (fresh == 1 ? lengths[0] : 0) + FrameHeader.size
        var left = written
        var finished = 0
        while finished < count && left >= lengths[finished] {
            left -= lengths[finished]
            finished += 1
        }
        var startedCut = false
        if finished == count {
            partial = nil
            partialOffset = 0
        } else if finished == 0 && resumesPartial {
            partialOffset += left
        } else {
            partial = items[finished]
            partialOffset = left
            startedCut = true
        }
        return Outcome(finished: finished, startedCut: startedCut, stoppedShort: finished < count, acknowledgementSent: headerSent)
    }

    /// The cut frame can never be finished (its memory went, or the queue
    /// pair failed): forget it.
    mutating func abandonPartial() {
        partial = nil
        partialOffset = 0
    }
}
