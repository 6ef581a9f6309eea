import Testing

@testable import MPI

/// Datatypes: sizes and bounds as MPI defines them, and pack/unpack of
/// nested types checked byte by byte against offsets written out by hand
/// (not derived from the implementation's layout).
struct DatatypeTests {
    /// Bytes at `offsets` (each `(offset, length)` from the buffer's base,
    /// in packing order): what a pack must produce.
    private func expectedPacking(_ source: [UInt8], base: Int, _ ranges: [(Int, Int)]) -> [UInt8] {
        ranges.flatMap { source[(base + $0.0)..<(base + $0.0 + $0.1)] }
    }

    /// Packs `count` elements of `type` from a patterned buffer, compares
    /// with `ranges`, unpacks into a zeroed buffer and checks that exactly
    /// those bytes came back; packs again from every cut of the packed
    /// bytes in two (the cursor form point-to-point uses).
    private func checkRoundTrip(_ type: Datatype, count: Int, base: Int, bufferSize: Int, _ ranges: [(Int, Int)]) throws {
        try type.commit()
        let source = (0..<bufferSize).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let expected = expectedPacking(source, base: base, ranges)
        #expect(try type.packSize(count: count) == expected.count)
        var packed = [UInt8](repeating: 0, count: expected.count + 5)
        var position = 5
        try source.withUnsafeBytes { input in
            try packed.withUnsafeMutableBytes { output in
                try type.pack(input.baseAddress! + base, count: count, into: output, position: &position)
            }
        }
        #expect(position == expected.count + 5)
        #expect(Array(packed[5...]) == expected)

        var unpacked = [UInt8](repeating: 0, count: bufferSize)
        position = 5
        try packed.withUnsafeBytes { input in
            try unpacked.withUnsafeMutableBytes { output in
                try type.unpack(from: input, position: &position, into: output.baseAddress! + base, count: count)
            }
        }
        var written = [Bool](repeating: false, count: bufferSize)
        for (offset, length) in ranges { for byte in (base + offset)..<(base + offset + length) { written[byte] = true } }
        for byte in 0..<bufferSize {
            #expect(unpacked[byte] == (written[byte] ? source[byte] : 0), "byte \(byte) of \(type)")
        }

        // A cursor anywhere: two partial gathers make the whole.
        for cut in Set([0, 1, 3, expected.count / 3, expected.count / 2, expected.count - 1, expected.count].filter { (0...expected.count).contains($0) }) {
            var pieces = [UInt8](repeating: 0, count: expected.count)
            source.withUnsafeBytes { input in
                pieces.withUnsafeMutableBytes { output in
                    type.gather(from: input.baseAddress! + base, count: count, packedFrom: 0, length: cut, into: output.baseAddress!)
                    type.gather(from: input.baseAddress! + base, count: count, packedFrom: cut, length: expected.count - cut, into: output.baseAddress! + cut)
                }
            }
            #expect(pieces == expected, "cut at \(cut)")
        }
    }

    @Test("a vector of structures with gaps: size, extent, and every byte of a round trip")
    func vectorOfStructures() throws {
        // struct { int32 a; /* 4 B gap */ double b; }: 12 bytes of data, extent 16.
        let pair = try Datatype.structure(blockLengths: [1, 1], byteDisplacements: [0, 8], types: [.int32, .double])
        #expect(pair.size == 12 && pair.extent == 16 && pair.lowerBound == 0)
        let vector = try Datatype.vector(count: 3, blockLength: 2, stride: 3, of: pair)
        #expect(vector.size == 72)
        #expect(vector.extent == (2 * 3 + 2) * 16)
        var ranges: [(Int, Int)] = []
        for block in 0..<3 {
            for element in 0..<2 {
                let at = (block * 3 + element) * 16
                ranges += [(at, 4), (at + 8, 8)]
            }
        }
        try checkRoundTrip(vector, count: 1, base: 0, bufferSize: 160, ranges)
        // Two of them: the second starts one extent (128 bytes) on.
        try checkRoundTrip(vector, count: 2, base: 0, bufferSize: 300, ranges + ranges.map { ($0.0 + 128, $0.1) })
        #expect(vector.basicElementCount == 12)
        #expect(vector.basicElements(inPackedBytes: 72 + 12 + 4) == 12 + 3)
        #expect(vector.basicElements(inPackedBytes: 2) == nil)
    }

