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
    }

    private var entries: [Entry] = []
    private var unused: [Int] = []

    mutating func take(peer: Int, lease: RegistrationLease?, resultSlot: Int?, resultDestination: UnsafeMutableRawPointer?) -> Int {
        let entry = Entry(state: .pending, peer: peer, lease: lease, resultSlot: resultSlot, resultDestination: resultDestination)
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
        return entry
    }

    func state(_ ticket: Int) -> State { entries[ticket].state }

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
