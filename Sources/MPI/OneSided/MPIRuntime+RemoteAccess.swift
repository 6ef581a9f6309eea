import FabricCore
import Glibc

/// Puts, gets and atomics (MPI_Put, MPI_Get, MPI_Accumulate,
/// MPI_Get_accumulate, MPI_Fetch_and_op, MPI_Compare_and_swap). Every
/// target range is checked here, at the origin, before anything is
/// posted: an access outside the target's window is this caller's error,
/// and the connection (with its point-to-point traffic) goes on. Puts,
/// gets and fabric atomics return once posted and complete at the next
/// flush, unlock or fence; the locked READ-modify-WRITE accumulates
/// (`AccumulateMechanism`) complete before they return.
extension MPIRuntime {
    /// Writes `count` elements at `origin` into `target`'s window at
    /// `displacement` (MPI_Put). The target's elements are `targetCount`
    /// of `targetDatatype` (the origin's by default); the origin's memory
    /// must stay as it is until the put completes (flush, unlock, fence).
    public func put(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, to target: Int, displacement: Int,
        targetCount: Int? = nil, targetDatatype: Datatype? = nil, on window: Window
    ) throws(MPIError) {
        do throws(MPIError) {
            var posted: [Int]? = nil
            try putOperation(origin, count: count, datatype: datatype, to: target, displacement: displacement, targetCount: targetCount,
                             targetDatatype: targetDatatype, on: window, posted: &posted)
        } catch {
            try raise(error) as Void
        }
    }

    /// MPI_Rput: the same, in a lock or lock-all epoch, with a request that
    /// completes when the put has.
    public func startPut(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, to target: Int, displacement: Int,
        targetCount: Int? = nil, targetDatatype: Datatype? = nil, on window: Window
    ) throws(MPIError) -> Request {
        do throws(MPIError) {
            try checkPassiveEpoch(window, target: target, "a request-based put")
            var posted: [Int]? = []  // (recorded: the request waits for them)
            try putOperation(origin, count: count, datatype: datatype, to: target, displacement: displacement, targetCount: targetCount,
                             targetDatatype: targetDatatype, on: window, posted: &posted)
            return transport.oneSidedRequest(posted ?? [])
        } catch {
            return try raise(error)
        }
    }

    /// Reads `count` elements from `target`'s window at `displacement`
    /// into `origin` (MPI_Get); the data is there after the next flush.
    public func get(
        into origin: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, from target: Int, displacement: Int,
        targetCount: Int? = nil, targetDatatype: Datatype? = nil, on window: Window
    ) throws(MPIError) {
        do throws(MPIError) {
            var posted: [Int]? = nil
            try getOperation(into: origin, count: count, datatype: datatype, from: target, displacement: displacement, targetCount: targetCount,
                             targetDatatype: targetDatatype, on: window, posted: &posted)
        } catch {
            try raise(error) as Void
        }
    }

    /// MPI_Rget: the same, in a lock or lock-all epoch, with a request that
    /// completes when the data is in `origin`.
    public func startGet(
        into origin: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, from target: Int, displacement: Int,
        targetCount: Int? = nil, targetDatatype: Datatype? = nil, on window: Window
    ) throws(MPIError) -> Request {
        do throws(MPIError) {
            try checkPassiveEpoch(window, target: target, "a request-based get")
            var posted: [Int]? = []  // (recorded: the request waits for them)
            try getOperation(into: origin, count: count, datatype: datatype, from: target, displacement: displacement, targetCount: targetCount,
                             targetDatatype: targetDatatype, on: window, posted: &posted)
            return transport.oneSidedRequest(posted ?? [])
        } catch {
            return try raise(error)
        }
    }

    // MARK: - Puts and gets

    private func putOperation(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, to target: Int, displacement: Int,
        targetCount: Int?, targetDatatype: Datatype?, on window: Window, posted: inout [Int]?
    ) throws(MPIError) {
        do {
            let state = try windows.state(of: window)
            let source = try SendBuffer(origin, count: count, datatype: datatype, for: "a put")
            let access = try targetAccess(state, "a put", target: target, displacement: displacement, count: targetCount ?? count,
                                          datatype: targetDatatype ?? datatype, originBytes: source.length, spreadAllowed: true)
            guard source.length > 0 else { return }
            // The bytes leave in packing order: from the origin's range, or
            // from a packed copy of spread-out origin elements (kept until
            // flushed).
            var packed = source.base!
            var staged: UnsafeMutableRawPointer?
            if source.layout != nil {
                staged = malloc(source.length)!
                source.copy(length: source.length, to: staged!)
                packed = UnsafeRawPointer(staged!)
            }
            if let local = access.local {
                try access.forEachRange(length: source.length) { (from, to, length) throws(MPIError) in (local + to).copyMemory(from: packed + from, byteCount: length) }
                if let staged { Glibc.free(staged) }
                return
            }
            if let staged {
                let address = UInt(bitPattern: staged)
                state.epochs.withLock { $0.staging.append(address) }
            }
            try access.forEachRange(length: source.length) { (from, to, length) throws(MPIError) in
                try post(.write(packed + from, length: length, to: access.remote.advanced(by: to)), state, target, access, &posted)
            }
        }
    }

