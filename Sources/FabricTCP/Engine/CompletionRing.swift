import FabricCore

/// A fixed ring of completions. No allocation after creation.
struct CompletionRing: ~Copyable {
    let storage: UnsafeMutablePointer<Completion>
    let capacity: Int
    var head = 0
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: .empty, count: capacity)
    }

    deinit {
        storage.deinitialize(count: capacity)
        storage.deallocate()
    }

    /// False when full (an overrun).
    @inline(__always)
    mutating func push(_ completion: Completion) -> Bool {
        guard count < capacity else { return false }
        var index = head + count
        if index >= capacity { index -= capacity }
        storage[index] = completion
        count += 1
        return true
    }

    @inline(__always)
    mutating func pop(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        let n = min(count, buffer.count)
        for i in 0..<n {
            buffer[i] = storage[head]
            head += 1
            if head == capacity { head = 0 }
        }
        count -= n
        return n
    }
}
