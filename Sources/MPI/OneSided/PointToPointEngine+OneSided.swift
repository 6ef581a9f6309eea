import FabricCore
import FabricRegistrationCache

/// A window's memory as the fabric knows it: where peers reach it, and the
/// registration whose keys are revoked when the window is freed.
struct WindowMemoryRegistration: Sendable {
    let remote: RemoteMemory
    let deregister: @Sendable () -> Void
}

/// One put, get or atomic on a peer's window memory, before it is posted.
enum OneSidedWork {
    case write(UnsafeRawPointer, length: Int, to: RemoteMemory)
    case read(into: UnsafeMutableRawPointer, length: Int, from: RemoteMemory)
    /// The word's old value is copied to `oldValue` (if given) on completion.
    case fetchAndAdd(RemoteMemory, add: UInt64, oldValue: UnsafeMutableRawPointer?)
    case compareAndSwap(RemoteMemory, compare: UInt64, swap: UInt64, oldValue: UnsafeMutableRawPointer?)
}

/// The windows' part of the engine: their memory's registrations, their
/// work requests (on the peer's connection, in order with its frames) and
/// the completion of their tickets. The window layer (`WindowTable`)
/// checks every target range before anything reaches here.
extension PointToPointEngine {
    /// What windows ask of their memory: peers write, read and apply
    /// atomics to it.
    static var windowAccess: MemoryAccess { [.localWrite, .remoteRead, .remoteWrite, .remoteAtomic] }

    /// Registers `length` bytes at `base` for a window, its own
    /// registration (not the cache's: a window's keys must die with it,
    /// and a cache keeps released registrations for reuse).
    func registerWindowMemory(_ base: UnsafeMutableRawPointer, length: Int) throws(MPIError) -> WindowMemoryRegistration {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        do {
            let region = try device.registerMemory(base, length: length, access: Self.windowAccess, in: domain)
            statistics.windowRegistrations += 1
            return WindowMemoryRegistration(remote: region.remote(), deregister: { [self] in
                try? region.deregister()
                lock.lock()
                defer { lock.unlock() }
                statistics.windowRegistrations -= 1
            })
        } catch {
            throw MPIError(error, while: "registering \(length) bytes of window memory")
        }
    }

