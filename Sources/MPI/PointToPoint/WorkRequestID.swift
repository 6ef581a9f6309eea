/// What a completion belongs to, packed in its work request id: the kind
/// in the top four bits, then a slot or a request index (and a READ's length). The queue pair a
/// completion names tells the connection.
enum WorkRequestID: Equatable {
    /// A receive slot of the connection.
    case receiveSlot(Int)
    /// A bounce slot an eager message (or a rendezvous from a copy) left from.
    case bounceSlot(Int)
    /// A control slot (rendezvous request, answer, credit).
    case controlSlot(Int)
    /// A READ of `length` bytes of a rendezvous payload into receive
    /// request `index` (a length below 2^28: a chunk's).
    case rendezvousRead(UInt32, length: Int)
    /// A window's put, get or atomic: its ticket (`OneSidedTickets`).
    case oneSided(Int)

    /// The longest READ an id can name.
    static let readLengthLimit = 1 << 27

    var encoded: UInt64 {
        switch self {
        case .receiveSlot(let slot): return 1 << 60 | UInt64(slot)
        case .bounceSlot(let slot): return 2 << 60 | UInt64(slot)
        case .controlSlot(let slot): return 3 << 60 | UInt64(slot)
        case .rendezvousRead(let index, let length): return 4 << 60 | UInt64(length) << 32 | UInt64(index)
        case .oneSided(let ticket): return 5 << 60 | UInt64(ticket)
        }
    }

    init?(_ value: UInt64) {
        let low = value & 0x0fff_ffff_ffff_ffff
        switch value >> 60 {
        case 1: self = .receiveSlot(Int(low))
        case 2: self = .bounceSlot(Int(low))
        case 3: self = .controlSlot(Int(low))
        case 4: self = .rendezvousRead(UInt32(truncatingIfNeeded: low), length: Int(low >> 32))
        case 5: self = .oneSided(Int(low))
        default: return nil
        }
    }
}

/// The cookie of a rendezvous whose payload waits in a bounce slot (the
/// sender's request completed when it copied): the top bit tells it from a
/// request's cookie, whose generation never reaches it.
enum BounceCookie {
    static func make(_ slot: Int) -> UInt64 { 1 << 63 | UInt64(slot) }
    static func slot(_ cookie: UInt64) -> Int? { cookie >> 63 == 1 ? Int(cookie & 0xffff_ffff) : nil }
}
