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

    /// Block `index` of blocks of `count` elements each, the first at `base`.
    func block(_ index: Int) -> Elements {
        Elements(base.map { $0 + index * count * datatype.extent }, count: count, datatype)
    }

    /// The same elements `displacement` extents further on (the v-variants' displacements).
    func displaced(by displacement: Int, count: Int) -> Elements {
        Elements(base.map { $0 + displacement * datatype.extent }, count: count, datatype)
    }

    var sendBuffer: SendBuffer {
        SendBuffer(checked: base.map { UnsafeRawPointer($0) }, count: count, datatype: datatype)
    }

    var receiveBuffer: ReceiveBuffer {
        ReceiveBuffer(checked: base, count: count, datatype: datatype)
    }
}

extension SendBuffer {
    /// Elements a collective has checked already.
    init(checked base: UnsafeRawPointer?, count: Int, datatype: Datatype) {
        self.count = count
        length = count * datatype.size
        if let offset = datatype.contiguousRange(count: count) {
            self.base = length == 0 ? base : base.map { $0 + offset }
            layout = nil
        } else {
            self.base = base
            layout = datatype
        }
    }
}

extension ReceiveBuffer {
    init(checked base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype) {
        self.count = count
        capacity = count * datatype.size
        if let offset = datatype.contiguousRange(count: count) {
            self.base = capacity == 0 ? base : base.map { $0 + offset }
            layout = nil
        } else {
            self.base = base
            layout = datatype
        }
    }
}
