/// The element types every datatype is built from (MPI's predefined
/// types, without the pair types, which are structures of two of these).
/// Sizes and alignments are those of C on the platforms this project runs
/// on (LP64 Linux: x86-64 and aarch64), since C programs will name them.
public enum BasicType: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case char, signedChar, unsignedChar, wideChar
    case short, unsignedShort, int, unsignedInt, long, unsignedLong, longLong, unsignedLongLong
    case int8, int16, int32, int64, uint8, uint16, uint32, uint64
    case float, double, longDouble
    case floatComplex, doubleComplex, longDoubleComplex
    /// C's `bool`.
    case bool
    /// Addresses, file offsets and large counts (MPI_Aint, MPI_Offset, MPI_Count).
    case address, offset, count
    /// Raw bytes, and the bytes of a packed buffer.
    case byte, packed

    /// What reductions may do with an element of this type.
    public enum Category: Sendable {
        case character, signedInteger, unsignedInteger, floatingPoint, complex, logical, byte
    }

    public var size: Int {
        switch self {
        case .char, .signedChar, .unsignedChar, .int8, .uint8, .bool, .byte, .packed: return 1
        case .short, .unsignedShort, .int16, .uint16: return 2
        case .wideChar, .int, .unsignedInt, .int32, .uint32, .float: return 4
        case .long, .unsignedLong, .longLong, .unsignedLongLong, .int64, .uint64, .double, .floatComplex, .address, .offset, .count: return 8
        // x87 extended precision, stored in 16 bytes.
        case .longDouble, .doubleComplex: return 16
        case .longDoubleComplex: return 32
        }
    }

    /// Where C places it in a structure.
    public var alignment: Int {
        switch self {
        case .floatComplex: return 4
        case .doubleComplex: return 8
        case .longDoubleComplex: return 16
        default: return size
        }
    }

    public var category: Category {
        switch self {
        case .char, .signedChar, .wideChar: return .character
        case .short, .int, .long, .longLong, .int8, .int16, .int32, .int64, .address, .offset, .count: return .signedInteger
        case .unsignedChar, .unsignedShort, .unsignedInt, .unsignedLong, .unsignedLongLong, .uint8, .uint16, .uint32, .uint64: return .unsignedInteger
        case .float, .double, .longDouble: return .floatingPoint
        case .floatComplex, .doubleComplex, .longDoubleComplex: return .complex
        case .bool: return .logical
        case .byte, .packed: return .byte
        }
    }

    /// The name MPI gives it.
    public var description: String {
        switch self {
        case .char: return "MPI_CHAR"
        case .signedChar: return "MPI_SIGNED_CHAR"
        case .unsignedChar: return "MPI_UNSIGNED_CHAR"
        case .wideChar: return "MPI_WCHAR"
        case .short: return "MPI_SHORT"
        case .unsignedShort: return "MPI_UNSIGNED_SHORT"
        case .int: return "MPI_INT"
        case .unsignedInt: return "MPI_UNSIGNED"
        case .long: return "MPI_LONG"
        case .unsignedLong: return "MPI_UNSIGNED_LONG"
        case .longLong: return "MPI_LONG_LONG"
        case .unsignedLongLong: return "MPI_UNSIGNED_LONG_LONG"
        case .int8: return "MPI_INT8_T"
        case .int16: return "MPI_INT16_T"
        case .int32: return "MPI_INT32_T"
        case .int64: return "MPI_INT64_T"
        case .uint8: return "MPI_UINT8_T"
        case .uint16: return "MPI_UINT16_T"
        case .uint32: return "MPI_UINT32_T"
        case .uint64: return "MPI_UINT64_T"
        case .float: return "MPI_FLOAT"
        case .double: return "MPI_DOUBLE"
        case .longDouble: return "MPI_LONG_DOUBLE"
        case .floatComplex: return "MPI_C_FLOAT_COMPLEX"
        case .doubleComplex: return "MPI_C_DOUBLE_COMPLEX"
        case .longDoubleComplex: return "MPI_C_LONG_DOUBLE_COMPLEX"
        case .bool: return "MPI_C_BOOL"
        case .address: return "MPI_AINT"
        case .offset: return "MPI_OFFSET"
        case .count: return "MPI_COUNT"
        case .byte: return "MPI_BYTE"
        case .packed: return "MPI_PACKED"
        }
    }
}