    @Test("a subarray of a 3-D array, in C and Fortran order")
    func subarray() throws {
        let sizes = [4, 5, 6], subsizes = [2, 3, 4], starts = [1, 1, 2]
        let rowMajor = try Datatype.subarray(sizes: sizes, subsizes: subsizes, starts: starts, order: .rowMajor, of: .double)
        #expect(rowMajor.size == 2 * 3 * 4 * 8 && rowMajor.extent == 4 * 5 * 6 * 8 && rowMajor.lowerBound == 0)
        var ranges: [(Int, Int)] = []
        for i in 0..<2 {
            for j in 0..<3 {
                for k in 0..<4 { ranges.append(((((i + 1) * 5 + (j + 1)) * 6 + (k + 2)) * 8, 8)) }
            }
        }
        try checkRoundTrip(rowMajor, count: 1, base: 0, bufferSize: 4 * 5 * 6 * 8, ranges)
        #expect(rowMajor.trueLowerBound == ((1 * 5 + 1) * 6 + 2) * 8)

        let columnMajor = try Datatype.subarray(sizes: sizes, subsizes: subsizes, starts: starts, order: .columnMajor, of: .double)
        ranges = []
        for k in 0..<4 {
            for j in 0..<3 {
                for i in 0..<2 { ranges.append(((((k + 2) * 5 + (j + 1)) * 4 + (i + 1)) * 8, 8)) }
            }
        }
        try checkRoundTrip(columnMajor, count: 1, base: 0, bufferSize: 4 * 5 * 6 * 8, ranges)
    }

    @Test("a resized type with a negative lower bound: elements step by its extent around the address")
    func resizedNegativeLowerBound() throws {
        // One int64 8 bytes before the address and one 8 bytes after it.
        let twoSided = try Datatype.hindexed(blockLengths: [1, 1], byteDisplacements: [-8, 8], of: .int64)
        #expect(twoSided.lowerBound == -8 && twoSided.extent == 24 && twoSided.trueLowerBound == -8 && twoSided.trueExtent == 24)
        let resized = try twoSided.resized(lowerBound: -16, extent: 40)
        #expect(resized.lowerBound == -16 && resized.extent == 40 && resized.size == 16)
        #expect(resized.trueLowerBound == -8 && resized.trueExtent == 24)
        let three = try Datatype.contiguous(3, of: resized)
        #expect(three.lowerBound == -16 && three.extent == 120 && three.trueLowerBound == -8 && three.trueExtent == 80 + 24)
        var ranges: [(Int, Int)] = []
        for element in 0..<3 { ranges += [(element * 40 - 8, 8), (element * 40 + 8, 8)] }
        try checkRoundTrip(three, count: 1, base: 16, bufferSize: 160, ranges)
        // Two of `resized` directly: the same bytes.
        try checkRoundTrip(resized, count: 3, base: 16, bufferSize: 160, ranges)
    }

