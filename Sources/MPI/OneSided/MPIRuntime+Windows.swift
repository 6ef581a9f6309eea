import FabricCore
import Glibc

/// Making and freeing windows (MPI_Win_create, MPI_Win_allocate,
/// MPI_Win_free). Every rank of the communicator takes part. Each rank
/// registers its window memory (a registration of the window's own, whose
/// keys are revoked when the window is freed) and a small control block
/// (its locks, `WindowControl`); the ranks then exchange where these are,
/// so that every later put, get and atomic goes straight to the target's
/// memory with no help from the target.
extension MPIRuntime {
    /// A window over `bytes` bytes at `base` on every rank (MPI_Win_create);
    /// a displacement counts `displacementUnit` bytes.
    public func createWindow(
        _ base: UnsafeMutableRawPointer?, bytes: Int, displacementUnit: Int = 1, on communicator: Communicator? = nil
    ) throws(MPIError) -> Window {
        do throws(MPIError) {
            guard bytes == 0 || base != nil else { throw MPIError(.invalidBuffer, "a window of \(bytes) bytes at a null address") }
            return try makeWindow(base: bytes == 0 ? nil : base, bytes: bytes, displacementUnit: displacementUnit, flavor: .created, on: communicator ?? world)
        } catch {
            return try raise(error)
        }
    }

    /// A window over `bytes` bytes the runtime allocates from its
    /// registered pool on every rank (MPI_Win_allocate); the memory is
    /// freed with the window.
    public func allocateWindow(
        bytes: Int, displacementUnit: Int = 1, on communicator: Communicator? = nil
    ) throws(MPIError) -> (window: Window, base: UnsafeMutableRawPointer?) {
        do throws(MPIError) {
            guard bytes >= 0 else { throw MPIError(.invalidArgument, "a window of \(bytes) bytes") }
            let memory = bytes == 0 ? nil : try transport.allocateMemory(bytes).baseAddress
            do throws(MPIError) {
                let window = try makeWindow(base: memory, bytes: bytes, displacementUnit: displacementUnit, flavor: .allocated, on: communicator ?? world)
                return (window, memory)
            } catch {
                if let memory { try? transport.freeMemory(memory) }
                throw error
            }
        } catch {
            return try raise(error)
        }
    }

    /// A window with no memory yet (MPI_Win_create_dynamic): each rank
    /// attaches memory to it with `attach` and detaches it with `detach`;
    /// a displacement is the target's address (`UInt(bitPattern:)` of the
    /// pointer, MPI_Get_address), and an access must lie within one
    /// attached range. Origins learn a target's ranges by reading its list
    /// (AttachmentTable), again after every synchronisation.
    public func createDynamicWindow(on communicator: Communicator? = nil) throws(MPIError) -> Window {
        do throws(MPIError) {
            return try makeWindow(base: nil, bytes: 0, displacementUnit: 1, flavor: .dynamic, on: communicator ?? world)
        } catch {
            return try raise(error)
        }
    }

