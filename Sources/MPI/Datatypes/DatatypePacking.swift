/// Packing: the bytes of `count` elements, in type-map order, gathered
/// into one contiguous buffer, and scattered back (MPI_Pack, MPI_Unpack,
/// MPI_Pack_size). Point-to-point uses the same walks to copy a message
/// into a bounce slot and out of one, and to build scatter lists.
///
/// The packed form is the bytes themselves, in the machine's order: the
/// ranks of a job are taken to share one architecture (no conversion
/// between byte orders is done).
extension Datatype {
    /// The bytes `count` elements pack into (exact, not a bound).
    public func packSize(count: Int) throws(MPIError) -> Int {
        try checkedSize(count: count, in: "a pack size")
    }

    /// Packs `count` elements at `base` into `output` from `position`,
    /// which moves past them (MPI_Pack).
    public func pack(_ base: UnsafeRawPointer?, count: Int, into output: UnsafeMutableRawBufferPointer, position: inout Int) throws(MPIError) {
        try checkUsable(in: "a pack")
        let bytes = try checkedSize(count: count, in: "a pack")
        guard position >= 0, position <= output.count, bytes <= output.count - position else {
            throw MPIError(.truncated, "a pack of \(bytes) bytes at position \(position) into a buffer of \(output.count)")
        }
        guard bytes > 0 else { return }
        guard let base, let destination = output.baseAddress else { throw Self.nullBuffer("a pack", bytes) }
        gather(from: base, count: count, packedFrom: 0, length: bytes, into: destination + position)
        position += bytes
    }

    /// Unpacks `count` elements from `input` at `position`, which moves
    /// past them, into `base` (MPI_Unpack).
    public func unpack(from input: UnsafeRawBufferPointer, position: inout Int, into base: UnsafeMutableRawPointer?, count: Int) throws(MPIError) {
        try checkUsable(in: "an unpack")
        let bytes = try checkedSize(count: count, in: "an unpack")
        guard position >= 0, position <= input.count, bytes <= input.count - position else {
            throw MPIError(.truncated, "an unpack of \(bytes) bytes at position \(position) from a buffer of \(input.count)")
        }
        guard bytes > 0 else { return }
        guard let base, let source = input.baseAddress else { throw Self.nullBuffer("an unpack", bytes) }
        scatter(from: source + position, into: base, count: count, packedFrom: 0, length: bytes)
        position += bytes
    }

    /// The basic elements in the first `bytes` packed bytes of a message
    /// of this type (MPI_Get_elements); nil if the bytes end inside one.
    public func basicElements(inPackedBytes bytes: Int) -> Int? {
        let size = self.size
        guard size > 0 else { return bytes == 0 ? 0 : nil }
        let whole = bytes / size
        let rest = layout.basicElements(inFirst: bytes - whole * size)
        return rest.exact ? whole * layout.basicCount + rest.count : nil
    }

    // MARK: - Walks (for point-to-point)

    /// Copies packed bytes `start ..< start + length` of `count` elements
    /// at `base` to `destination`.
    func gather(from base: UnsafeRawPointer, count: Int, packedFrom start: Int, length: Int, into destination: UnsafeMutableRawPointer) {
        var written = 0
        forEachRange(count: count, packedFrom: start, length: length) { offset, length in
            (destination + written).copyMemory(from: base + offset, byteCount: length)
            written += length
            return true
        }
    }

    /// Copies `length` packed bytes from `source` to where packed bytes
    /// `start ..< start + length` of `count` elements at `base` belong.
    func scatter(from source: UnsafeRawPointer, into base: UnsafeMutableRawPointer, count: Int, packedFrom start: Int, length: Int) {
        var read = 0
        forEachRange(count: count, packedFrom: start, length: length) { offset, length in
            (base + offset).copyMemory(from: source + read, byteCount: length)
            read += length
            return true
        }
    }

    /// Calls `body(offset, length)` for each contiguous range of memory,
    /// from the buffer's address, that holds packed bytes
    /// `start ..< start + length` of `count` elements, in packing order,
    /// until it returns false.
    func forEachRange(count: Int, packedFrom start: Int, length: Int, _ body: (Int, Int) -> Bool) {
        guard length > 0 else { return }
        if let offset = contiguousRange(count: count) {
            _ = body(offset + start, length)
            return
        }
        let size = self.size
        let extent = self.extent
        var index = start / size
        var within = start - index * size
        var remaining = length
        while remaining > 0 {
            let take = min(size - within, remaining)
            guard layout.forEachRange(base: index * extent, from: within, length: take, body) else { return }
            remaining -= take
            within = 0
            index += 1
        }
    }

    // MARK: - Checks

    /// The packed size of `count` elements, after checking that the count
    /// can be and that its extent fits in memory's addresses.
    func checkedSize(count: Int, in operation: @autoclosure () -> String) throws(MPIError) -> Int {
        guard count >= 0 else { throw MPIError(.invalidArgument, "\(operation()) of \(count) elements of \(self)") }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
        let span = max(0, count - 1).multipliedReportingOverflow(by: extent)
        guard !overflow, !span.overflow else {
            throw MPIError(.invalidArgument, "\(operation()) of \(count) elements of \(self): more bytes than an address can span")
        }
        return bytes
    }

    private static func nullBuffer(_ operation: String, _ bytes: Int) -> MPIError {
        MPIError(.invalidBuffer, "\(operation) of \(bytes) bytes with a null buffer")
    }
}

extension Datatype {
    /// Where the bytes of `count` elements lie, from the buffer's address:
    /// the range a registration of the buffer must cover.
    func trueSpan(count: Int) -> Range<Int> {
        guard count > 0, size > 0 else { return 0..<0 }
        let last = (count - 1) * extent
        return (bounds.trueLower + min(0, last))..<(bounds.trueUpper + max(0, last))
    }
}
