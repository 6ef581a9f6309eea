/// The cache's address ranges, sorted by start, for the two questions it
/// asks: which entry contains a buffer (a hit), and which entries overlap
/// an unmapped range (an invalidation). Entries may overlap each other.
/// A plain value without system calls, tested alone.
///
/// Both searches find the last range starting at or before the point of
/// interest by binary search and walk back while a range could still
/// reach it: `longest` bounds how far back that is.
struct RegistrationIndex {
    struct Span: Equatable {
        var start: UInt
        var end: UInt
        /// The entry's place in the cache's table.
        var slot: Int32
    }

    private(set) var spans: [Span] = []
    /// The longest span ever inserted (not lowered on removal: a bound for
    /// the backward walk, correct if loose).
    private var longest: UInt = 0

    init(reservingCapacity capacity: Int = 0) {
        spans.reserveCapacity(capacity)
    }

    var count: Int { spans.count }

    /// The first index whose start is greater than `address`.
    private func upperBound(_ address: UInt) -> Int {
        var low = 0
        var high = spans.count
        while low < high {
            let middle = (low + high) / 2
            if spans[middle].start <= address { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// A span containing [start, end) that `accept` takes, if there is one.
    func find(containing start: UInt, _ end: UInt, where accept: (Int32) -> Bool) -> Int32? {
        var index = upperBound(start) - 1
        while index >= 0 {
            let span = spans[index]
            if span.start &+ longest < end { return nil }
            if span.end >= end, accept(span.slot) { return span.slot }
            index -= 1
        }
        return nil
    }

    mutating func insert(_ span: Span) {
        spans.insert(span, at: upperBound(span.start))
        longest = max(longest, span.end - span.start)
    }

    /// Removes the span of `slot` that starts at `start`.
    mutating func remove(slot: Int32, start: UInt) {
        var index = upperBound(start) - 1
        while index >= 0, spans[index].start == start {
            if spans[index].slot == slot {
                spans.remove(at: index)
                return
            }
            index -= 1
        }
    }

    /// Calls `body` with the slot of every span overlapping [start, end).
    func forEachOverlapping(_ start: UInt, _ end: UInt, _ body: (Int32) -> Void) {
        guard end > start else { return }
        var index = upperBound(end - 1) - 1
        while index >= 0 {
            let span = spans[index]
            if span.start &+ longest <= start { return }
            if span.end > start { body(span.slot) }
            index -= 1
        }
    }
}
