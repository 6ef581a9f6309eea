/// `count` elements of `datatype` from `base`: a collective's buffer, or
/// a block or range of one, as its schedule reads and writes it. Made
/// only from buffers a collective has checked (a committed type, a size
/// that does not overflow, no null address under a nonzero count).
struct Elements {
    let base: UnsafeMutableRawPointer?
    let count: Int
    let datatype: Datatype

    init(_ base: UnsafeMutableRawPointer?, count: Int, _ datatype: Datatype) {
        self.base = base
        self.count = count
        self.datatype = datatype
    }

    init(_ base: UnsafeRawPointer?, count: Int, _ datatype: Datatype) {
        self.init(UnsafeMutableRawPointer(mutating: base), count: count, datatype)
    }

    var bytes: Int { count * datatype.size }

    /// Elements `range` of these.
    func elements(_ range: Range<Int>) -> Elements {
        Elements(base.map { $0 + range.lowerBound * datatype.extent }, count: range.count, datatype)
    }

    var sendBuffer: SendBuffer {
        SendBuffer(checked: base.map { UnsafeRawPointer($0) }, count: count, datatype: datatype)
    }

    var receiveBuffer: ReceiveBuffer {
        ReceiveBuffer(checked: base, count: count, datatype: datatype)
    }
}

extension CollectiveSchedule {
    /// `buffer`'s bytes as one run of bytes: the buffer itself when its
    /// elements are one range, else scratch memory (on `root`, filled from
    /// the buffer in a first round; elsewhere the caller copies it back).
    mutating func contiguousBytes(of buffer: Elements, filledOn root: Int, allocator: ScratchAllocator) throws(MPIError) -> Elements {
        if let offset = buffer.datatype.contiguousRange(count: buffer.count) {
            return Elements(buffer.bytes == 0 ? buffer.base : buffer.base.map { $0 + offset }, count: buffer.bytes, .byte)
        }
        let staging = try scratchElements(count: buffer.bytes, .byte, from: allocator)
        if rank == root { try copy(buffer.sendBuffer, into: staging.receiveBuffer) }
        return staging
    }
}
