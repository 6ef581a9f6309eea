extension CollectiveSchedule {
    /// Dissemination: in round k every rank signals the rank 2^k after it
    /// and hears from the one 2^k before; after log2 n rounds each has
    /// heard, through some chain, from all.
    mutating func dissemination() {
        let empty = Elements(nil as UnsafeMutableRawPointer?, count: 0, .byte)
        var distance = 1
        while distance < size {
            nextRound()
            exchange(empty.sendBuffer, to: (rank + distance) % size, empty.receiveBuffer, from: (rank + size - distance) % size)
            distance <<= 1
        }
    }
}
