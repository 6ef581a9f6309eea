/// Building datatypes from others (MPI_Type_contiguous, vector, indexed,
/// create_struct, create_subarray, create_resized, dup). Each worked out as
/// a layout and bounds; arguments are checked, and an extent that would
/// overflow is refused. The new type is not committed.
extension Datatype {
    /// `count` elements of `type` back to back.
    public static func contiguous(_ count: Int, of type: Datatype) throws(MPIError) -> Datatype {
        try check(count: count, "a contiguous type")
        try type.checkNotFreed(in: "building a contiguous type")
        let what = "contiguous(\(count) × \(type))"
        let bounds = try type.bounds.repeated(count, stride: type.extent, what)
        return Datatype(layout: try type.layout.repeated(count, stride: type.extent), bounds: bounds, construction: .contiguous(count: count, of: type))
    }

    /// `count` blocks of `blockLength` elements, starting `stride` elements apart.
    public static func vector(count: Int, blockLength: Int, stride: Int, of type: Datatype) throws(MPIError) -> Datatype {
        try check(count: count, "a vector type")
        let (strideBytes, overflow) = stride.multipliedReportingOverflow(by: type.extent)
        guard !overflow else { throw TypeBounds.overflow("vector(\(count) × \(blockLength) of \(type), stride \(stride))") }
        return try strided(count: count, blockLength: blockLength, strideBytes: strideBytes, of: type,
                           construction: .vector(count: count, blockLength: blockLength, stride: stride, of: type))
    }

    /// `count` blocks of `blockLength` elements, starting `strideBytes` bytes apart.
    public static func hvector(count: Int, blockLength: Int, strideBytes: Int, of type: Datatype) throws(MPIError) -> Datatype {
        try check(count: count, "an hvector type")
        return try strided(count: count, blockLength: blockLength, strideBytes: strideBytes, of: type,
                           construction: .hvector(count: count, blockLength: blockLength, strideBytes: strideBytes, of: type))
    }

    private static func strided(count: Int, blockLength: Int, strideBytes: Int, of type: Datatype, construction: Construction) throws(MPIError) -> Datatype {
        try check(count: blockLength, "a block length")
        try type.checkNotFreed(in: "building a vector type")
        let block = try placed(blockLength, of: type, at: 0, what: "a vector block")
        let what = "a vector of \(count) blocks \(strideBytes) B apart"
        let bounds = try block.bounds.repeated(count, stride: strideBytes, what)
        return Datatype(layout: try block.layout.repeated(count, stride: strideBytes), bounds: bounds, construction: construction)
    }

    /// Blocks of `blockLengths[i]` elements at `displacements[i]` elements.
    public static func indexed(blockLengths: [Int], displacements: [Int], of type: Datatype) throws(MPIError) -> Datatype {
        let bytes = try scaled(displacements, by: type.extent, "indexed")
        return try blocks(blockLengths, bytes, of: type, "an indexed type",
                          construction: .indexed(blockLengths: blockLengths, displacements: displacements, of: type))
    }

    /// Blocks of `blockLengths[i]` elements at `byteDisplacements[i]` bytes.
    public static func hindexed(blockLengths: [Int], byteDisplacements: [Int], of type: Datatype) throws(MPIError) -> Datatype {
        try blocks(blockLengths, byteDisplacements, of: type, "an hindexed type",
                   construction: .hindexed(blockLengths: blockLengths, byteDisplacements: byteDisplacements, of: type))
    }

    /// Blocks of `blockLength` elements at `displacements[i]` elements.
    public static func indexedBlock(blockLength: Int, displacements: [Int], of type: Datatype) throws(MPIError) -> Datatype {
        let bytes = try scaled(displacements, by: type.extent, "indexed-block")
        return try blocks(Array(repeating: blockLength, count: displacements.count), bytes, of: type, "an indexed-block type",
                          construction: .indexedBlock(blockLength: blockLength, displacements: displacements, of: type))
    }

    /// Blocks of `blockLength` elements at `byteDisplacements[i]` bytes.
    public static func hindexedBlock(blockLength: Int, byteDisplacements: [Int], of type: Datatype) throws(MPIError) -> Datatype {
        try blocks(Array(repeating: blockLength, count: byteDisplacements.count), byteDisplacements, of: type, "an hindexed-block type",
                   construction: .hindexedBlock(blockLength: blockLength, byteDisplacements: byteDisplacements, of: type))
    }

    private static func blocks(
        _ lengths: [Int], _ displacements: [Int], of type: Datatype, _ what: String, construction: Construction
    ) throws(MPIError) -> Datatype {
        guard lengths.count == displacements.count else {
            throw MPIError(.invalidArgument, "\(what) with \(lengths.count) block lengths and \(displacements.count) displacements")
        }
        try type.checkNotFreed(in: "building \(what)")
        var layouts: [TypeLayout] = []
        var bounds: [TypeBounds] = []
        layouts.reserveCapacity(lengths.count)
        bounds.reserveCapacity(lengths.count)
        for (length, displacement) in zip(lengths, displacements) {
            try check(count: length, "a block length of \(what)")
            let block = try placed(length, of: type, at: displacement, what: what)
            layouts.append(block.layout)
            bounds.append(block.bounds)
        }
        return Datatype(layout: try .sequence(layouts), bounds: .union(bounds), construction: construction)
    }

