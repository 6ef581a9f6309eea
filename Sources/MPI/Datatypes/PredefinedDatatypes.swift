/// The predefined datatypes: one per basic type, and MPI's pairs of a
/// value and an int (for the min-loc and max-loc reductions), laid out as
/// C lays out the structure of the two.
extension Datatype {
    /// The predefined type of `basic`.
    public static func basic(_ basic: BasicType) -> Datatype { basicTypes[Int(basic.rawValue)] }

    private static let basicTypes: [Datatype] = BasicType.allCases.map { basic in
        Datatype(layout: .run(basic), bounds: .of(basic), construction: .basic(basic), isPredefined: true)
    }

    public static var byte: Datatype { basic(.byte) }
    public static var packed: Datatype { basic(.packed) }
    public static var char: Datatype { basic(.char) }
    public static var bool: Datatype { basic(.bool) }
    public static var int: Datatype { basic(.int) }
    public static var long: Datatype { basic(.long) }
    public static var int8: Datatype { basic(.int8) }
    public static var int16: Datatype { basic(.int16) }
    public static var int32: Datatype { basic(.int32) }
    public static var int64: Datatype { basic(.int64) }
    public static var uint8: Datatype { basic(.uint8) }
    public static var uint16: Datatype { basic(.uint16) }
    public static var uint32: Datatype { basic(.uint32) }
    public static var uint64: Datatype { basic(.uint64) }
    public static var float: Datatype { basic(.float) }
    public static var double: Datatype { basic(.double) }

    /// MPI_FLOAT_INT: a float and an int.
    public static let floatInt = pair("MPI_FLOAT_INT", .float)
    /// MPI_DOUBLE_INT: a double and an int (16 bytes apart, 12 of data).
    public static let doubleInt = pair("MPI_DOUBLE_INT", .double)
    /// MPI_LONG_INT: a long and an int.
    public static let longInt = pair("MPI_LONG_INT", .long)
    /// MPI_2INT: two ints.
    public static let twoInt = pair("MPI_2INT", .int)
    /// MPI_SHORT_INT: a short and an int (the int aligned at 4).
    public static let shortInt = pair("MPI_SHORT_INT", .short)
    /// MPI_LONG_DOUBLE_INT: a long double and an int.
    public static let longDoubleInt = pair("MPI_LONG_DOUBLE_INT", .longDouble)

    private static func pair(_ name: String, _ value: BasicType) -> Datatype {
        // The int follows the value at the int's alignment; the whole is
        // padded to the larger alignment, as `struct { value; int; }`.
        let intOffset = (value.size + 3) / 4 * 4
        let bounds = try! TypeBounds.union([.of(value), TypeBounds.of(.int).shifted(by: intOffset, name)]).paddedToAlignment(name)
        let layout = try! TypeLayout.sequence([.run(value), .run(.int, at: intOffset)])
        return Datatype(layout: layout, bounds: bounds, construction: .pair(name, value), isPredefined: true)
    }
}

/// A Swift type that has an MPI datatype of the same layout.
public protocol MPIValue: BitwiseCopyable {
    static var datatype: Datatype { get }
}

extension Int8: MPIValue { public static var datatype: Datatype { .int8 } }
extension Int16: MPIValue { public static var datatype: Datatype { .int16 } }
extension Int32: MPIValue { public static var datatype: Datatype { .int32 } }
extension Int64: MPIValue { public static var datatype: Datatype { .int64 } }
extension UInt8: MPIValue { public static var datatype: Datatype { .uint8 } }
extension UInt16: MPIValue { public static var datatype: Datatype { .uint16 } }
extension UInt32: MPIValue { public static var datatype: Datatype { .uint32 } }
extension UInt64: MPIValue { public static var datatype: Datatype { .uint64 } }
/// Swift's Int is C's long on the platforms this project runs on.
extension Int: MPIValue { public static var datatype: Datatype { .long } }
extension UInt: MPIValue { public static var datatype: Datatype { .basic(.unsignedLong) } }
extension Float: MPIValue { public static var datatype: Datatype { .float } }
extension Double: MPIValue { public static var datatype: Datatype { .double } }
extension Bool: MPIValue { public static var datatype: Datatype { .bool } }