    /// Posts `work` to `peer`, in chunks of the rendezvous chunk size for
    /// long transfers (a frame behind one huge WRITE waits for all of it);
    /// appends a ticket per work request to `tickets`. Nothing is posted
    /// for no bytes.
    func startOneSided(_ work: OneSidedWork, to peer: Int, tickets: inout [Int]) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        let channel = try channel(toPeer: peer)
        if let failure = channel.failure { throw failure }
        let chunk = settings.rendezvousChunk
        do throws(FabricError) {
            switch work {
            case .write(let source, let length, let remote):
                var offset = 0
                while offset < length {
                    let piece = min(chunk, length - offset)
                    let lease = try registrations.acquire(source + offset, length: piece, access: [])
                    let element = try lease.element(at: source + offset, length: piece)
                    post(.write(remote.advanced(by: offset)), element, lease: lease, unsignaledTo: remote.advanced(by: offset), to: channel, tickets: &tickets)
                    offset += piece
                }
            case .read(let destination, let length, let remote):
                var offset = 0
                while offset < length {
                    let piece = min(chunk, length - offset)
                    let lease = try registrations.acquire(destination + offset, length: piece, access: .localWrite)
                    let element = try lease.element(at: destination + offset, length: piece)
                    post(.read(remote.advanced(by: offset)), element, lease: lease, to: channel, tickets: &tickets)
                    offset += piece
                }
            case .fetchAndAdd(let remote, let add, let oldValue):
                let slot = try resultSlot()
                post(.fetchAndAdd(remote, add: add), atomicResults.element(slot, length: 8), resultSlot: slot, oldValue: oldValue, to: channel, tickets: &tickets)
            case .compareAndSwap(let remote, let compare, let swap, let oldValue):
                let slot = try resultSlot()
                post(.compareAndSwap(remote, compare: compare, swap: swap), atomicResults.element(slot, length: 8), resultSlot: slot, oldValue: oldValue,
                     to: channel, tickets: &tickets)
            }
        } catch {
            throw MPIError(error, while: "posting a window operation to rank \(peer)")
        }
    }

    /// A WRITE (`unsignaledTo` its target) goes without a completion of its
    /// own: the next signalled request on the connection covers it, since a
    /// target applies a connection's requests in order and the requester
    /// completes them in order (a flush is then one READ round trip, not a
    /// WRITE's acknowledgement; at most `uncoveredLimit` wait uncovered, so
    /// that the send queue never fills with requests nothing retires).
    private func post(
        _ operation: SendOperation, _ element: ScatterGatherElement, lease: RegistrationLease? = nil, resultSlot: Int? = nil,
        oldValue: UnsafeMutableRawPointer? = nil, unsignaledTo target: RemoteMemory? = nil, to channel: PeerChannel<Device>, tickets: inout [Int]
    ) {
        let ticket = oneSided.take(peer: channel.rank, lease: lease, resultSlot: resultSlot, resultDestination: oldValue)
        tickets.append(ticket)
        var flags: SendFlags = [.signaled]
        if let target, channel.uncoveredWrites.count < Self.uncoveredLimit {
            flags = []
            oneSided.markUncovered(ticket)
            channel.uncoveredWrites.append(ticket)
            channel.lastUncoveredWrite = target
        } else if !channel.uncoveredWrites.isEmpty {
            oneSided.cover(channel.uncoveredWrites, by: ticket)
            channel.uncoveredWrites.removeAll(keepingCapacity: true)
        }
        postOneSided(SendWorkRequest(id: WorkRequestID.oneSided(ticket).encoded, operation: operation, local: .single(element), flags: flags), on: channel)
    }

    static var uncoveredLimit: Int { 32 }

    /// Covers `channel`'s uncovered WRITEs with a signalled READ of one
    /// byte where the last of them went (into a results word), a ticket of
    /// the engine's own. Under the lock.
    func coverWrites(on channel: PeerChannel<Device>) {
        guard !channel.uncoveredWrites.isEmpty, channel.failure == nil, let target = channel.lastUncoveredWrite,
              let slot = atomicResults.take()
        else { return }
        var flush: [Int] = []
        post(.read(target), atomicResults.element(slot, length: 1), resultSlot: slot, to: channel, tickets: &flush)
        oneSided.markFlush(flush[0])
    }

    /// Covers the uncovered WRITEs among `tickets` (a flush waits for them).
    /// Under the lock.
    private func coverWrites(among tickets: [Int]) {
        for ticket in tickets where oneSided.awaitsCover(ticket) {
            if let channel = peerChannels[oneSided.peer(ticket)] { coverWrites(on: channel) }
        }
    }

    /// A registered word for an atomic's old value; when all are in use,
    /// progress until one is free (each is held only while its atomic
    /// is in flight).
    private func resultSlot() throws(FabricError) -> Int {
        while true {
            if let slot = atomicResults.take() { return slot }
            guard !closed else { throw FabricError(.invalidState, "the runtime closed while an atomic waited for room") }
            progress()
        }
    }

    /// An operation's completion (or failure): its lease goes back to the
    /// cache, its old value to the caller. Under the lock.
    func finishOneSided(_ ticket: Int, error: MPIError?) {
        guard let entry = oneSided.finish(ticket, error: error) else { return }
        for covered in entry.covers {
            if oneSided.leaveFlight(covered) { sendsInFlight -= 1 }
            finishOneSided(covered, error: error)
        }
        defer { if entry.isFlush { oneSided.release(ticket) } }
        if let index = entry.request, requests[index].inUse, !requests[index].complete {
            requests[index].ticketsLeft -= 1
            if error != nil || requests[index].ticketsLeft == 0 { requests.complete(index, count: 0, error: error) }
        }
        if let lease = entry.lease { registrations.release(lease) }
        if let slot = entry.resultSlot {
            if error == nil, let destination = entry.resultDestination {
                destination.copyMemory(from: atomicResults.pointer(slot), byteCount: 8)
            }
            atomicResults.give(back: slot)
        }
    }

    /// A request that completes when every one of `tickets` has (the
    /// request-based operations; the window's flush still collects the
    /// tickets themselves).
    func oneSidedRequest(for tickets: [Int]) -> Request {
        lock.lock()
        defer { lock.unlock() }
        coverWrites(among: tickets)
        let request = requests.start(.oneSided, peer: -1)
        var left = 0
        for ticket in tickets where oneSided.attach(ticket, to: request.index) { left += 1 }
        requests[request.index].ticketsLeft = left
        // A ticket that failed already ends the request with its error.
        let failure = tickets.lazy.compactMap { (ticket) -> MPIError? in
            if case .failed(let error) = self.oneSided.state(ticket) { return error }
            return nil
        }.first
        if left == 0 || failure != nil { requests.complete(request.index, count: 0, error: failure) }
        return request
    }

    /// Progresses once and takes the finished tickets out of `tickets`
    /// (they serve other operations from now on); true when none is left.
    /// The first failure among them is thrown (the others are released too).
    func collectOneSided(_ tickets: inout [Int]) throws(MPIError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        coverWrites(among: tickets)
        if !closed { progress() }
        var failure: MPIError?
        tickets.removeAll { ticket in
            switch oneSided.state(ticket) {
            case .pending: return false
            case .failed(let error): failure = failure ?? error
            case .done, .free: break
            }
            oneSided.release(ticket)
            return true
        }
        if let failure { throw failure }
        return tickets.isEmpty
    }
}