    /// Makes `bytes` bytes at `base` reachable through a dynamic window
    /// (MPI_Win_attach): registered with a registration of their own.
    public func attach(_ base: UnsafeMutableRawPointer, bytes: Int, to window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard let table = state.attachments else { throw MPIError(.invalidWindow, "an attach to \(window), which is not dynamic") }
            guard bytes > 0 else { throw MPIError(.invalidArgument, "an attach of \(bytes) bytes") }
            let registration = try transport.registerWindowMemory(base, bytes)
            do throws(MPIError) {
                try table.attach(AttachedRange(address: registration.remote.address, length: bytes, key: registration.remote.key), registration)
            } catch {
                registration.deregister()
                throw error
            }
        } catch {
            try raise(error) as Void
        }
    }

    /// Ends what `attach` began at `base` (MPI_Win_detach): the range's
    /// key is revoked; an origin that still used it would get an error.
    public func detach(_ base: UnsafeMutableRawPointer, from window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            guard let table = state.attachments else { throw MPIError(.invalidWindow, "a detach from \(window), which is not dynamic") }
            try table.detach(at: UInt64(UInt(bitPattern: base))).deregister()
        } catch {
            try raise(error) as Void
        }
    }

    /// The window's base, size, displacement unit, flavor and model on this rank.
    public func attributes(of window: Window) throws(MPIError) -> WindowAttributes {
        do throws(MPIError) {
            return try windows.state(of: window).attributes
        } catch {
            return try raise(error)
        }
    }

    /// Ends the window on every rank (MPI_Win_free): this rank's operations
    /// complete, then every rank waits for all (no peer still accesses its
    /// memory), then the keys are revoked and allocated memory freed. A
    /// rank that holds a lock or has an epoch open is refused.
    public func free(_ window: Window) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            let open = state.epochs.withLock { epochs in
                !epochs.locks.isEmpty || epochs.lockAll || epochs.accessGroup != nil || epochs.exposureGroup != nil
            }
            guard !open else {
                throw MPIError(.windowSynchronization, "freeing \(window) with a lock held or a post/start epoch open on rank \(state.communicator.rank)")
            }
            try completeOperations(on: state, targets: nil)
            try barrier(state.communicator)
            windows.remove(window)
            for registration in state.registrations { registration.deregister() }
            for registration in state.attachments?.detachAll() ?? [] { registration.deregister() }
            Glibc.free(state.control)
            if state.flavor == .allocated, let base = state.base { try transport.freeMemory(base) }
            state.segment?.unmap()
            try self.free(state.communicator)
        } catch {
            try raise(error) as Void
        }
    }

    // MARK: - Making

    func makeWindow(
        base: UnsafeMutableRawPointer?, bytes: Int, displacementUnit: Int, flavor: WindowFlavor, on parent: Communicator,
        segment: SharedSegment? = nil
    ) throws(MPIError) -> Window {
        try checkOpen()
        guard bytes >= 0 else { throw MPIError(.invalidArgument, "a window of \(bytes) bytes") }
        guard displacementUnit > 0 else { throw MPIError(.invalidArgument, "a window with displacement unit \(displacementUnit) (it must be 1 or more)") }
        let communicator = try duplicate(parent)
        // Registration may fail on one rank (memory that cannot be
        // registered): every rank learns it in the exchange, and all
        // refuse the window together.
        var registrations: [WindowMemoryRegistration] = []
        var control: UnsafeMutableRawPointer?
        // A dynamic window's peers reach its attachment table where others
        // reach window memory.
        let attachments = flavor == .dynamic ? AttachmentTable() : nil
        let exposed = attachments.map { ($0.memory, AttachmentTable.bytes) } ?? (base, bytes)
        var failure: MPIError?
        do throws(MPIError) {
            var memory: UnsafeMutableRawPointer?
            guard posix_memalign(&memory, 64, WindowControl.bytes) == 0, let memory else {
                throw MPIError(.invalidArgument, "no memory for a window's control block")
            }
            memory.initializeMemory(as: UInt8.self, repeating: 0, count: WindowControl.bytes)
            control = memory
            registrations.append(try transport.registerWindowMemory(memory, WindowControl.bytes))
            if let exposedBase = exposed.0, exposed.1 > 0 { registrations.append(try transport.registerWindowMemory(exposedBase, exposed.1)) }
        } catch {
            failure = error
        }
        let data = registrations.count == 2 ? registrations[1].remote : RemoteMemory(address: 0, key: RemoteKey(rawValue: 0))
        let controlRemote = registrations.first?.remote ?? RemoteMemory(address: 0, key: RemoteKey(rawValue: 0))
        let mine = [failure == nil ? 1 : 0, Int(bitPattern: UInt(data.address)), exposed.1, displacementUnit, Int(data.key.rawValue),
                    Int(bitPattern: UInt(controlRemote.address)), Int(controlRemote.key.rawValue)]
        let all = try allgather(mine, on: communicator)
        if let refused = all.firstIndex(where: { $0[0] == 0 }) {
            for registration in registrations { registration.deregister() }
            if let control { Glibc.free(control) }
            try? free(communicator)
            throw failure ?? MPIError(.invalidArgument, "a window on \(parent): rank \(refused) could not register its memory")
        }
        let targets = all.enumerated().map { rank, values in
            WindowTarget(worldRank: communicator.worldRanks[rank],
                         remote: RemoteMemory(address: UInt64(UInt(bitPattern: values[1])), key: RemoteKey(rawValue: UInt32(truncatingIfNeeded: values[4]))),
                         size: values[2], displacementUnit: values[3],
                         control: RemoteMemory(address: UInt64(UInt(bitPattern: values[5])), key: RemoteKey(rawValue: UInt32(truncatingIfNeeded: values[6]))))
        }
        let window = windows.nextWindow()
        windows.add(WindowState(window: window, communicator: communicator, base: base, size: bytes, displacementUnit: displacementUnit,
                                flavor: flavor, targets: targets, control: control!, registrations: registrations, attachments: attachments,
                                segment: segment))
        return window
    }

    // MARK: - Completion

    /// Waits until every operation this rank posted on the window to
    /// `targets` (all when nil) has completed at the target.
    func completeOperations(on state: WindowState, targets: [Int]?) throws(MPIError) {
        var tickets: [Int] = []
        let staging = state.epochs.withLock { epochs in
            epochs.forgetAttachedRanges()
            for target in targets ?? Array(epochs.pending.indices) {
                tickets += epochs.pending[target]
                epochs.pending[target].removeAll(keepingCapacity: true)
            }
            // (Staged copies are freed only when every target is flushed.)
            guard targets == nil, !epochs.staging.isEmpty else { return [UInt]() }
            defer { epochs.staging.removeAll() }
            return epochs.staging
        }
        defer { for address in staging { Glibc.free(UnsafeMutableRawPointer(bitPattern: address)) } }
        try waitFor(&tickets)
    }

    /// The same for one target. Its ticket list is swapped out and its
    /// emptied storage given back, so that a flush after every operation
    /// allocates nothing.
    func completeOperations(on state: WindowState, target: Int) throws(MPIError) {
        var tickets: [Int] = []
        state.epochs.withLock { epochs in
            epochs.forgetAttachedRanges()
            swap(&tickets, &epochs.pending[target])
        }
        try waitFor(&tickets)
        state.epochs.withLock { epochs in
            if epochs.pending[target].isEmpty { swap(&tickets, &epochs.pending[target]) }
        }
    }

    /// Waits for one-sided tickets (the caller's own, blocking).
    func waitFor(_ tickets: inout [Int]) throws(MPIError) {
        guard !tickets.isEmpty else { return }
        try transport.wait { () throws(MPIError) -> Bool in try transport.collectOneSided(&tickets) }
    }
}
