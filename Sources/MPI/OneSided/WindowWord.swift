import CFabricShims
import Glibc
import FabricCore

/// An 8-byte word of a window or of its control block, as this rank
/// reaches it: through the fabric's atomics on a peer, or through the
/// processor's on its own memory (`local`). The software NIC applies
/// remote atomics with the processor's own (a device whose atomics are
/// `.global`), so both kinds are atomic with each other; on a device
/// whose atomics are atomic only among themselves (`.device`), a rank's
/// atomics on its own window are not atomic with its peers' (a loopback
/// connection would close that: not built).
struct WindowWord {
    let worldRank: Int
    let remote: RemoteMemory
    let local: UnsafeMutableRawPointer?
}

extension MPIRuntime {
    /// The word at `offset` bytes into `target`'s window (or control block).
    func word(_ state: WindowState, target: Int, offset: Int, control: Bool = false) -> WindowWord {
        let place = state.targets[target]
        let remote = (control ? place.control : place.remote).advanced(by: offset)
        let mine = place.worldRank == rank
        let local = mine ? (control ? state.control : state.base).map { $0 + offset } : nil
        return WindowWord(worldRank: place.worldRank, remote: remote, local: local)
    }

    /// Adds `add` to the word and returns its old value, once done.
    func fetchAndAdd(_ word: WindowWord, _ add: UInt64) throws(MPIError) -> UInt64 {
        var old: UInt64 = 0
        if let local = word.local {
            guard fabric_guarded_fetch_add_u64(local, add, &old) == 0 else { throw Self.localFault(local) }
            return old
        }
        try withUnsafeMutableBytes(of: &old) { (result) throws(MPIError) in
            var tickets: [Int] = []
            try transport.startOneSided(.fetchAndAdd(word.remote, add: add, oldValue: result.baseAddress), word.worldRank, &tickets)
            try waitFor(&tickets)
        }
        return old
    }

    /// Sets the word to `swap` if it holds `compare`; returns its old value, once done.
    func compareAndSwap(_ word: WindowWord, compare: UInt64, swap: UInt64) throws(MPIError) -> UInt64 {
        var old: UInt64 = 0
        if let local = word.local {
            guard fabric_guarded_compare_swap_u64(local, compare, swap, &old) == 0 else { throw Self.localFault(local) }
            return old
        }
        try withUnsafeMutableBytes(of: &old) { (result) throws(MPIError) in
            var tickets: [Int] = []
            try transport.startOneSided(.compareAndSwap(word.remote, compare: compare, swap: swap, oldValue: result.baseAddress), word.worldRank, &tickets)
            try waitFor(&tickets)
        }
        return old
    }

    private static func localFault(_ address: UnsafeMutableRawPointer) -> MPIError {
        MPIError(.outsideWindow, "an atomic on this rank's own window at \(address) touched unmapped memory (was the window's memory freed?)")
    }

    /// Takes a lock word with compare-and-swap from 0 to `holder`, trying
    /// again until it is free.
    func acquire(_ word: WindowWord, as holder: UInt64) throws(MPIError) {
        try keepTrying { () throws(MPIError) in try compareAndSwap(word, compare: 0, swap: holder) == 0 }
    }

    /// Runs `attempt` until it succeeds (a lock taken), progressing this
    /// rank's other operations between tries (a peer's release may wait
    /// for them) and yielding the processor after 64 tries.
    func keepTrying(_ attempt: () throws(MPIError) -> Bool) throws(MPIError) {
        var attempts = 0
        while try !attempt() {
            attempts += 1
            advance()
            if attempts > 64 { sched_yield() }
        }
    }

    /// Gives back a lock word taken with `acquire`.
    func release(_ word: WindowWord, heldAs holder: UInt64) throws(MPIError) {
        let old = try compareAndSwap(word, compare: holder, swap: 0)
        guard old == holder else {
            throw MPIError(.windowSynchronization, "a window lock word held as \(holder) read \(old) at its release (another rank broke it)")
        }
    }
}
