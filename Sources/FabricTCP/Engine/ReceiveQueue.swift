import FabricCore
import Synchronization

/// A ring of posted receives with their scatter lists and the region records
/// that keep those lists valid. Preallocated; posting and taking allocate
/// nothing. Used by a queue pair's own receive queue and by a shared one.
struct ReceiveRing: ~Copyable {
    let depth: Int
    let maxElements: Int
    private let ids: UnsafeMutablePointer<UInt64>
    private let counts: UnsafeMutablePointer<Int>
    private let elements: UnsafeMutablePointer<ScatterGatherElement>
    private let records: UnsafeMutablePointer<RegionRecord?>
    private var head = 0
    private(set) var count = 0

    init(depth: Int, maxElements: Int) {
        self.depth = depth
        self.maxElements = maxElements
        ids = .allocate(capacity: depth)
        counts = .allocate(capacity: depth)
        counts.initialize(repeating: 0, count: depth)
        elements = .allocate(capacity: depth * maxElements)
        elements.initialize(repeating: ScatterGatherElement(address: 0, length: 0, localKey: LocalKey(rawValue: 0)), count: depth * maxElements)
        records = .allocate(capacity: depth * maxElements)
        records.initialize(repeating: nil, count: depth * maxElements)
    }

    deinit {
        records.deinitialize(count: depth * maxElements)
        records.deallocate()
        elements.deallocate()
        counts.deallocate()
        ids.deallocate()
    }

    var isFull: Bool { count == depth }

    /// Validates every element against the table and appends the receive.
    /// Returns the failing detail if an element is not usable.
    /// The region the last receive came from (see `RegionTable.checkLocal`).
    private var lastRecord: RegionRecord?

    mutating func post(_ request: ReceiveWorkRequest, table: RegionTable, domain: ObjectIdentifier) -> CompletionDetail? {
        var index = head + count
        if index >= depth { index -= depth }
        let base = index * maxElements
        let n = request.local.count
        for i in 0..<n {
            let element = request.local[i]
            if element.length == 0 {
                records[base + i] = nil
            } else {
                switch table.checkLocal(element, needsWrite: true, domain: domain, cache: &lastRecord) {
                case .success(let record): records[base + i] = record
                case .failure(let detail):
                    for j in 0..<i { records[base + j] = nil }
                    return detail
                }
            }
            elements[base + i] = element
        }
        ids[index] = request.id
        counts[index] = n
        count += 1
        return nil
    }

    /// The first piece of the oldest receive (where a SEND's payload would
    /// start), and its region, unretained (the ring keeps it, and the
    /// receive leaves the ring only under the same lock); nil if none is
    /// posted.
    @inline(__always)
    func firstPieceOfOldest() -> (base: UnsafeMutableRawPointer, length: Int, record: Unmanaged<RegionRecord>?)? {
        guard count > 0, counts[head] > 0 else { return nil }
        let index = head * maxElements
        guard let base = UnsafeMutableRawPointer(bitPattern: UInt(elements[index].address)) else { return nil }
        return (base, Int(elements[index].length), unretainedRecord(at: records + index))
    }

    /// Moves the oldest receive into `target` (its id, elements and records).
    mutating func take(into target: inout PlacementTargets) -> UInt64? {
        guard count > 0 else { return nil }
        let index = head
        let base = index * maxElements
        target.reset()
        for i in 0..<counts[index] {
            let element = elements[base + i]
            // The record moves to the target: no retain and release.
            let record = (records + base + i).move()
            (records + base + i).initialize(to: nil)
            target.append(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), length: Int(element.length), record: record)
        }
        head += 1
        if head == depth { head = 0 }
        count -= 1
        return ids[index]
    }

    /// Removes every receive, returning their ids in order (for flushing).
    mutating func drain(_ each: (UInt64) -> Void) {
        while count > 0 {
            let index = head
            let base = index * maxElements
            for i in 0..<counts[index] { records[base + i] = nil }
            each(ids[index])
            head += 1
            if head == depth { head = 0 }
            count -= 1
        }
    }
}

/// Where an incoming payload goes: a list of (pointer, length, region
/// record) segments with a cursor. Preallocated per queue pair.
struct PlacementTargets: ~Copyable {
    let capacity: Int
    let bases: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let lengths: UnsafeMutablePointer<Int>
    let records: UnsafeMutablePointer<RegionRecord?>
    var count = 0
    var index = 0
    var offset = 0
    var total = 0

    init(capacity: Int) {
        self.capacity = capacity
        bases = .allocate(capacity: capacity)
        bases.initialize(repeating: nil, count: capacity)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        records = .allocate(capacity: capacity)
        records.initialize(repeating: nil, count: capacity)
    }

    deinit {
        records.deinitialize(count: capacity)
        records.deallocate()
        lengths.deallocate()
        bases.deallocate()
    }

    mutating func reset() {
        for i in 0..<count { records[i] = nil }
        count = 0
        index = 0
        offset = 0
        total = 0
    }

    mutating func append(_ base: UnsafeMutableRawPointer?, length: Int, record: consuming RegionRecord?) {
        precondition(count < capacity)
        bases[count] = base
        lengths[count] = length
        records[count] = record
        count += 1
        total += length
    }

    /// Advances the cursor by `bytes` already placed.
    mutating func advance(_ bytes: Int) {
        var left = bytes
        while left > 0 && index < count {
            let room = lengths[index] - offset
            if left < room {
                offset += left
                return
            }
            left -= room
            index += 1
            offset = 0
        }
        while index < count && lengths[index] == 0 { index += 1 }
    }
}