    @Test("indexed, indexed-block, hindexed-block, hvector, dup: sizes, bounds and bytes")
    func otherConstructors() throws {
        let indexed = try Datatype.indexed(blockLengths: [2, 0, 1], displacements: [5, 100, 1], of: .int32)
        #expect(indexed.size == 12 && indexed.lowerBound == 4 && indexed.upperBound == 28)
        try checkRoundTrip(indexed, count: 1, base: 0, bufferSize: 64, [(20, 8), (4, 4)])
        let block = try Datatype.indexedBlock(blockLength: 2, displacements: [3, 0], of: .int16)
        try checkRoundTrip(block, count: 1, base: 0, bufferSize: 32, [(6, 4), (0, 4)])
        let hblock = try Datatype.hindexedBlock(blockLength: 1, byteDisplacements: [9, 1], of: .uint8)
        try checkRoundTrip(hblock, count: 1, base: 0, bufferSize: 16, [(9, 1), (1, 1)])
        let hvector = try Datatype.hvector(count: 3, blockLength: 1, strideBytes: -12, of: .float)
        #expect(hvector.lowerBound == -24 && hvector.extent == 28)
        try checkRoundTrip(hvector, count: 1, base: 24, bufferSize: 40, [(0, 4), (-12, 4), (-24, 4)])
        let copy = try hvector.duplicate()
        #expect(copy.isCommitted && copy.size == hvector.size && copy.extent == hvector.extent)
        let contiguous = try Datatype.contiguous(1000, of: .double)
        #expect(contiguous.contiguousRange(count: 5) == 0)
        #expect(try Datatype.vector(count: 4, blockLength: 2, stride: 2, of: .int32).contiguousRange(count: 3) == 0)
    }

    @Test("predefined pairs and structure padding follow C's layout")
    func pairs() {
        #expect(Datatype.doubleInt.size == 12 && Datatype.doubleInt.extent == 16)
        #expect(Datatype.shortInt.size == 6 && Datatype.shortInt.extent == 8)
        #expect(Datatype.longDoubleInt.size == 20 && Datatype.longDoubleInt.extent == 32)
        #expect(Datatype.twoInt.size == 8 && Datatype.twoInt.extent == 8)
        #expect(Datatype.floatInt.basicElementCount == 2)
        #expect(Datatype.basic(.longDoubleComplex).size == 32)
    }

    @Test("bad input: uncommitted, freed, predefined free, overflowing extents, negative counts, a subarray outside its array")
    func badInput() throws {
        let vector = try Datatype.vector(count: 2, blockLength: 1, stride: 2, of: .int32)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { output.deallocate() }
        var position = 0
        func kind(_ body: () throws(MPIError) -> Void) -> MPIError? {
            do { try body() } catch { return error }
            return nil
        }
        let uncommitted = kind { () throws(MPIError) in
            try vector.pack(output.baseAddress!, count: 1, into: output, position: &position)
        }
        #expect(uncommitted?.kind == .invalidDatatype && uncommitted?.message.contains("not committed") == true, "\(String(describing: uncommitted))")
        try vector.commit()
        try vector.free()
        let freed = kind { () throws(MPIError) in
            try vector.pack(output.baseAddress!, count: 1, into: output, position: &position)
        }
        #expect(freed?.kind == .invalidDatatype && freed?.message.contains("freed") == true)
        #expect(kind { () throws(MPIError) in try vector.free() }?.message.contains("freed already") == true)
        #expect(kind { () throws(MPIError) in _ = try Datatype.contiguous(2, of: vector) }?.kind == .invalidDatatype)
        #expect(kind { () throws(MPIError) in try Datatype.int32.free() }?.message.contains("predefined") == true)
        let huge = kind { () throws(MPIError) in _ = try Datatype.vector(count: Int.max / 4, blockLength: 1, stride: 8, of: .double) }
        #expect(huge?.kind == .invalidDatatype && huge?.message.contains("does not fit") == true, "\(String(describing: huge))")
        let sized = kind { () throws(MPIError) in _ = try Datatype.contiguous(Int.max / 2, of: try Datatype.double.resized(lowerBound: 0, extent: 1)) }
        #expect(sized?.kind == .invalidDatatype, "\(String(describing: sized))")
        #expect(kind { () throws(MPIError) in _ = try Datatype.contiguous(-1, of: .int32) }?.kind == .invalidArgument)
        let outside = kind { () throws(MPIError) in _ = try Datatype.subarray(sizes: [4], subsizes: [3], starts: [2], of: .int32) }
        #expect(outside?.message.contains("must lie inside the array") == true)
        let short = kind { () throws(MPIError) in
            var at = 60
            try Datatype.int64.pack(output.baseAddress!, count: 1, into: output, position: &at)
        }
        #expect(short?.kind == .truncated)
    }
}
