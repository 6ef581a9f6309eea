import Fabric

/// The requests one post call hands over (`--post-list`): copies of the
/// test's request, built before the timed loop, of which the loop only
/// changes ids and signalled flags, so that posting a list allocates nothing.
struct PostList {
    private let requests: UnsafeMutableBufferPointer<SendWorkRequest>

    init(repeating request: SendWorkRequest, capacity: Int) {
        requests = .allocate(capacity: capacity)
        requests.initialize(repeating: request)
    }

    func deallocate() {
        _ = requests.deinitialize()
        requests.deallocate()
    }

    @inline(__always)
    func set(_ index: Int, id: UInt64, signaled: Bool) {
        requests[index].id = id
        if signaled { requests[index].flags.insert(.signaled) } else { requests[index].flags.remove(.signaled) }
    }

    /// The first `length` requests, to post.
    @inline(__always)
    func prefix(_ length: Int) -> UnsafeBufferPointer<SendWorkRequest> {
        UnsafeBufferPointer(rebasing: requests[0..<length])
    }
}
