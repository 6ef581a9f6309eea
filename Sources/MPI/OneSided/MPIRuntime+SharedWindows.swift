import Glibc

/// Shared-memory windows (MPI_Win_allocate_shared, MPI_Win_shared_query):
/// the ranks of one host map one shared-memory object, each rank's part
/// after the previous rank's, so that each can load and store the others'
/// parts directly; puts, gets and atomics work on them as on any window
/// (each rank's part is registered as well).
extension MPIRuntime {
    /// Every rank's `bytes` bytes in one object the ranks of
    /// `communicator` map (they must all be on one host:
    /// `split(_:type: .sharedMemory, key:)` makes such a communicator).
    public func allocateSharedWindow(
        bytes: Int, displacementUnit: Int = 1, on communicator: Communicator? = nil
    ) throws(MPIError) -> (window: Window, base: UnsafeMutableRawPointer?) {
        let parent = communicator ?? world
        do throws(MPIError) {
            try checkOpen()
            guard bytes >= 0 else { throw MPIError(.invalidArgument, "a shared window of \(bytes) bytes") }
            guard displacementUnit > 0 else { throw MPIError(.invalidArgument, "a window with displacement unit \(displacementUnit) (it must be 1 or more)") }
            let facts = try allgather([Self.hostIdentity, bytes, displacementUnit, Int(getpid())], on: parent)
            if let elsewhere = facts.firstIndex(where: { $0[0] != facts[0][0] }) {
                throw MPIError(.invalidArgument, "a shared window on \(parent): rank \(elsewhere) is on another host than rank 0 (split the communicator by type .sharedMemory first)")
            }
            var offset = 0
            let parts = facts.map { values -> (offset: Int, size: Int, displacementUnit: Int) in
                defer { offset += values[1] }
                return (offset, values[1], values[2])
            }
            // Rank 0 creates the object and tells the others its number
            // (0: it could not); each maps it; then every rank says whether
            // it could, and rank 0 removes the name.
            var created: (nonce: Int, descriptor: Int32)?
            var failure: MPIError?
            if parent.rank == 0 {
                do throws(MPIError) { created = try SharedSegment.create(length: offset) } catch { failure = error }
            }
            let nonce = try allgather([created?.nonce ?? 0], on: parent)[0][0]
            guard nonce != 0 else {
                throw failure ?? MPIError(.invalidArgument, "a shared window on \(parent): rank 0 could not create its shared-memory object")
            }
            var segment: SharedSegment?
            do throws(MPIError) {
                let descriptor: Int32
                if let created { descriptor = created.descriptor } else { descriptor = try SharedSegment.open(creator: facts[0][3], nonce: nonce) }
                segment = try SharedSegment.map(descriptor, length: offset, parts: parts)
            } catch {
                failure = error
            }
            let mapped = try allgather([segment == nil ? 0 : 1], on: parent).map { $0[0] }
            if parent.rank == 0 { SharedSegment.unlink(creator: facts[0][3], nonce: nonce) }
            if let unmapped = mapped.firstIndex(of: 0) {
                segment?.unmap()
                throw failure ?? MPIError(.invalidArgument, "a shared window on \(parent): rank \(unmapped) could not map the shared-memory object")
            }
            guard let segment else { throw MPIError(.invalidState, "a shared window: mapped, but no segment") }
            let base = segment.base(of: parent.rank)
            do throws(MPIError) {
                let window = try makeWindow(base: base, bytes: bytes, displacementUnit: displacementUnit, flavor: .shared, on: parent, segment: segment)
                return (window, base)
            } catch {
                segment.unmap()
                throw error
            }
        } catch {
            return try raise(error)
        }
    }

    /// Where rank `rank`'s part of a shared window is in this process,
    /// its size and displacement unit (MPI_Win_shared_query); `nil`: the
    /// first part that is not empty (MPI_PROC_NULL).
    public func sharedQuery(_ window: Window, rank: Int?) throws(MPIError) -> (base: UnsafeMutableRawPointer?, size: Int, displacementUnit: Int) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard let segment = state.segment else { throw MPIError(.invalidWindow, "a shared query of \(window), which is not a shared-memory window") }
            let chosen = rank ?? segment.parts.firstIndex { $0.size > 0 } ?? 0
            guard segment.parts.indices.contains(chosen) else {
                throw MPIError(.invalidRank, "a shared query of rank \(chosen) of \(window), whose ranks are 0 to \(segment.parts.count - 1)")
            }
            let part = segment.parts[chosen]
            return (segment.base(of: chosen), part.size, part.displacementUnit)
        } catch {
            return try raise(error)
        }
    }
}
