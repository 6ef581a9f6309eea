/// The checks every backend makes before it posts a work request: what a
/// request may ask of its queue pair (`QueuePairLimits`) and of its device
/// (`DeviceCapabilities`). They live here once so that the backends cannot
/// disagree; each refusal is a `FabricError` of kind `invalidArgument`
/// whose `workRequestRule` names the rule the request broke.
///
/// An atomic on an address that is not 8-byte aligned is refused here, at
/// posting, on every backend: the address is the caller's, so a local check
/// costs nothing and saves the round trip a card makes to say the same thing
/// (libibverbs providers refuse the post too). A software NIC whose peer
/// sends one anyway still answers with a remote invalid request
/// (`CompletionDetail.unalignedAtomic`).
public enum WorkRequestRule: Hashable, Sendable {
    /// More scatter entries than the queue pair (or shared receive queue)
    /// was created for.
    case tooManyScatterEntries
    /// An inline SEND or WRITE larger than the queue pair's `maxInlineData`.
    case inlineTooLarge
    /// A message larger than the device's `maxMessageSize`.
    case messageTooLarge
    /// An atomic whose local memory is not exactly one 8-byte element (the
    /// old value lands there).
    case atomicLocalBuffer
    /// An atomic whose remote address is not 8-byte aligned.
    case atomicUnaligned
    /// An atomic on a device whose `atomics` is `.none`.
    case atomicsUnsupported
    /// A receive posted on a queue pair that takes its receives from a
    /// shared receive queue.
    case receiveOnSharedQueuePair
}

/// The posting checks, inlinable so that a backend's post pays only the
/// comparisons (the refusals' messages are built out of line).
public enum WorkRequestValidation {
    /// Checks a send-queue request: scatter count, then for an atomic its
    /// local buffer, alignment and the device's support, otherwise the
    /// inline size (SENDs and WRITEs; the flag means nothing to a READ) and
    /// the message size.
    @inlinable @inline(__always)
    public static func check(
        _ request: SendWorkRequest, limits: QueuePairLimits, capabilities: DeviceCapabilities, on queuePair: QueuePairNumber
    ) throws(FabricError) {
        let local = request.local
        let count = local.count
        if count > limits.maxSendScatterEntries {
            throw tooManyScatterEntries(request, count, allowed: limits.maxSendScatterEntries, on: queuePair)
        }
        switch request.operation {
        case .fetchAndAdd(let remote, _), .compareAndSwap(let remote, _, _):
            guard count == 1, local[0].length == 8 else { throw atomicLocalBuffer(request) }
            guard remote.address & 7 == 0 else { throw atomicUnaligned(request, remote.address) }
            guard capabilities.atomics != .none else { throw atomicsUnsupported(request) }
            return
        case .read:
            break
        case .send, .sendWithImmediate, .write, .writeWithImmediate:
            if request.flags.contains(.inline) && local.totalLength > UInt64(limits.maxInlineData) {
                throw inlineTooLarge(request, local.totalLength, allowed: limits.maxInlineData, on: queuePair)
            }
        }
        let total = local.totalLength
        if total > UInt64(capabilities.maxMessageSize) {
            throw messageTooLarge(request, total, allowed: capabilities.maxMessageSize)
        }
    }

    /// Checks a receive posted on a queue pair.
    @inlinable @inline(__always)
    public static func check(
        _ request: ReceiveWorkRequest, limits: QueuePairLimits, usesSharedReceiveQueue: Bool, on queuePair: QueuePairNumber
    ) throws(FabricError) {
        if usesSharedReceiveQueue { throw receiveOnSharedQueuePair(queuePair) }
        let count = request.local.count
        if count > limits.maxReceiveScatterEntries {
            throw tooManyScatterEntries(receive: request.id, count, allowed: limits.maxReceiveScatterEntries, on: queuePair)
        }
    }

    /// Checks a receive posted on a shared receive queue created for
    /// `maxScatterEntries` entries per receive.
    @inlinable @inline(__always)
    public static func check(sharedReceive request: ReceiveWorkRequest, maxScatterEntries: Int) throws(FabricError) {
        let count = request.local.count
        if count > maxScatterEntries {
            throw tooManyScatterEntries(receive: request.id, count, allowed: maxScatterEntries, on: nil)
        }
    }

    // The refusals. Out of line: their strings would swell every post.

    @usableFromInline @inline(never)
    static func tooManyScatterEntries(_ request: SendWorkRequest, _ count: Int, allowed: Int, on queuePair: QueuePairNumber) -> FabricError {
        FabricError(.invalidArgument, "\(request.operation.name) \(request.id) has \(count) scatter entries; \(queuePair) allows \(allowed)", rule: .tooManyScatterEntries)
    }

    /// `queuePair` nil: the receive went to a shared receive queue.
    @usableFromInline @inline(never)
    static func tooManyScatterEntries(receive id: UInt64, _ count: Int, allowed: Int, on queuePair: QueuePairNumber?) -> FabricError {
        let owner = queuePair.map { "\($0)" } ?? "this shared receive queue"
        return FabricError(.invalidArgument, "receive \(id) has \(count) scatter entries; \(owner) allows \(allowed)", rule: .tooManyScatterEntries)
    }

    @usableFromInline @inline(never)
    static func atomicLocalBuffer(_ request: SendWorkRequest) -> FabricError {
        FabricError(.invalidArgument, "\(request.operation.name) \(request.id) needs exactly one 8-byte local buffer for the old value", rule: .atomicLocalBuffer)
    }

    @usableFromInline @inline(never)
    static func atomicUnaligned(_ request: SendWorkRequest, _ address: UInt64) -> FabricError {
        FabricError(.invalidArgument, "\(request.operation.name) \(request.id) at remote address 0x\(String(address, radix: 16)): atomics need an 8-byte aligned address", rule: .atomicUnaligned)
    }

    @usableFromInline @inline(never)
    static func atomicsUnsupported(_ request: SendWorkRequest) -> FabricError {
        FabricError(.invalidArgument, "\(request.operation.name) \(request.id): the device has no atomics", rule: .atomicsUnsupported)
    }

    @usableFromInline @inline(never)
    static func inlineTooLarge(_ request: SendWorkRequest, _ length: UInt64, allowed: Int, on queuePair: QueuePairNumber) -> FabricError {
        FabricError(.invalidArgument, "\(request.operation.name) \(request.id) asks for \(length) inline bytes; \(queuePair) allows \(allowed)", rule: .inlineTooLarge)
    }

    @usableFromInline @inline(never)
    static func messageTooLarge(_ request: SendWorkRequest, _ length: UInt64, allowed: Int) -> FabricError {
        FabricError(.invalidArgument, "\(request.operation.name) \(request.id) is \(length) bytes; the device carries at most \(allowed) bytes in one message", rule: .messageTooLarge)
    }

    @usableFromInline @inline(never)
    static func receiveOnSharedQueuePair(_ queuePair: QueuePairNumber) -> FabricError {
        FabricError(.invalidArgument, "\(queuePair) takes its receives from a shared receive queue; post them there", rule: .receiveOnSharedQueuePair)
    }
}
