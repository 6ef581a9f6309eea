import FabricRegistrationCache

/// Memory the library hands out already registered (MPI_Alloc_mem's idea):
/// transfers from it skip the registration cache entirely. It comes from
/// chunks of huge pages where the system has them
/// (`registeredMemoryPages` says which) and lives until `freeMemory` or
/// finalize, whichever comes first: finalize unmaps it.
extension MPIRuntime {
    /// `bytes` of registered memory (64-byte aligned; counted against the
    /// registration cap, docs/registration-cache.md).
    public func allocateMemory(_ bytes: Int) throws(MPIError) -> UnsafeMutableRawBufferPointer {
        do {
            return try transport.allocateMemory(bytes)
        } catch {
            return try raise(error)
        }
    }

    /// Gives back memory `allocateMemory` returned; any other buffer is
    /// refused with an error that names it.
    public func freeMemory(_ buffer: UnsafeMutableRawBufferPointer) throws(MPIError) {
        guard let address = buffer.baseAddress else {
            return try raise(MPIError(.invalidArgument, "freeMemory of an empty buffer"))
        }
        do {
            try transport.freeMemory(address)
        } catch {
            return try raise(error)
        }
    }

    /// What backs `allocateMemory`'s memory: explicit or transparent huge
    /// pages, or ordinary pages.
    public var registeredMemoryPages: String { transport.registeredMemoryPages() }
}