    private func getOperation(
        into origin: UnsafeMutableRawPointer?, count: Int, datatype: Datatype, from target: Int, displacement: Int,
        targetCount: Int?, targetDatatype: Datatype?, on window: Window, posted: inout [Int]?
    ) throws(MPIError) {
        do {
            let state = try windows.state(of: window)
            let destination = try ReceiveBuffer(origin, count: count, datatype: datatype, for: "a get")
            let access = try targetAccess(state, "a get", target: target, displacement: displacement, count: targetCount ?? count,
                                          datatype: targetDatatype ?? datatype, originBytes: destination.capacity, spreadAllowed: true)
            guard destination.capacity > 0 else { return }
            // The bytes arrive in packing order: into the origin's range, or
            // into a packed copy placed into spread-out origin elements
            // (then this get completes before it returns).
            let staged = destination.layout == nil ? nil : malloc(destination.capacity)!
            defer { if let staged { Glibc.free(staged) } }
            let packed = staged ?? destination.base!
            if let local = access.local {
                try access.forEachRange(length: destination.capacity) { (to, from, length) throws(MPIError) in (packed + to).copyMemory(from: local + from, byteCount: length) }
            } else {
                guard staged != nil else {
                    try access.forEachRange(length: destination.capacity) { (to, from, length) throws(MPIError) in
                        try post(.read(into: packed + to, length: length, from: access.remote.advanced(by: from)), state, target, access, &posted)
                    }
                    return
                }
                var tickets: [Int] = []
                try access.forEachRange(length: destination.capacity) { (to, from, length) throws(MPIError) in
                    try transport.startOneSided(.read(into: packed + to, length: length, from: access.remote.advanced(by: from)), access.worldRank, &tickets)
                }
                try waitFor(&tickets)
            }
            if let staged { place(UnsafeRawPointer(staged), into: destination) }
        }
    }

    /// Combines `count` elements at `origin` into `target`'s elements with
    /// `operation`, atomically per element (MPI_Accumulate). Elements are
    /// of one basic type (or a pair type), the same at both ends.
    public func accumulate(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, to target: Int, displacement: Int,
        operation: AccumulateOperation, on window: Window
    ) throws(MPIError) {
        do throws(MPIError) {
            var posted: [Int]? = nil
            try accumulate(origin, count: count, datatype: datatype, result: nil, target: target, displacement: displacement, operation: operation,
                           window: window, "an accumulate", posted: &posted)
        } catch {
            try raise(error) as Void
        }
    }

    /// MPI_Raccumulate: the same, in a lock or lock-all epoch, with a
    /// request that completes when the accumulate has.
    public func startAccumulate(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, to target: Int, displacement: Int,
        operation: AccumulateOperation, on window: Window
    ) throws(MPIError) -> Request {
        do throws(MPIError) {
            try checkPassiveEpoch(window, target: target, "a request-based accumulate")
            var posted: [Int]? = []  // (recorded: the request waits for them)
            try accumulate(origin, count: count, datatype: datatype, result: nil, target: target, displacement: displacement, operation: operation,
                           window: window, "an accumulate", posted: &posted)
            return transport.oneSidedRequest(posted ?? [])
        } catch {
            return try raise(error)
        }
    }

    /// The same, with the target's elements as they were before into
    /// `result` (MPI_Get_accumulate; with `.noOperation`, an atomic read).
    public func getAccumulate(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, result: UnsafeMutableRawPointer?, to target: Int, displacement: Int,
        operation: AccumulateOperation, on window: Window
    ) throws(MPIError) {
        do throws(MPIError) {
            try checkResultBuffer(result, count: count, datatype: datatype)
            var posted: [Int]? = nil
            try accumulate(origin, count: count, datatype: datatype, result: result, target: target, displacement: displacement, operation: operation,
                           window: window, "a get-accumulate", posted: &posted)
        } catch {
            try raise(error) as Void
        }
    }

