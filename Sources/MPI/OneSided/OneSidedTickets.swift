import FabricCore
import FabricRegistrationCache

/// The one-sided operations this rank posted for its windows (puts, gets,
/// atomics), each under a ticket its work request id carries: what to
/// clean up when it completes (the origin buffer's registration lease, the
/// registered 8 bytes an atomic's old value lands in and where to copy it)
/// and how it ended. A window keeps the tickets of its operations until a
/// flush collects them. Owned by the point-to-point engine, under its lock.
struct OneSidedTickets {
    enum State {
        case free
        case pending
        case done
        case failed(MPIError)
    }

    struct Entry {
        var state: State = .free
        var peer = -1
        var lease: RegistrationLease?
        /// The results slot an atomic's old value lands in, and where the
        /// caller wants it (nil: a flush only waits for it).
        var resultSlot: Int?
        var resultDestination: UnsafeMutableRawPointer?
        /// The request of a request-based operation this is part of.
        var request: UInt32?
        /// A WRITE posted without a completion of its own, not yet covered
        /// by a later signalled request of its connection.
        var awaitsCover = false
        /// The uncovered WRITEs this signalled request completes with it
        /// (a connection's requests complete in order).
        var covers: [Int] = []
        /// A flush READ of the engine's own: released as it finishes.
        var isFlush = false
        /// Counted in the engine's requests in flight (`sendsInFlight`):
        /// cleared once when it leaves them.
        var inFlight = false
    }

    private var entries: [Entry] = []
    private var unused: [Int] = []

    mutating func take(peer: Int, lease: RegistrationLease?, resultSlot: Int?, resultDestination: UnsafeMutableRawPointer?) -> Int {
        let entry = Entry(state: .pending, peer: peer, lease: lease, resultSlot: resultSlot, resultDestination: resultDestination, inFlight: true)
        if let ticket = unused.popLast() {
            entries[ticket] = entry
            return ticket
        }
        entries.append(entry)
        return entries.count - 1
    }

    /// The operation ended (with `error`, or well); the entry as it was,
    /// for its clean-up. Nil if the ticket is not pending (a failure
    /// already ended it).
    mutating func finish(_ ticket: Int, error: MPIError?) -> Entry? {
        guard entries.indices.contains(ticket), case .pending = entries[ticket].state else { return nil }
        let entry = entries[ticket]
        entries[ticket].state = error.map { .failed($0) } ?? .done
        entries[ticket].lease = nil
        entries[ticket].resultSlot = nil
        entries[ticket].awaitsCover = false
        entries[ticket].covers = []
        return entry
    }

    func state(_ ticket: Int) -> State { entries[ticket].state }

    func awaitsCover(_ ticket: Int) -> Bool { entries[ticket].awaitsCover }

    /// `ticket` (a WRITE without a completion of its own) now waits for a
    /// later signalled request to cover it.
    mutating func markUncovered(_ ticket: Int) {
        entries[ticket].awaitsCover = true
    }

    func peer(_ ticket: Int) -> Int { entries.indices.contains(ticket) ? entries[ticket].peer : -1 }

    /// Takes `ticket` out of the requests in flight; true if it was in
    /// (each request leaves once: by its completion, by the completion
    /// that covers it, or when its connection fails).
    mutating func leaveFlight(_ ticket: Int) -> Bool {
        guard entries.indices.contains(ticket), entries[ticket].inFlight else { return false }
        entries[ticket].inFlight = false
        return true
    }

    /// The signalled request `ticket` completes `covered` with it.
    mutating func cover(_ covered: [Int], by ticket: Int) {
        for uncovered in covered { entries[uncovered].awaitsCover = false }
        entries[ticket].covers = covered
    }

    mutating func markFlush(_ ticket: Int) { entries[ticket].isFlush = true }

    /// Makes `ticket`, if still pending, part of request `index`; says
    /// whether it was pending.
    mutating func attach(_ ticket: Int, to index: UInt32) -> Bool {
        guard case .pending = entries[ticket].state else { return false }
        entries[ticket].request = index
        return true
    }

    /// The ticket serves another operation from now on.
    mutating func release(_ ticket: Int) {
        entries[ticket] = Entry()
        unused.append(ticket)
    }

    /// The tickets of operations still pending on `peer`.
    func pending(on peer: Int) -> [Int] {
        entries.indices.filter { entries[$0].peer == peer && { if case .pending = $0 { return true } else { return false } }(entries[$0].state) }
    }
}
