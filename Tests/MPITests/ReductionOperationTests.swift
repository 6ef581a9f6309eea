import Testing

@testable import MPI

/// The built-in reductions on the types MPI allows, element by element,
/// and the refusal of the others.
struct ReductionOperationTests {
    private func reduce<T: BitwiseCopyable>(_ operation: ReductionOperation, _ input: [T], _ output: [T], _ datatype: Datatype) throws -> [T] {
        try operation.check(datatype)
        // Elements of the datatype the arrays hold (a complex number is two of T).
        let count = input.count * MemoryLayout<T>.stride / datatype.extent
        var result = output
        input.withUnsafeBytes { source in
            result.withUnsafeMutableBytes { operation.apply(source.baseAddress!, to: $0.baseAddress!, count: count, datatype: datatype) }
        }
        return result
    }

    @Test("integers: sum wraps, product, min, max, logical and bitwise operations")
    func integers() throws {
        #expect(try reduce(.sum, [Int32.max, 5], [1, -7], .int32) == [Int32.min, -2])
        #expect(try reduce(.product, [UInt8(16), 3], [16, 5], .uint8) == [0, 15])
        #expect(try reduce(.minimum, [Int64(-3), 9], [2, 10], .int64) == [-3, 9])
        #expect(try reduce(.maximum, [UInt16(3), 9], [2, 10], .uint16) == [3, 10])
        #expect(try reduce(.logicalXor, [Int32(0), 4, 4], [0, 0, 9], .int32) == [0, 1, 0])
        #expect(try reduce(.bitwiseAnd, [UInt8(0b1100)], [0b1010], .byte) == [0b1000])
        #expect(try reduce(.bitwiseXor, [UInt64(0xff00)], [0x0ff0], .uint64) == [0xf0f0])
        #expect(try reduce(.logicalOr, [false, true, false], [false, false, true], .bool) == [false, true, true])
    }

    @Test("floating point and complex numbers")
    func floating() throws {
        #expect(try reduce(.sum, [1.5, -2.0], [2.25, 2.0], .double) == [3.75, 0.0])
        #expect(try reduce(.minimum, [Float(1.5), 3], [2.25, -1], .float) == [1.5, -1])
        // (1 + 2i)(3 + 4i) = -5 + 10i
        #expect(try reduce(.product, [1.0, 2.0], [3.0, 4.0], .basic(.doubleComplex)) == [-5.0, 10.0])
        #expect(try reduce(.sum, [Float(1), 2], [3, 4], .basic(.floatComplex)) == [4, 6])
    }

    @Test("MINLOC and MAXLOC take the extreme value and the lowest index on ties")
    func locations() throws {
        struct Pair: Equatable { var value: Double; var index: Int32 }
        let a = [Pair(value: 1, index: 4), Pair(value: 5, index: 2), Pair(value: 3, index: 7)]
        let b = [Pair(value: 2, index: 1), Pair(value: 5, index: 1), Pair(value: 3, index: 9)]
        #expect(try reduce(.minimumLocation, a, b, .doubleInt) == [Pair(value: 1, index: 4), Pair(value: 5, index: 1), Pair(value: 3, index: 7)])
        #expect(try reduce(.maximumLocation, a, b, .doubleInt) == [Pair(value: 2, index: 1), Pair(value: 5, index: 1), Pair(value: 3, index: 7)])
    }

    @Test("an operation on a type MPI does not define it for is refused by name")
    func refusals() throws {
        for (operation, datatype) in [(ReductionOperation.sum, Datatype.bool), (.bitwiseOr, .double), (.minimum, .basic(.doubleComplex)),
                                      (.sum, .char), (.minimumLocation, .int32), (.sum, .doubleInt), (.sum, try Datatype.contiguous(2, of: .int32))] {
            #expect(throws: MPIError.self) { try operation.check(datatype) }
        }
        do {
            try ReductionOperation.logicalAnd.check(.float)
            Issue.record("a logical and of floats was accepted")
        } catch {
            #expect(error.message == "MPI_LAND is not defined on MPI_FLOAT")
        }
    }
}
