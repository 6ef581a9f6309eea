/// An array's bytes lent to a body that throws MPIError. (The standard
/// library's `withUnsafeBytes` rethrows untyped errors; these keep the type.)
func withBytes<T: BitwiseCopyable, R>(of array: [T], _ body: (UnsafeRawBufferPointer) throws(MPIError) -> R) throws(MPIError) -> R {
    let result = array.withUnsafeBytes { buffer in Result { () throws(MPIError) -> R in try body(buffer) } }
    return try result.get()
}

func withMutableBytes<T: BitwiseCopyable, R>(of array: inout [T], _ body: (UnsafeMutableRawBufferPointer) throws(MPIError) -> R) throws(MPIError) -> R {
    let result = array.withUnsafeMutableBytes { buffer in Result { () throws(MPIError) -> R in try body(buffer) } }
    return try result.get()
}