    /// Blocks of `blockLengths[i]` elements of `types[i]` at
    /// `byteDisplacements[i]` bytes (MPI_Type_create_struct). The extent
    /// is padded to the largest alignment inside, as C pads a structure.
    public static func structure(blockLengths: [Int], byteDisplacements: [Int], types: [Datatype]) throws(MPIError) -> Datatype {
        guard blockLengths.count == byteDisplacements.count, blockLengths.count == types.count else {
            throw MPIError(.invalidArgument,
                           "a struct type with \(blockLengths.count) block lengths, \(byteDisplacements.count) displacements and \(types.count) types")
        }
        var layouts: [TypeLayout] = []
        var bounds: [TypeBounds] = []
        for index in types.indices {
            try check(count: blockLengths[index], "a block length of a struct type")
            try types[index].checkNotFreed(in: "building a struct type")
            let block = try placed(blockLengths[index], of: types[index], at: byteDisplacements[index], what: "a struct type")
            layouts.append(block.layout)
            bounds.append(block.bounds)
        }
        return Datatype(
            layout: try .sequence(layouts), bounds: try TypeBounds.union(bounds).paddedToAlignment("a struct type"),
            construction: .structure(blockLengths: blockLengths, byteDisplacements: byteDisplacements, types: types))
    }

    /// The part `starts ..< starts + subsizes` of an array of `sizes`
    /// elements of `type` (MPI_Type_create_subarray); its extent is the
    /// whole array's, so consecutive elements are consecutive arrays.
    public static func subarray(sizes: [Int], subsizes: [Int], starts: [Int], order: ArrayOrder = .rowMajor, of type: Datatype) throws(MPIError) -> Datatype {
        let construction = Construction.subarray(sizes: sizes, subsizes: subsizes, starts: starts, order: order, of: type)
        guard !sizes.isEmpty, sizes.count == subsizes.count, sizes.count == starts.count else {
            throw MPIError(.invalidArgument, "a subarray type with \(sizes.count) sizes, \(subsizes.count) subsizes and \(starts.count) starts (at least one dimension)")
        }
        try type.checkNotFreed(in: "building a subarray type")
        for dimension in sizes.indices {
            let size = sizes[dimension], subsize = subsizes[dimension], start = starts[dimension]
            guard size > 0, subsize >= 0, subsize <= size, start >= 0, start <= size - subsize else {
                throw MPIError(.invalidArgument,
                               "a subarray of \(subsize) from \(start) in dimension \(dimension) of size \(size): it must lie inside the array")
            }
        }
        // From the fastest-varying dimension outwards.
        let dimensions: [Int] = order == .rowMajor ? Array(sizes.indices.reversed()) : Array(sizes.indices)
        var stride = type.extent
        var layout = type.layout
        var bounds = type.bounds
        let what = "a subarray of \(sizes)"
        for dimension in dimensions {
            let offset = try product(starts[dimension], stride, what)
            bounds = try bounds.repeated(subsizes[dimension], stride: stride, what).shifted(by: offset, what)
            layout = try layout.repeated(subsizes[dimension], stride: stride).shifted(by: offset)
            stride = try product(stride, sizes[dimension], what)
        }
        // Bounds: the whole array, from the first element's lower bound.
        var whole = bounds
        whole.lower = type.lowerBound
        whole.upper = try sum(type.lowerBound, stride, what)
        whole.placesAny = true
        whole.explicit = true
        return Datatype(layout: layout, bounds: whole, construction: construction)
    }

    /// This type with the bounds set to `lowerBound` and `lowerBound + extent`
    /// (MPI_Type_create_resized): the bytes stay where they are, the
    /// distance between consecutive elements becomes `extent`.
    public func resized(lowerBound: Int, extent: Int) throws(MPIError) -> Datatype {
        try checkNotFreed(in: "building a resized type")
        var bounds = self.bounds
        bounds.lower = lowerBound
        bounds.upper = try Self.sum(lowerBound, extent, "resized(\(self))")
        bounds.placesAny = true
        bounds.explicit = true
        return Datatype(layout: layout, bounds: bounds, construction: .resized(lowerBound: lowerBound, extent: extent, of: self))
    }

    /// The same type, as a new one to commit and free on its own (MPI_Type_dup;
    /// committed if this one is).
    public func duplicate() throws(MPIError) -> Datatype {
        try checkNotFreed(in: "duplicating a type")
        let copy = Datatype(layout: layout, bounds: bounds, construction: .duplicate(self))
        if isCommitted { try copy.commit() }
        return copy
    }

    // MARK: - Helpers

    /// `count` elements of `type` at byte `displacement`: one block.
    private static func placed(_ count: Int, of type: Datatype, at displacement: Int, what: String) throws(MPIError) -> (layout: TypeLayout, bounds: TypeBounds) {
        let bounds = try type.bounds.repeated(count, stride: type.extent, what).shifted(by: displacement, what)
        let layout = try type.layout.repeated(count, stride: type.extent).shifted(by: displacement)
        return (layout, bounds)
    }

    private static func check(count: Int, _ what: String) throws(MPIError) {
        guard count >= 0 else { throw MPIError(.invalidArgument, "\(what) with count \(count): counts cannot be negative") }
    }

    private static func scaled(_ displacements: [Int], by extent: Int, _ what: String) throws(MPIError) -> [Int] {
        var bytes: [Int] = []
        bytes.reserveCapacity(displacements.count)
        for displacement in displacements { bytes.append(try product(displacement, extent, "an \(what) type")) }
        return bytes
    }

    private static func product(_ a: Int, _ b: Int, _ what: String) throws(MPIError) -> Int {
        let (result, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw TypeBounds.overflow(what) }
        return result
    }

    private static func sum(_ a: Int, _ b: Int, _ what: String) throws(MPIError) -> Int {
        let (result, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw TypeBounds.overflow(what) }
        return result
    }
}
