/// The user's memory a send reads from: one contiguous range of bytes, or
/// `count` elements of a datatype whose bytes are spread out (then the
/// message is the elements' bytes in packing order).
struct SendBuffer {
    /// The range's start, or the address of the first element.
    var base: UnsafeRawPointer?
    /// Bytes of the message.
    var length: Int
    /// The datatype, when the bytes are not one range.
    var layout: Datatype?
    var count: Int

    init(_ bytes: UnsafeRawBufferPointer) {
        base = bytes.baseAddress
        length = bytes.count
        layout = nil
        count = bytes.count
    }

    /// `count` elements of `datatype` at `base`; a type whose elements
    /// are one range becomes that range.
    init(_ base: UnsafeRawPointer?, count: Int, datatype: Datatype, for operation: @autoclosure () -> String) throws(MPIError) {
        try datatype.checkUsable(in: operation())
        let length = try datatype.checkedSize(count: count, in: operation())
        guard length == 0 || base != nil else { throw MPIError(.invalidBuffer, "\(operation()) of \(length) bytes from a null buffer") }
        self.init(checked: base, count: count, datatype: datatype)
    }

    /// Elements checked already (a collective's blocks).
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

    /// Copies message bytes `start ..< start + length` to `destination`.
    /// (Inlined: on the eager path of contiguous data it is one memcpy.)
    @inline(__always)
    func copy(_ start: Int = 0, length: Int, to destination: UnsafeMutableRawPointer) {
        guard length > 0, let base else { return }
        if layout == nil {
            destination.copyMemory(from: base + start, byteCount: length)
        } else {
            gather(start, length: length, to: destination, from: base)
        }
    }

    private func gather(_ start: Int, length: Int, to destination: UnsafeMutableRawPointer, from base: UnsafeRawPointer) {
        layout?.gather(from: base, count: count, packedFrom: start, length: length, into: destination)
    }
}

/// The user's memory a receive writes to: one contiguous range, or
/// `count` elements of a datatype whose bytes are spread out.
struct ReceiveBuffer {
    var base: UnsafeMutableRawPointer?
    /// Bytes it takes.
    var capacity: Int
    var layout: Datatype?
    var count: Int

    init(_ bytes: UnsafeMutableRawBufferPointer) {
        base = bytes.baseAddress
        capacity = bytes.count
        layout = nil
        count = bytes.count
    }

    init(_ base: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, for operation: @autoclosure () -> String) throws(MPIError) {
        try datatype.checkUsable(in: operation())
        let capacity = try datatype.checkedSize(count: count, in: operation())
        guard capacity == 0 || base != nil else { throw MPIError(.invalidBuffer, "\(operation()) of \(capacity) bytes into a null buffer") }
        self.init(checked: base, count: count, datatype: datatype)
    }

    /// Elements checked already (a collective's blocks).
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

extension SendBuffer {
    /// The message's bytes, in a new array.
    func packed() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: length) { bytes, initialized in
            if let base = bytes.baseAddress { copy(length: length, to: base) }
            initialized = length
        }
    }
}
