import Glibc

/// The memory of a shared-memory window (MPI_Win_allocate_shared): one
/// POSIX shared-memory object that every rank of the window maps, each
/// rank's part laid after the previous rank's (contiguous, as MPI's
/// default is). The system calls of shared windows live here.
struct SharedSegment: @unchecked Sendable {  // `mapping` is this process's view; the segment owns it until `unmap`
    /// This process's mapping of the whole object.
    let mapping: UnsafeMutableRawPointer?
    let length: Int
    /// Each rank's part: where it starts in the object, its size, its
    /// displacement unit.
    let parts: [(offset: Int, size: Int, displacementUnit: Int)]

    /// The name both sides use: the creating process and a number it chose.
    static func name(creator: Int, nonce: Int) -> String { "/swiftfabric-window-\(creator)-\(nonce)" }

    /// Creates the object (the first rank): a name no other object has.
    static func create(length: Int) throws(MPIError) -> (nonce: Int, descriptor: Int32) {
        for _ in 0..<16 {
            let nonce = Int.random(in: 1...Int(Int32.max))
            let descriptor = shm_open(name(creator: Int(getpid()), nonce: nonce), O_RDWR | O_CREAT | O_EXCL, 0o600)
            if descriptor >= 0 {
                guard ftruncate(descriptor, off_t(max(length, 1))) == 0 else {
                    let reason = String(cString: strerror(errno))
                    close(descriptor)
                    shm_unlink(name(creator: Int(getpid()), nonce: nonce))
                    throw MPIError(.invalidArgument, "a shared window of \(length) bytes: the shared-memory object could not grow (\(reason))")
                }
                return (nonce, descriptor)
            }
            guard errno == EEXIST else { break }
        }
        throw MPIError(.invalidArgument, "a shared window: no shared-memory object could be created in /dev/shm (\(String(cString: strerror(errno))))")
    }

    /// Opens the object another rank created.
    static func open(creator: Int, nonce: Int) throws(MPIError) -> Int32 {
        let descriptor = shm_open(name(creator: creator, nonce: nonce), O_RDWR, 0)
        guard descriptor >= 0 else {
            throw MPIError(.invalidArgument, "a shared window: the shared-memory object of process \(creator) could not be opened (\(String(cString: strerror(errno)))); are the ranks in one container or host?")
        }
        return descriptor
    }

    /// Maps the object (and closes the descriptor: the mapping keeps it).
    static func map(_ descriptor: Int32, length: Int, parts: [(offset: Int, size: Int, displacementUnit: Int)]) throws(MPIError) -> SharedSegment {
        defer { close(descriptor) }
        let mapped = mmap(nil, max(length, 1), PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw MPIError(.invalidArgument, "a shared window of \(length) bytes could not be mapped (\(String(cString: strerror(errno))))")
        }
        return SharedSegment(mapping: mapped, length: length, parts: parts)
    }

    /// Removes the name (every rank has mapped it; the memory stays until unmapped).
    static func unlink(creator: Int, nonce: Int) {
        shm_unlink(name(creator: creator, nonce: nonce))
    }

    func base(of rank: Int) -> UnsafeMutableRawPointer? {
        parts[rank].size == 0 ? nil : mapping.map { $0 + parts[rank].offset }
    }

    func unmap() {
        if let mapping { munmap(mapping, max(length, 1)) }
    }
}