    /// MPI_Rget_accumulate: the same, in a lock or lock-all epoch, with a
    /// request that completes when `result` holds the old elements.
    public func startGetAccumulate(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, result: UnsafeMutableRawPointer?, to target: Int, displacement: Int,
        operation: AccumulateOperation, on window: Window
    ) throws(MPIError) -> Request {
        do throws(MPIError) {
            try checkPassiveEpoch(window, target: target, "a request-based get-accumulate")
            try checkResultBuffer(result, count: count, datatype: datatype)
            var posted: [Int]? = []  // (recorded: the request waits for them)
            try accumulate(origin, count: count, datatype: datatype, result: result, target: target, displacement: displacement, operation: operation,
                           window: window, "a get-accumulate", posted: &posted)
            return transport.oneSidedRequest(posted ?? [])
        } catch {
            return try raise(error)
        }
    }

    /// One element's get-accumulate (MPI_Fetch_and_op).
    public func fetchAndOp(
        _ origin: UnsafeRawPointer?, result: UnsafeMutableRawPointer, datatype: Datatype, target: Int, displacement: Int,
        operation: AccumulateOperation, on window: Window
    ) throws(MPIError) {
        do throws(MPIError) {
            var posted: [Int]? = nil
            try accumulate(origin, count: 1, datatype: datatype, result: result, target: target, displacement: displacement, operation: operation,
                           window: window, "a fetch-and-op", posted: &posted)
        } catch {
            try raise(error) as Void
        }
    }

    /// Sets `target`'s element to `*origin` if it equals `*compare`; its
    /// old value lands in `result` (MPI_Compare_and_swap).
    public func compareAndSwap(
        _ origin: UnsafeRawPointer, compare: UnsafeRawPointer, result: UnsafeMutableRawPointer, datatype: Datatype,
        target: Int, displacement: Int, on window: Window
    ) throws(MPIError) {
        do throws(MPIError) {
            let state = try windows.state(of: window)
            try checkAccumulateType(datatype, "a compare-and-swap")
            let access = try targetAccess(state, "a compare-and-swap", target: target, displacement: displacement, count: 1, datatype: datatype,
                                          originBytes: datatype.size)
            if AccumulateMechanism.chooseCompareAndSwap(datatype, atomics: transport.atomics) == .fabricAtomics, access.remote.address & 7 == 0 {
                let word = WindowWord(worldRank: access.worldRank, remote: access.remote, local: access.local)
                let swap = origin.loadUnaligned(as: UInt64.self), expected = compare.loadUnaligned(as: UInt64.self)
                if word.local != nil {
                    result.storeBytes(of: try compareAndSwap(word, compare: expected, swap: swap), as: UInt64.self)
                } else {
                    var unrecorded: [Int]? = nil
                    try post(.compareAndSwap(access.remote, compare: expected, swap: swap, oldValue: result), state, target, access, &unrecorded)
                }
                return
            }
            let bytes = datatype.size
            try lockedUpdate(state, target: target, access, bytes: bytes) { current in
                result.copyMemory(from: current, byteCount: bytes)
                guard memcmp(current, compare, bytes) == 0 else { return false }
                current.copyMemory(from: origin, byteCount: bytes)
                return true
            }
        } catch {
            try raise(error) as Void
        }
    }

    // MARK: - Accumulates

    private func accumulate(
        _ origin: UnsafeRawPointer?, count: Int, datatype: Datatype, result: UnsafeMutableRawPointer?, target: Int, displacement: Int,
        operation: AccumulateOperation, window: Window, _ what: String, posted: inout [Int]?
    ) throws(MPIError) {
        let state = try windows.state(of: window)
        try checkAccumulateType(datatype, what)
        if case .reduce(let reduction) = operation {
            if case .user = reduction.kind { throw MPIError(.invalidArgument, "\(what) with a user operation (one-sided calls take only built-in ones)") }
            try reduction.check(datatype)
        }
        let bytes = try datatype.checkedSize(count: count, in: what)
        if case .noOperation = operation {} else if bytes > 0, origin == nil {
            throw MPIError(.invalidBuffer, "\(what) of \(count) elements from a null buffer")
        }
        let access = try targetAccess(state, what, target: target, displacement: displacement, count: count, datatype: datatype, originBytes: bytes)
        guard bytes > 0 else { return }
        if AccumulateMechanism.choose(operation, datatype, atomics: transport.atomics) == .fabricAtomics, access.remote.address & 7 == 0 {
            try atomicAccumulate(state, target: target, access, origin: origin, count: count, result: result, operation: operation, posted: &posted)
            return
        }
        try lockedUpdate(state, target: target, access, bytes: bytes) { current in
            if let result { result.copyMemory(from: current, byteCount: bytes) }
            switch operation {
            case .noOperation: return false
            case .replace: current.copyMemory(from: origin!, byteCount: bytes)
            case .reduce(let reduction): reduction.apply(origin!, to: current, count: count, datatype: datatype)
            }
            return true
        }
    }

