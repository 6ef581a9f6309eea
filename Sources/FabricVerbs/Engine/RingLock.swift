// UNSAFE AREA: the lock around a queue pair's send and receive rings. A
// spin lock, like the provider's own around its queues: taken with one
// atomic exchange, released with a plain store (x86 orders it; the
// Mutex it replaces released with a second atomic operation). Both sides
// of the verbs benchmark busy-poll, and under the VM's emulation an atomic
// operation beside another running vCPU costs about 100 ns: a post, a
// repost and a translated completion each take this lock once. The holder
// keeps it for a few dozen instructions (a post or a ring update, no
// system call); a waiter spins, and yields the processor now and then in
// case the holder was preempted.
import Glibc
import Synchronization

// A non-copyable struct, stored inline in its owner like a Mutex: the
// owner's address keeps the lock word in place, and using it takes no
// reference to a separate object.
struct RingLock<Value: ~Copyable>: ~Copyable, @unchecked Sendable {  // the value is only touched with the lock held
    private let held = Atomic<Bool>(false)
    private let value: UnsafeMutablePointer<Value>

    init(_ initial: consuming Value) {
        value = .allocate(capacity: 1)
        value.initialize(to: initial)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
    }

    @inline(__always)
    borrowing func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        if held.exchange(true, ordering: .acquiring) { waitForLock() }
        defer { held.store(false, ordering: .releasing) }
        return try body(&value.pointee)
    }

    @inline(never)
    private borrowing func waitForLock() {
        var spins = 0
        repeat {
            while held.load(ordering: .relaxed) {
                spins += 1
                if spins == 256 {
                    spins = 0
                    SystemCalls.yield()
                }
            }
        } while held.exchange(true, ordering: .acquiring)
    }
}