    /// 8-byte integers, one fabric atomic per element: sums and no-ops
    /// are posted (complete at the next flush), replaces loop on
    /// compare-and-swap until it holds (complete on return).
    private func atomicAccumulate(
        _ state: WindowState, target: Int, _ access: TargetAccess, origin: UnsafeRawPointer?, count: Int, result: UnsafeMutableRawPointer?,
        operation: AccumulateOperation, posted: inout [Int]?
    ) throws(MPIError) {
        for index in 0..<count {
            let word = WindowWord(worldRank: access.worldRank, remote: access.remote.advanced(by: 8 * index), local: access.local.map { $0 + 8 * index })
            let oldValue = result.map { $0 + 8 * index }
            switch operation {
            case .replace:
                let new = origin!.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self)
                var seen = try fetchAndAdd(word, 0)
                while true {
                    let old = try compareAndSwap(word, compare: seen, swap: new)
                    if old == seen { break }
                    seen = old
                }
                oldValue?.storeBytes(of: seen, as: UInt64.self)
            case .noOperation, .reduce:
                let add = operation.isNoOperation ? 0 : origin!.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self)
                if word.local != nil {
                    let old = try fetchAndAdd(word, add)
                    oldValue?.storeBytes(of: old, as: UInt64.self)
                } else if add != 0 || oldValue != nil {
                    try post(.fetchAndAdd(word.remote, add: add, oldValue: oldValue), state, target, access, &posted)
                }
            }
        }
    }

    /// Posts `work` to the target: its tickets join the window's list for
    /// that target (under the window's lock, straight into the list: no
    /// array per operation), and `posted` too when a request waits for them.
    private func post(_ work: OneSidedWork, _ state: WindowState, _ target: Int, _ access: TargetAccess, _ posted: inout [Int]?) throws(MPIError) {
        try state.epochs.withLock { (epochs) throws(MPIError) in
            let before = epochs.pending[target].count
            try transport.startOneSided(work, access.worldRank, &epochs.pending[target])
            if posted != nil { posted! += epochs.pending[target][before...] }
        }
    }

    /// Runs `update` on the target's current bytes while holding its
    /// accumulate lock: on this rank's own memory directly; on a peer's,
    /// on a copy READ from it and WRITTEN back if `update` says it changed.
    private func lockedUpdate(
        _ state: WindowState, target: Int, _ access: TargetAccess, bytes: Int, _ update: (UnsafeMutableRawPointer) -> Bool
    ) throws(MPIError) {
        let lock = word(state, target: target, offset: WindowControl.accumulateLockOffset, control: true)
        let holder = UInt64(rank + 1)
        try acquire(lock, as: holder)
        if let local = access.local {
            _ = update(local)
            try release(lock, heldAs: holder)
            return
        }
        let copy = malloc(bytes)!
        defer { Glibc.free(copy) }
        var tickets: [Int] = []
        do throws(MPIError) {
            try transport.startOneSided(.read(into: copy, length: bytes, from: access.remote), access.worldRank, &tickets)
            try waitFor(&tickets)
            if update(copy) {
                try transport.startOneSided(.write(UnsafeRawPointer(copy), length: bytes, to: access.remote), access.worldRank, &tickets)
            }
        } catch {
            try? release(lock, heldAs: holder)
            throw error
        }
        // The release (a compare-and-swap) follows the WRITE on the same
        // connection, and a target applies a connection's requests in
        // order: it need not wait for the WRITE (a round trip fewer).
        try release(lock, heldAs: holder)
        try waitFor(&tickets)
    }

    /// Request-based operations belong to passive-target epochs (MPI 3.1 §11.3.5).
    private func checkPassiveEpoch(_ window: Window, target: Int, _ what: String) throws(MPIError) {
        let state = try windows.state(of: window)
        guard state.epochs.withLock({ $0.lockAll || $0.locks[target] != nil }) else {
            throw MPIError(.windowSynchronization, "\(what) to rank \(target) of \(window) outside a lock or lock-all epoch")
        }
    }

    private func checkResultBuffer(_ result: UnsafeMutableRawPointer?, count: Int, datatype: Datatype) throws(MPIError) {
        guard count == 0 || datatype.size == 0 || result != nil else {
            throw MPIError(.invalidBuffer, "a get-accumulate of \(count) elements into a null result buffer")
        }
    }

    private func checkAccumulateType(_ datatype: Datatype, _ what: String) throws(MPIError) {
        try datatype.checkUsable(in: what)
        switch datatype.construction {
        case .basic, .pair: return
        default: throw MPIError(.invalidDatatype, "\(what) on \(datatype): one-sided atomics take a basic type or a pair type")
        }
    }

    // MARK: - Target ranges

    /// Where an access goes, once checked.
    struct TargetAccess {
        let worldRank: Int
        /// The first byte accessed (of a spread-out datatype: the
        /// displacement's byte), as a peer reaches it.
        let remote: RemoteMemory
        /// The same byte, when the target is this rank.
        let local: UnsafeMutableRawPointer?
        /// Spread-out target elements: their datatype and count.
        let spread: (datatype: Datatype, count: Int)?

        /// The target's ranges in packing order: where each starts among
        /// the packed bytes and from `remote` (or `local`); one range (and
        /// no array) for elements in one range.
        func forEachRange(length: Int, _ body: (_ packed: Int, _ target: Int, _ length: Int) throws(MPIError) -> Void) throws(MPIError) {
            guard spread != nil else { return try body(0, 0, length) }
            for range in ranges(length: length) { try body(range.packed, range.target, range.length) }
        }

        private func ranges(length: Int) -> [(packed: Int, target: Int, length: Int)] {
            guard let spread else { return [(0, 0, length)] }
            var ranges: [(packed: Int, target: Int, length: Int)] = []
            var packed = 0
            spread.datatype.forEachRange(count: spread.count, packedFrom: 0, length: length) { offset, bytes in
                ranges.append((packed, offset, bytes))
                packed += bytes
                return true
            }
            return ranges
        }
    }

    /// Checks an access of `count` elements of `datatype` at
    /// `displacement` in `target`'s window: a rank of the window, an
    /// epoch that covers it, as many bytes as the origin gives, and every
    /// byte the elements span inside the target's window. Atomics need the
    /// elements in one range (`spreadAllowed` false).
    func targetAccess(
        _ state: WindowState, _ what: String, target: Int, displacement: Int, count: Int, datatype: Datatype, originBytes: Int,
        spreadAllowed: Bool = false
    ) throws(MPIError) -> TargetAccess {
        guard state.targets.indices.contains(target) else {
            throw MPIError(.invalidRank, "\(what) to rank \(target) of \(state.window), whose ranks are 0 to \(state.targets.count - 1)")
        }
        guard state.epochs.withLock({ $0.covers(target) }) else {
            throw MPIError(.windowSynchronization, "\(what) to rank \(target) of \(state.window) outside an access epoch (no fence, lock or start covers it)")
        }
        try datatype.checkUsable(in: what)
        let bytes = try datatype.checkedSize(count: count, in: what)
        guard bytes == originBytes else {
            throw MPIError(.invalidDatatype, "\(what) of \(originBytes) bytes at the origin into \(bytes) bytes at the target (the counts or datatypes differ)")
        }
        let contiguous = datatype.contiguousRange(count: count)
        guard contiguous != nil || spreadAllowed else {
            throw MPIError(.invalidDatatype, "\(what) with target elements spread out (\(datatype)): atomics take elements in one range")
        }
        // The bytes touched: the one range, or the span of the spread-out elements.
        let touched = contiguous.map { bytes == 0 ? 0..<0 : $0..<($0 + bytes) } ?? datatype.trueSpan(count: count)
        if state.flavor == .dynamic {
            return try dynamicAccess(state, what, target: target, address: displacement, touched: touched,
                                     spread: contiguous == nil ? (datatype, count) : nil)
        }
        let place = state.targets[target]
        let (scaled, scaleOverflow) = displacement.multipliedReportingOverflow(by: place.displacementUnit)
        let (first, firstOverflow) = scaled.addingReportingOverflow(touched.lowerBound)
        let (end, endOverflow) = scaled.addingReportingOverflow(touched.upperBound)
        guard displacement >= 0, first >= 0, !scaleOverflow, !firstOverflow, !endOverflow, end <= place.size else {
            throw MPIError(.outsideWindow, "\(what) of \(bytes) bytes at displacement \(displacement) lies outside rank \(target)'s part of \(state.window) (\(place.size) bytes, displacement unit \(place.displacementUnit))")
        }
        let start = contiguous == nil ? scaled : first
        let local = place.worldRank == rank ? state.base.map { $0 + start } : nil
        return TargetAccess(worldRank: place.worldRank, remote: place.remote.advanced(by: start), local: local,
                            spread: contiguous == nil ? (datatype, count) : nil)
    }

    /// An access to a dynamic window: `address` is the target's own
    /// address, and the bytes touched must lie in one range it attached
    /// (looked up in this rank's copy of its list, read again once if the
    /// copy does not have it).
    private func dynamicAccess(
        _ state: WindowState, _ what: String, target: Int, address: Int, touched: Range<Int>, spread: (datatype: Datatype, count: Int)?
    ) throws(MPIError) -> TargetAccess {
        let place = state.targets[target]
        guard !touched.isEmpty else {
            return TargetAccess(worldRank: place.worldRank, remote: RemoteMemory(address: 0, key: RemoteKey(rawValue: 0)), local: nil, spread: spread)
        }
        let (first, firstOverflow) = address.addingReportingOverflow(touched.lowerBound)
        let (end, endOverflow) = address.addingReportingOverflow(touched.upperBound)
        guard address > 0, first > 0, !firstOverflow, !endOverflow else {
            throw MPIError(.outsideWindow, "\(what) at address \(address) of a dynamic window (a displacement there is an address)")
        }
        let wanted = UInt64(first)..<UInt64(end)
        var range = state.epochs.withLock { $0.attachedRanges[target]?.first { $0.covers(wanted) } }
        if range == nil {
            let fresh = try attachedRanges(of: target, in: state)
            state.epochs.withLock { $0.attachedRanges[target] = fresh }
            range = fresh.first { $0.covers(wanted) }
        }
        guard let range else {
            throw MPIError(.outsideWindow, "\(what) of \(end - first) bytes at address 0x\(String(first, radix: 16)) on rank \(target) of \(state.window): no range attached there covers it")
        }
        let start = spread == nil ? first : address
        let local = place.worldRank == rank ? UnsafeMutableRawPointer(bitPattern: start) : nil
        return TargetAccess(worldRank: place.worldRank, remote: RemoteMemory(address: UInt64(start), key: range.key), local: local, spread: spread)
    }

    /// `target`'s attached ranges, read from its list with a READ (and
    /// its version again, to be sure the list did not change meanwhile).
    private func attachedRanges(of target: Int, in state: WindowState) throws(MPIError) -> [AttachedRange] {
        let place = state.targets[target]
        let copy = malloc(AttachmentTable.bytes)!
        defer { Glibc.free(copy) }
        var version: UInt64 = 0
        for _ in 0..<1000 {
            var tickets: [Int] = []
            if place.worldRank == rank, let table = state.attachments {
                copy.copyMemory(from: table.memory, byteCount: AttachmentTable.bytes)
                version = table.memory.load(as: UInt64.self)
            } else {
                try transport.startOneSided(.read(into: copy, length: AttachmentTable.bytes, from: place.remote), place.worldRank, &tickets)
                try withUnsafeMutableBytes(of: &version) { (word) throws(MPIError) in
                    try transport.startOneSided(.read(into: word.baseAddress!, length: 8, from: place.remote), place.worldRank, &tickets)
                    try waitFor(&tickets)
                }
            }
            if let read = AttachmentTable.ranges(in: copy), read.version == version { return read.ranges }
            advance()
        }
        throw MPIError(.windowSynchronization, "rank \(target)'s list of attached ranges on \(state.window) kept changing while this rank read it")
    }

    /// Copies packed bytes into a receive buffer's elements.
    private func place(_ bytes: UnsafeRawPointer, into destination: ReceiveBuffer) {
        guard let base = destination.base else { return }
        if let layout = destination.layout {
            layout.scatter(from: bytes, into: base, count: destination.count, packedFrom: 0, length: destination.capacity)
        } else {
            base.copyMemory(from: bytes, byteCount: destination.capacity)
        }
    }
}

extension AccumulateOperation {
    var isNoOperation: Bool {
        if case .noOperation = self { return true }
        return false
    }
}
