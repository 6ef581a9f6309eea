import FabricCore
import FabricRegistrationCache
import Glibc

/// MPI point-to-point over one fabric device: matching, the eager protocol
/// with credits, and the rendezvous whose payload the receiver reads
/// straight from the sender's buffer. Generic over the device, so the
/// data path is specialised for the backend; the runtime holds it through
/// `PointToPointTransport`.
///
/// Every method that touches the engine's state runs under `lock`.
/// Protocols (docs/mpi.md):
/// - eager (message ≤ `eagerLimit`): the payload is copied into a bounce
///   slot and leaves with its header in one SEND into one of the
///   receiver's slots (shared by all its connections: one shared receive
///   queue, so its memory does not grow with the number of peers). A sender spends one credit per eager frame; the
///   receiver returns it when the slot is free again (piggybacked on any
///   frame, or in a credit frame once half are owed). Without a credit the
///   message leaves as a rendezvous from its bounce copy, so a receiver
///   whose slots are full of unexpected messages still gets the rest.
/// - rendezvous: a request names the sender's registered buffer; the
///   receiver, once a receive matches, registers its buffer, READs the
///   payload in chunks (at most `readsInFlight` chunks' worth of bytes in
///   flight per connection), then
///   answers "done", which completes the sender's request.
/// - synchronous eager sends are answered once matched.
///
/// The stored properties are `@exclusivity(unchecked)`: they are touched
/// only under `lock`, and no method holds an access to one across a call
/// that reaches it again, so the runtime's dynamic exclusivity checks (a
/// thread-local access set, entered at every read and write of a class's
/// property) could find nothing; they cost about a tenth of an 8 B round
/// trip (measured with the checks compiled out).
final class PointToPointEngine<Device: FabricDevice>: @unchecked Sendable {  // all mutable state under `lock`
    let rank: Int
    let size: Int
    let settings: PointToPointSettings
    let device: Device
    /// Ranges one READ scatters into (spread-out receives).
    let readScatterLimit: Int
    /// (Internal, as are `lock`, `closed`, `progress`, `checkOpen` and
    /// `channel(toPeer:)`: the windows' part of the engine lives in
    /// OneSided/PointToPointEngine+OneSided.swift.)
    let domain: Device.ProtectionDomain
    /// Registrations of user buffers for rendezvous, kept for reuse.
    let registrations: RegistrationCache
    private let completions: Device.CompletionQueue
    @exclusivity(unchecked) private var connections: PeerConnections<Device>!
    let lock = ProgressLock()

    @exclusivity(unchecked) var requests = RequestTable()  // (internal: OneSided/PointToPointEngine+OneSided.swift)
    @exclusivity(unchecked) private var matching = MatchingQueues()
    /// Messages a matched probe took off the matching queue, until received.
    @exclusivity(unchecked) private var matchedMessages: [UInt64: MatchingQueues.ArrivedMessage] = [:]
    @exclusivity(unchecked) private var lastMatchedMessage: UInt64 = 0
    /// The communicators this rank has, by context (a small number), and
    /// which of them the program freed: those take no new operations, but
    /// messages that still arrive for them are matched as before (contexts
    /// are never reused, so they cannot be mistaken for another's).
    @exclusivity(unchecked) private var communicators: [Communicator?] = []
    @exclusivity(unchecked) private var freedCommunicators: [Bool] = []
    /// Connected peers by world rank, as this engine has met them (the
    /// connection table's lookups take its lock; these do not).
    @exclusivity(unchecked) var peerChannels: [PeerChannel<Device>?]  // (internal: the windows cover WRITEs per connection)
    /// Where every connection's frames land, and the queue they are posted on.
    private let receiveSlots: SlotPool<Device>
    private let sharedReceiveQueue: Device.SharedReceiveQueue
    /// Receive slots holding unexpected messages (all connections).
    @exclusivity(unchecked) private var heldSlots = 0
    /// Bounce slots of outgoing eager messages, and control slots of
    /// header-only frames.
    private let bounce: SlotPool<Device>
    private let control: SlotPool<Device>
    /// What a bounce slot in use waits for: its SEND's completion, or a
    /// peer's "done" after reading it (then: which peer).
    @exclusivity(unchecked) private var bounceReader: [Int]
    @exclusivity(unchecked) private var channelsByQueuePair: [QueuePairNumber: PeerChannel<Device>] = [:]
    /// Channels with frames or READs waiting for room.
    @exclusivity(unchecked) private var stalled: [PeerChannel<Device>] = []
    /// Channels with frames gathered and not yet posted.
    @exclusivity(unchecked) private var unflushed: [PeerChannel<Device>] = []
    /// SENDs and READs posted and not completed.
    @exclusivity(unchecked) var sendsInFlight = 0  // (internal: covered WRITEs leave it)
    @exclusivity(unchecked) private var unexpectedBytes = 0
    @exclusivity(unchecked) private var completionBatch: UnsafeMutableBufferPointer<Completion>
    @exclusivity(unchecked) var statistics = PointToPointStatistics()  // (internal: the windows count theirs)
    let waiting: WaitDescription
    @exclusivity(unchecked) private(set) var closed = false
    /// The windows' one-sided operations in flight, and the registered
    /// words their atomics' old values land in.
    @exclusivity(unchecked) var oneSided = OneSidedTickets()
    let atomicResults: SlotPool<Device>

    init(
        rank: Int, size: Int, device: Device, listener: Device.Listener, settings: PointToPointSettings,
        waiting: WaitDescription, addressOf: @escaping (Int) throws(MPIError) -> FabricAddress
    ) throws(MPIError) {
        self.rank = rank
        self.size = size
        self.device = device
        self.settings = settings
        self.waiting = waiting
        readScatterLimit = min(64, device.capabilities.maxScatterEntries)
        let domain: Device.ProtectionDomain
        do throws(FabricError) {
            domain = try device.allocateProtectionDomain()
            completions = try device.createCompletionQueue(capacity: 8192)
            bounce = try SlotPool(device: device, domain: domain, slotSize: settings.slotSize, count: settings.sendSlots, access: [.localWrite, .remoteRead])
            control = try SlotPool(device: device, domain: domain, slotSize: 64, count: 1024, access: .localWrite)
            atomicResults = try SlotPool(device: device, domain: domain, slotSize: 64, count: 256, access: .localWrite)
            receiveSlots = try SlotPool(device: device, domain: domain, slotSize: settings.slotSize, count: settings.sharedSlots, access: .localWrite)
            sharedReceiveQueue = try device.createSharedReceiveQueue(in: domain, capacity: settings.sharedSlots, maxScatterEntries: 1)
            for slot in 0..<settings.sharedSlots {
                let request = ReceiveWorkRequest(id: WorkRequestID.receiveSlot(slot).encoded, local: .single(receiveSlots.element(slot, length: settings.slotSize)))
                guard try sharedReceiveQueue.postReceive(request) == .posted else {
                    throw FabricError(.limitExceeded, "the shared receive queue took fewer than \(settings.sharedSlots) receives")
                }
            }
        } catch {
            throw MPIError(error, while: "setting up point-to-point messaging")
        }
        self.domain = domain
        do throws(FabricError) {
            let configuration = try RegistrationCacheConfiguration.fromEnvironment(for: device.capabilities.memoryModel)
            registrations = RegistrationCache(device: device, domain: domain, configuration: configuration)
        } catch {
            throw MPIError(error, while: "setting up the registration cache")
        }
        bounceReader = Array(repeating: -1, count: settings.sendSlots)
        peerChannels = Array(repeating: nil, count: size)
        completionBatch = .allocate(capacity: 64)
        completionBatch.initialize(repeating: .empty)
        // Slots are posted again as soon as their frame is dealt with; a
        // sender that finds none posted waits (unlimited RNR retries):
        // frames beyond the free slots are delayed, never failed.
        let setup = QueuePairSetup<Device>(
            protectionDomain: domain, sendCompletionQueue: completions, receiveCompletionQueue: completions,
            sharedReceiveQueue: sharedReceiveQueue, limits: QueuePairLimits(sendQueueDepth: 512, maxSendScatterEntries: readScatterLimit),
            retry: RetryPolicy(receiverNotReadyRetries: nil))
        let eagerSlots = settings.eagerSlots
        connections = PeerConnections(
            rank: rank, size: size, device: device, listener: listener, setup: setup, waiting: waiting,
            makeChannel: { (peer: Int) throws(FabricError) -> PeerChannel<Device> in
                PeerChannel(rank: peer, eagerCredits: eagerSlots)
            },
            addressOf: addressOf)
    }

    deinit {
        completionBatch.deallocate()
    }

    var connectionCount: Int { connections.connectionCount }

    func register(_ communicator: Communicator) {
        lock.lock()
        defer { lock.unlock() }
        let context = Int(communicator.context)
        if communicators.count <= context {
            communicators += Array(repeating: nil, count: context + 1 - communicators.count)
            freedCommunicators += Array(repeating: false, count: context + 1 - freedCommunicators.count)
        }
        communicators[context] = communicator
        // Messages that came before the communicator was made here.
        for message in matching.arrived where message.context == communicator.context && message.peer != rank {
            guard message.source < communicator.size, communicator.worldRanks[message.source] == message.peer else {
                if let channel = knownChannel(message.peer) {
                    fail(channel, "it sent a message as rank \(message.source) of \(communicator), which it is not")
                }
                continue
            }
        }
    }

    /// Refuses new operations on `communicator` (MPI_Comm_free).
    func retire(_ communicator: Communicator) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        try checkKnown(communicator)
        freedCommunicators[Int(communicator.context)] = true
    }

    /// Throws unless `communicator` is this rank's and not freed.
    func checkUsable(_ communicator: Communicator) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        try checkKnown(communicator)
    }

    var currentStatistics: PointToPointStatistics {
        lock.lock()
        defer { lock.unlock() }
        return statistics
    }

    // MARK: - Starting operations

    func startSend(
        _ data: SendBuffer, to destination: Int, tag: Int, on communicator: Communicator, synchronous: Bool
    ) throws(MPIError) -> Request {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        try checkKnown(communicator)
        guard (0..<communicator.size).contains(destination) else {
            throw MPIError(.invalidRank, "a send to rank \(destination) of \(communicator) of \(communicator.size) ranks")
        }
        guard (0...MessageTag.upperBound).contains(tag) else {
            throw MPIError(.invalidTag, "a send with tag \(tag): tags run from 0 to \(MessageTag.upperBound)")
        }
        let peer = communicator.worldRanks[destination]
        let length = data.length
        if peer == rank {
            return sendToSelf(data, tag: tag, on: communicator, synchronous: synchronous)
        }
        let channel = try channel(toPeer: peer)
        if let failure = channel.failure { throw failure }
        let request = requests.start(.send, peer: peer)
        requests[request.index].status = MessageStatus(source: communicator.rank, tag: tag, count: length)
        var header = MessageHeader(kind: .eager)
        header.context = communicator.context
        header.tag = Int32(tag)
        header.source = UInt32(communicator.rank)
        header.length = UInt64(length)
        if length <= settings.eagerLimit, channel.eagerCredits > 0 || !synchronous, let slot = bounce.take() {
            data.copy(length: length, to: bounce.pointer(slot) + MessageHeader.size)
            statistics.copiedBytes += length
            if channel.eagerCredits > 0 {
                channel.eagerCredits -= 1
                header.synchronous = synchronous
                header.cookie = synchronous ? request.cookie : 0
                bounceReader[slot] = -1
                statistics.eagerSends += 1
                send(PeerChannel<Device>.OutgoingFrame(header: header, bounceSlot: slot, frameLength: MessageHeader.size + length), on: channel)
            } else {
                // No slot free at the receiver: it reads the copy when a
                // receive takes the message.
                header.kind = .rendezvousRequest
                let remote = bounce.remote(slot, offset: MessageHeader.size)
                header.remoteAddress = remote.address
                header.remoteKey = remote.key.rawValue
                header.cookie = BounceCookie.make(slot)
                bounceReader[slot] = peer
                statistics.rendezvousFromCopy += 1
                send(PeerChannel<Device>.OutgoingFrame(header: header, bounceSlot: nil, frameLength: MessageHeader.rendezvousSize), on: channel)
            }
            if !synchronous { requests.complete(request.index, count: length) }
            return request
        }
        // Rendezvous from the user's buffer: it stays the caller's until
        // the receiver says it has read it. (An empty message gets here
        // only without a bounce slot or credit: nothing to register.)
        if var base = data.base, length > 0 {
            let lease: RegistrationLease
            do {
                if data.layout != nil {
                    // Spread out: packed into registered memory that the
                    // receiver reads (the one copy of this send).
                    let staging = try registrations.allocateMemory(length).baseAddress!
                    requests[request.index].staging = staging
                    data.copy(length: length, to: staging)
                    statistics.copiedBytes += length
                    base = UnsafeRawPointer(staging)
                }
                lease = try registrations.acquire(base, length: length, access: .remoteRead)
            } catch {
                release(request.index)
                _ = requests.collect(request.index)
                throw MPIError(error, while: "registering a send buffer of \(length) bytes for rank \(peer)")
            }
            statistics.registrations += 1
            requests[request.index].registration = lease
            let remote = lease.remote(at: base)
            header.remoteAddress = remote.address
            header.remoteKey = remote.key.rawValue
        }
        statistics.rendezvousSends += 1
        header.kind = .rendezvousRequest
        header.cookie = request.cookie
        send(PeerChannel<Device>.OutgoingFrame(header: header, bounceSlot: nil, frameLength: MessageHeader.rendezvousSize), on: channel)
        return request
    }

    func startReceive(
        into buffer: ReceiveBuffer, from source: MessageSource, tag: MessageTag, on communicator: Communicator
    ) throws(MPIError) -> Request {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        try checkKnown(communicator)
        let selector = try checkedSelector(source, tag, communicator, for: "a receive")
        let peer = source.isAny ? -1 : communicator.worldRanks[source.value]
        if peer >= 0, peer != rank, let failure = knownChannel(peer)?.failure { throw failure }
        let request = requests.start(.receive, peer: peer)
        requests[request.index].buffer = buffer.base
        requests[request.index].capacity = buffer.capacity
        if let layout = buffer.layout {
            requests[request.index].layout = layout
            requests[request.index].layoutCount = buffer.count
        }
        if let message = matching.takeArrived(selector) {
            take(message, into: request.index)
        } else {
            matching.post(MatchingQueues.PostedReceive(selector: selector, request: request.index))
        }
        return request
    }

    /// Takes the oldest arrived message `source` and `tag` accept off the
    /// matching queue (MPI_Improbe); nil if none has arrived (after one
    /// round of progress).
    func matchedProbe(from source: MessageSource, tag: MessageTag, on communicator: Communicator) throws(MPIError) -> (Message, MessageStatus)? {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        try checkKnown(communicator)
        let selector = try checkedSelector(source, tag, communicator, for: "a matched probe")
        var found = matching.takeArrived(selector)
        if found == nil {
            progress()
            found = matching.takeArrived(selector)
        }
        guard let found else { return nil }
        lastMatchedMessage += 1
        matchedMessages[lastMatchedMessage] = found
        return (Message(id: lastMatchedMessage), MessageStatus(source: found.source, tag: found.tag, count: found.length))
    }

    /// Starts the receive of a message a matched probe took (MPI_Imrecv).
    func startReceive(_ message: Message, into buffer: ReceiveBuffer) throws(MPIError) -> Request {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        guard let arrived = matchedMessages.removeValue(forKey: message.id) else {
            throw MPIError(.invalidRequest, "\(message) is not waiting on rank \(rank) (received already, or not probed here)")
        }
        let request = requests.start(.receive, peer: arrived.peer)
        requests[request.index].buffer = buffer.base
        requests[request.index].capacity = buffer.capacity
        if let layout = buffer.layout {
            requests[request.index].layout = layout
            requests[request.index].layoutCount = buffer.count
        }
        take(arrived, into: request.index)
        return request
    }

    /// Cancels `request` if it is a receive not yet matched: it completes
    /// at once, its status saying so (MPI_Cancel). A send, or a receive
    /// already matched, completes as it would have (MPI allows a cancel to
    /// fail; its status says it was not cancelled).
    func cancel(_ request: Request) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        guard requests.contains(request) else {
            throw MPIError(.invalidRequest, "cancel of \(request), which is not in progress on rank \(rank) (completed and collected already, or not started here)")
        }
        let index = request.index
        guard !requests[index].complete, requests[index].operation == .receive, matching.removePosted(request: index) else { return }
        requests[index].status.isCancelled = true
        requests.complete(index, count: 0)
    }

    /// Frees `request` (MPI_Request_free): collected now if complete,
    /// otherwise as soon as it completes; the handle names nothing after.
    func free(_ request: Request) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        guard requests.contains(request) else {
            throw MPIError(.invalidRequest, "free of \(request), which is not in progress on rank \(rank) (completed already, or not started here)")
        }
        if requests[request.index].complete {
            _ = requests.collect(request.index)
        } else {
            requests[request.index].detached = true
        }
    }

    /// A request that is complete already (a buffered send's, once copied).
    func completedRequest(count: Int) -> Request {
        lock.lock()
        defer { lock.unlock() }
        let request = requests.start(.send, peer: -1)
        requests.complete(request.index, count: count)
        return request
    }

    /// The status of `request` if it has completed, leaving it to be
    /// collected (MPI_Request_get_status); advances first.
    func peekStatus(_ request: Request) throws(MPIError) -> MessageStatus? {
        lock.lock()
        defer { lock.unlock() }
        guard requests.contains(request) else {
            throw MPIError(.invalidRequest, "\(request) is not in progress on rank \(rank) (completed already, or not started here)")
        }
        if !requests[request.index].complete { progress() }
        return requests[request.index].complete ? requests[request.index].status : nil
    }

    // MARK: - Completing operations

    /// Advances everything, then says whether `request` is complete.
    /// Throws if `request` names nothing in progress.
    func isComplete(_ request: Request) throws(MPIError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard requests.contains(request) else {
            throw MPIError(.invalidRequest, "\(request) is not in progress on rank \(rank) (completed already, or not started here)")
        }
        if !requests[request.index].complete { progress() } else { flushAll() }
        return requests[request.index].complete
    }

    /// The status of a complete request, whose entry is freed.
    func collect(_ request: Request) -> MessageStatus {
        lock.lock()
        defer { lock.unlock() }
        return requests.collect(request.index)
    }

    /// The oldest arrived message `source` and `tag` accept, without
    /// receiving it; nil if none has arrived (after one round of progress).
    func probe(from source: MessageSource, tag: MessageTag, on communicator: Communicator) throws(MPIError) -> MessageStatus? {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        try checkKnown(communicator)
        let selector = try checkedSelector(source, tag, communicator, for: "a probe")
        if let found = matching.peekArrived(selector) {
            return MessageStatus(source: found.source, tag: found.tag, count: found.length)
        }
        progress()
        return matching.peekArrived(selector).map { MessageStatus(source: $0.source, tag: $0.tag, count: $0.length) }
    }

    /// Waits until `satisfied` says so; `satisfied` advances the engine
    /// (through `isComplete` or `advance`). Polls for `spinBeforeSleep`,
    /// yielding the processor between polls after the first 20 µs when the
    /// host runs more ranks than cores; then sleeps on the completion
    /// queue between rounds, so that more ranks than cores make progress.
    func wait(until satisfied: () throws(MPIError) -> Bool) throws(MPIError) {
        if try satisfied() { return }
        let clock = ContinuousClock()
        let start = clock.now
        let yieldFrom = start + Self.pollOnly
        let sleepFrom = start + settings.spinBeforeSleep
        let yields = settings.yieldWhileWaiting
        var rounds = 0
        var sleeping = false
        var described = false
        defer { if described { waiting.clear() } }
        while try !satisfied() {
            rounds &+= 1
            // The clock is read every 16 rounds: a poll that finds nothing
            // costs less than reading it.
            guard rounds & 15 == 0 else { continue }
            checkConnections()
            let now = clock.now
            if now >= sleepFrom {
                if !sleeping {
                    sleeping = true
                    // Said only once the wait is long (and unless the
                    // caller said more): a rank asked (SIGUSR1, mpirun
                    // --timeout) names what it waits in.
                    described = waiting.setUnlessSet("a point-to-point operation to complete (asleep on the completion queue)")
                }
                // Wakes when a completion arrives; the timeout bounds a
                // wait whose wake-up another thread consumed.
                _ = try? completions.wait(timeout: .milliseconds(10))
            } else if yields && now >= yieldFrom {
                sched_yield()
            }
        }
    }

    /// Fails the connections the device reports broken (a peer gone, a
    /// fatal error of a queue pair): a receive waiting on such a peer
    /// would otherwise wait for a completion that never comes, since its
    /// slots are in the shared receive queue.
    private func checkConnections() {
        lock.lock()
        defer { lock.unlock() }
        while let event = device.pollAsyncEvent() {
            guard let number = event.queuePair, let channel = channel(of: number) else { continue }
            fail(channel, "the device reported \(event)")
        }
    }

    /// How long a blocked call polls before it starts yielding the processor.
    static var pollOnly: Duration { .microseconds(20) }

    /// One round of progress (for waits on more than one request).
    func advance() {
        lock.lock()
        defer { lock.unlock() }
        if !closed { progress() }
    }

    /// Posts the frames gathered so far (a collective's round, started
    /// from within another wait, leaves at once rather than at the next call).
    func flush() {
        lock.lock()
        defer { lock.unlock() }
        if !closed { flushAll() }
    }

    /// Says whether `request` is complete, without advancing.
    func isFinished(_ request: Request) throws(MPIError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard requests.contains(request) else {
            throw MPIError(.invalidRequest, "\(request) is not in progress on rank \(rank) (completed already, or not started here)")
        }
        return requests[request.index].complete
    }

    /// Completes every send of this rank's that the transport still holds
    /// (eager frames, answers, credits, copies waiting to be read), so that
    /// closing the connections loses nothing.
    func drain() throws(MPIError) {
        waiting.set("this rank's sends to leave (finalize)")
        defer { waiting.clear() }
        try wait { () throws(MPIError) -> Bool in
            lock.lock()
            defer { lock.unlock() }
            // (Windows' WRITEs nothing covered yet: a READ covers them.)
            for case let channel? in peerChannels where !channel.uncoveredWrites.isEmpty { coverWrites(on: channel) }
            if !closed { progress() }
            return sendsInFlight == 0 && stalled.isEmpty && !bounceReader.contains { $0 >= 0 }
        }
    }

    /// Registered memory from the cache's pool (`MPIRuntime.allocateMemory`).
    func allocateMemory(_ bytes: Int) throws(MPIError) -> UnsafeMutableRawBufferPointer {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        do {
            return try registrations.allocateMemory(bytes)
        } catch {
            throw MPIError(error, while: "allocating \(bytes) bytes of registered memory")
        }
    }

    func freeMemory(_ address: UnsafeMutableRawPointer) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        do {
            try registrations.freeMemory(address)
        } catch {
            throw MPIError(error, while: "freeing registered memory")
        }
    }

    func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        connections.close()
        channelsByQueuePair.removeAll()
        stalled.removeAll()
        bounce.close()
        control.close()
        atomicResults.close()
        receiveSlots.close()
        registrations.close()
    }

    // MARK: - Progress

    /// Polls the completion queue once and handles what it found; retries
    /// channels that waited for room. Under the lock.
    func progress() {
        flushAll()
        let found = completions.poll(into: completionBatch)
        for index in 0..<found { handle(completionBatch[index]) }
        if !stalled.isEmpty { retryStalled() }
        flushAll()
    }

    private func handle(_ completion: Completion) {
        guard let id = WorkRequestID(completion.workRequestID) else { return }
        guard let channel = channel(of: completion.queuePair) else {
            // A queue pair that lost a tie-break: a shared slot it consumed
            // is free again.
            if case .receiveSlot(let slot) = id { repost(slot) }
            return
        }
        switch id {
        case .receiveSlot(let slot):
            guard completion.isSuccess else {
                // (A receive of the shared queue fails only with a frame
                // that did not fit; the slot is free again.)
                repost(slot)
                fail(channel, "a receive ended with \(completion.status) (\(completion.detail))")
                return
            }
            guard channel.failure == nil else {
                repost(slot)
                return
            }
            handleFrame(on: channel, slot: slot, length: Int(completion.byteLength))
        case .bounceSlot(let slot):
            sendsInFlight -= 1
            if bounceReader[slot] < 0 { bounce.give(back: slot) }
            if !completion.isSuccess { fail(channel, "an eager send ended with \(completion.status) (\(completion.detail))") }
        case .controlSlot(let slot):
            sendsInFlight -= 1
            control.give(back: slot)
            if !completion.isSuccess { fail(channel, "a send ended with \(completion.status) (\(completion.detail))") }
        case .rendezvousRead(let index, let chunk):
            sendsInFlight -= 1
            guard completion.isSuccess else {
                fail(channel, "a rendezvous READ ended with \(completion.status) (\(completion.detail))")
                return
            }
            // (After a failure the request completed, and its entry may
            // serve another operation already.)
            guard channel.failure == nil, requests[index].inUse, !requests[index].complete else { return }
            channel.readBytesInFlight -= chunk
            requests[index].readDone += chunk
            if requests[index].readDone == requests[index].readTotal { finishRendezvousReceive(index, on: channel) }
            issueReads(on: channel)
        case .oneSided(let ticket):
            // (A request of a connection that failed may complete after
            // its ticket was ended and handed out again: the peer tells.)
            guard oneSided.peer(ticket) == channel.rank else { return }
            if oneSided.leaveFlight(ticket) { sendsInFlight -= 1 }
            guard completion.isSuccess else {
                let reason = "a window's \(completion.opcode) ended with \(completion.status) (\(completion.detail))"
                finishOneSided(ticket, error: MPIError(.peerFailed, "the connection to rank \(channel.rank) failed: \(reason)"))
                fail(channel, reason)
                return
            }
            finishOneSided(ticket, error: nil)
        }
    }

    private func handleFrame(on channel: PeerChannel<Device>, slot: Int, length: Int) {
        let frame = receiveSlots.pointer(slot)
        let header: MessageHeader
        do { header = try MessageHeader.decode(frame, frameLength: length) } catch {
            repost(slot)
            fail(channel, "it sent \(error.description)")
            return
        }
        channel.eagerCredits += Int(header.credits)
        // A peer sends only on the connection that won any tie-break, so
        // this is its channel, even if the thread that accepted it has not
        // yet entered it by rank (the frame can be here first: then a match
        // that looks the channel up by rank must still find it).
        if peerChannels[channel.rank] == nil { peerChannels[channel.rank] = channel }
        switch header.kind {
        case .eager:
            guard let source = checkedSource(of: header, from: channel) else {
                repost(slot)
                return
            }
            let payloadLength = Int(header.length)
            if let index = matching.takePosted(context: header.context, source: source, tag: Int(header.tag)) {
                deliver(UnsafeRawPointer(frame + MessageHeader.size), length: payloadLength, into: index, source: source, tag: Int(header.tag))
                releaseEagerSlot(slot, of: channel)
                if header.synchronous { answer(.synchronousAcknowledgement, cookie: header.cookie, on: channel) }
            } else {
                statistics.unexpectedMessages += 1
                var payload = MatchingQueues.Payload.inSlot(slot)
                // Half of the peer's credits or of all slots held: copy out
                // (within the limit), so that the next frames find room.
                if channel.heldSlots >= settings.eagerSlots / 2 || heldSlots >= settings.sharedSlots / 2,
                    let copy = heldCopy(of: SendBuffer(UnsafeRawBufferPointer(start: frame + MessageHeader.size, count: payloadLength)))
                {
                    payload = copy
                    releaseEagerSlot(slot, of: channel)
                } else {
                    channel.heldSlots += 1
                    heldSlots += 1
                }
                matching.arrive(MatchingQueues.ArrivedMessage(
                    context: header.context, source: source, tag: Int(header.tag), length: payloadLength, peer: channel.rank,
                    synchronous: header.synchronous, cookie: header.cookie, payload: payload))
            }
        case .rendezvousRequest:
            repost(slot)
            guard let source = checkedSource(of: header, from: channel) else { return }
            guard header.length <= UInt64(Int.max) else {
                fail(channel, "it sent a rendezvous request of \(header.length) bytes")
                return
            }
            let message = MatchingQueues.ArrivedMessage(
                context: header.context, source: source, tag: Int(header.tag), length: Int(header.length), peer: channel.rank,
                synchronous: false, cookie: header.cookie, payload: .remote(address: header.remoteAddress, key: header.remoteKey))
            if let index = matching.takePosted(context: header.context, source: source, tag: Int(header.tag)) {
                take(message, into: index)
            } else {
                statistics.unexpectedMessages += 1
                matching.arrive(message)
            }
        case .rendezvousDone:
            repost(slot)
            if let bounceSlot = BounceCookie.slot(header.cookie) {
                guard bounceSlot < bounceReader.count, bounceReader[bounceSlot] == channel.rank else {
                    fail(channel, "it said it read bounce slot \(bounceSlot), which it was not given")
                    return
                }
                bounceReader[bounceSlot] = -1
                bounce.give(back: bounceSlot)
            } else {
                guard let index = requests.index(ofCookie: header.cookie), requests[index].operation == .send,
                    requests[index].peer == channel.rank
                else {
                    fail(channel, "it said it read the payload of a send it was not offered")
                    return
                }
                release(index)
                requests.complete(index, count: requests[index].status.count)
            }
        case .synchronousAcknowledgement:
            repost(slot)
            // (A rendezvous send, which holds a registration, ends with
            // "done", never with this.)
            guard let index = requests.index(ofCookie: header.cookie), requests[index].operation == .send, requests[index].peer == channel.rank,
                requests[index].registration == nil
            else {
                fail(channel, "it acknowledged a synchronous send it was not sent")
                return
            }
            requests.complete(index, count: requests[index].status.count)
        case .credit:
            repost(slot)
        }
        if channel.creditsToReturn >= max(1, settings.eagerSlots / 2) {
            statistics.creditFrames += 1
            answer(.credit, cookie: 0, on: channel)
        }
    }

    /// The sender's rank in the frame's communicator, if the frame's
    /// context is known and that rank is the channel's peer; otherwise
    /// the connection fails. A context this rank has not made yet is one
    /// a peer made first (it finished the agreement sooner): its messages
    /// wait among the arrived ones, which no receive can match until the
    /// communicator is made, and are checked then (`register`).
    private func checkedSource(of header: MessageHeader, from channel: PeerChannel<Device>) -> Int? {
        guard header.tag >= 0 else {
            fail(channel, "it sent a message with tag \(header.tag)")
            return nil
        }
        guard Int(header.context) < communicators.count, let communicator = communicators[Int(header.context)] else {
            if header.context >= Communicator.firstMadeContext { return Int(header.source) }
            fail(channel, "it sent a message on unknown communicator context \(header.context)")
            return nil
        }
        let source = Int(header.source)
        guard source < communicator.size, communicator.worldRanks[source] == channel.rank else {
            fail(channel, "it sent a message as rank \(source) of \(communicator), which it is not")
            return nil
        }
        return source
    }

    /// Gives an arrived message to receive `index`.
    private func take(_ message: MatchingQueues.ArrivedMessage, into index: UInt32) {
        switch message.payload {
        case .inSlot(let slot):
            deliver(UnsafeRawPointer(receiveSlots.pointer(slot) + MessageHeader.size), length: message.length, into: index, source: message.source, tag: message.tag)
            heldSlots -= 1
            guard let channel = knownChannel(message.peer) else {
                repost(slot)
                return
            }
            channel.heldSlots -= 1
            releaseEagerSlot(slot, of: channel)
            if message.synchronous { answer(.synchronousAcknowledgement, cookie: message.cookie, on: channel) }
        case .copied(let bytes):
            unexpectedBytes -= bytes.count
            bytes.withUnsafeBytes { deliver($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, length: bytes.count, into: index, source: message.source, tag: message.tag) }
            if message.synchronous, let channel = knownChannel(message.peer) {
                answer(.synchronousAcknowledgement, cookie: message.cookie, on: channel)
            }
        case .local(let sendIndex):
            var sent = SendBuffer(UnsafeRawBufferPointer(start: requests[sendIndex].sendBytes, count: message.length))
            if let layout = requests[sendIndex].layout {
                sent.layout = layout
                sent.count = requests[sendIndex].layoutCount
            }
            deliver(sent, into: index, source: message.source, tag: message.tag)
            requests.complete(sendIndex, count: message.length)
        case .remote(let address, let key):
            // (A matched probe can hold a request past its peer's failure.)
            guard let channel = knownChannel(message.peer), channel.failure == nil else {
                let failure = knownChannel(message.peer)?.failure ?? MPIError(.peerFailed, "rank \(message.peer) is not connected")
                requests.complete(index, count: 0, error: failure)
                return
            }
            startRendezvousReceive(index, of: message, address: address, key: key, on: channel)
        }
    }

    /// Copies a payload into receive `index` and completes it; a payload
    /// longer than the buffer fills it and the receive reports truncation.
    private func deliver(_ payload: UnsafeRawPointer, length: Int, into index: UInt32, source: Int, tag: Int) {
        let capacity = requests[index].capacity
        let copied = min(length, capacity)
        if copied > 0, let buffer = requests[index].buffer {
            if let layout = requests[index].layout {
                layout.scatter(from: payload, into: buffer, count: requests[index].layoutCount, packedFrom: 0, length: copied)
            } else {
                buffer.copyMemory(from: payload, byteCount: copied)
            }
        }
        statistics.copiedBytes += copied
        requests[index].status.source = source
        requests[index].status.tag = tag
        requests.complete(index, count: copied, error: length > capacity ? Self.truncation(length, capacity, source: source, tag: tag) : nil)
    }

    /// Delivers a send of this rank's own: straight from its buffer when
    /// one side is contiguous, through a packed copy when both are spread out.
    private func deliver(_ data: SendBuffer, into index: UInt32, source: Int, tag: Int) {
        if data.layout == nil || requests[index].layout == nil {
            if data.layout == nil {
                deliver(data.base ?? UnsafeRawPointer(bitPattern: 1)!, length: data.length, into: index, source: source, tag: tag)
            } else {
                // The receiver's buffer is one range: pack into it.
                let copied = min(data.length, requests[index].capacity)
                if copied > 0, let buffer = requests[index].buffer { data.copy(length: copied, to: buffer) }
                statistics.copiedBytes += copied
                requests[index].status.source = source
                requests[index].status.tag = tag
                let error = data.length > copied ? Self.truncation(data.length, copied, source: source, tag: tag) : nil
                requests.complete(index, count: copied, error: error)
            }
            return
        }
        let packed = data.packed()
        statistics.copiedBytes += packed.count
        packed.withUnsafeBytes { deliver($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, length: packed.count, into: index, source: source, tag: tag) }
    }

    private static func truncation(_ length: Int, _ capacity: Int, source: Int, tag: Int) -> MPIError {
        MPIError(.truncated, "a message of \(length) bytes from rank \(source) with tag \(tag) does not fit the receive buffer of \(capacity) bytes")
    }

    // MARK: - Rendezvous

    private func startRendezvousReceive(
        _ index: UInt32, of message: MatchingQueues.ArrivedMessage, address: UInt64, key: UInt32, on channel: PeerChannel<Device>
    ) {
        let capacity = requests[index].capacity
        let total = min(message.length, capacity)
        requests[index].peer = channel.rank
        requests[index].status.source = message.source
        requests[index].status.tag = message.tag
        requests[index].status.error = message.length > capacity ? Self.truncation(message.length, capacity, source: message.source, tag: message.tag) : nil
        requests[index].remote = (address, key)
        requests[index].cookie = message.cookie
        requests[index].readTotal = total
        requests[index].readIssued = 0
        requests[index].readDone = 0
        if total > 0 {
            do {
                requests[index].registration = try registerReceiveBuffer(index, total)
                statistics.registrations += 1
            } catch {
                // The sender still hears "done", so its send completes.
                requests[index].status.error = MPIError(error, while: "registering a receive buffer of \(total) bytes")
                requests[index].readTotal = 0
            }
        }
        if requests[index].readTotal == 0 {
            finishRendezvousReceive(index, on: channel)
            return
        }
        channel.readQueue.append(index)
        issueReads(on: channel)
    }

    /// The registration of receive `index`'s buffer: its first `total`
    /// bytes, or the whole span of its elements when they are spread out.
    private func registerReceiveBuffer(_ index: UInt32, _ total: Int) throws(FabricError) -> RegistrationLease {
        let buffer = requests[index].buffer!
        guard let layout = requests[index].layout else {
            return try registrations.acquire(buffer, length: total, access: .localWrite)
        }
        let span = layout.trueSpan(count: requests[index].layoutCount)
        return try registrations.acquire(buffer + span.lowerBound, length: span.count, access: .localWrite)
    }

    /// Posts READs of the oldest rendezvous receives while the bytes in
    /// flight on the connection stay within `readsInFlight` chunks: many
    /// small payloads at once, few chunks of a large one.
    private func issueReads(on channel: PeerChannel<Device>) {
        let limit = settings.readsInFlight * settings.rendezvousChunk
        while let index = channel.readQueue.first {
            let issued = requests[index].readIssued
            var chunk = min(settings.rendezvousChunk, requests[index].readTotal - issued)
            guard channel.readBytesInFlight == 0 || channel.readBytesInFlight + chunk <= limit else { return }
            let remote = RemoteMemory(address: requests[index].remote.address &+ UInt64(issued), key: RemoteKey(rawValue: requests[index].remote.key))
            let posted: PostResult
            do {
                let local: ScatterList
                if let layout = requests[index].layout {
                    // Spread out: the READ scatters straight into the
                    // elements, as many ranges as one work request takes.
                    (local, chunk) = try scatterList(of: index, layout, from: issued, upTo: chunk)
                } else {
                    local = .single(try requests[index].registration!.element(at: requests[index].buffer! + issued, length: chunk))
                }
                let id = WorkRequestID.rendezvousRead(index, length: chunk).encoded
                posted = try channel.queuePair.postSend(SendWorkRequest(id: id, operation: .read(remote), local: local))
            } catch {
                fail(channel, "a rendezvous READ could not be posted: \(error.message)")
                return
            }
            guard posted == .posted else {
                markStalled(channel)
                return
            }
            sendsInFlight += 1
            channel.readBytesInFlight += chunk
            requests[index].readIssued = issued + chunk
            if issued + chunk == requests[index].readTotal { channel.readQueue.removeFirst() }
        }
    }

    /// The scatter list of a READ of packed bytes from `start` (at most
    /// `limit`) into receive `index`'s spread-out elements: at most
    /// `readScatterLimit` ranges, touching ones merged; and its length.
    private func scatterList(of index: UInt32, _ layout: Datatype, from start: Int, upTo limit: Int) throws(FabricError) -> (ScatterList, Int) {
        let lease = requests[index].registration!
        let buffer = requests[index].buffer!
        var ranges: [(offset: Int, length: Int)] = []
        ranges.reserveCapacity(readScatterLimit)
        var covered = 0
        let scatterLimit = readScatterLimit
        layout.forEachRange(count: requests[index].layoutCount, packedFrom: start, length: limit) { offset, length in
            if let last = ranges.last, last.offset + last.length == offset {
                ranges[ranges.count - 1].length += length
            } else {
                guard ranges.count < scatterLimit else { return false }
                ranges.append((offset, length))
            }
            covered += length
            return true
        }
        var elements: [ScatterGatherElement] = []
        elements.reserveCapacity(ranges.count)
        for range in ranges { elements.append(try lease.element(at: buffer + range.offset, length: range.length)) }
        return (elements.count == 1 ? .single(elements[0]) : .multiple(elements), covered)
    }

    private func finishRendezvousReceive(_ index: UInt32, on channel: PeerChannel<Device>) {
        release(index)
        answer(.rendezvousDone, cookie: requests[index].cookie, on: channel)
        requests.complete(index, count: requests[index].readTotal, error: requests[index].status.error)
    }

    /// Gives the registration of request `index`'s buffer back to the
    /// cache, and the memory it was packed into to the pool.
    private func release(_ index: UInt32) {
        if let lease = requests[index].registration {
            registrations.release(lease)
            requests[index].registration = nil
        }
        if let staging = requests[index].staging {
            try? registrations.freeMemory(staging)
            requests[index].staging = nil
        }
    }

    // MARK: - Sends to this rank

    private func sendToSelf(_ data: SendBuffer, tag: Int, on communicator: Communicator, synchronous: Bool) -> Request {
        let request = requests.start(.send, peer: -1)
        let length = data.length
        requests[request.index].status = MessageStatus(source: communicator.rank, tag: tag, count: length)
        if let index = matching.takePosted(context: communicator.context, source: communicator.rank, tag: tag) {
            deliver(data, into: index, source: communicator.rank, tag: tag)
            requests.complete(request.index, count: length)
            return request
        }
        statistics.unexpectedMessages += 1
        var payload = MatchingQueues.Payload.local(request.index)
        if !synchronous, length <= settings.eagerLimit, let copy = heldCopy(of: data) {
            // Buffered like an eager message, so a blocking send to self
            // before its receive returns.
            payload = copy
            requests.complete(request.index, count: length)
        } else {
            requests[request.index].sendBytes = data.base
            if let layout = data.layout {
                requests[request.index].layout = layout
                requests[request.index].layoutCount = data.count
            }
        }
        matching.arrive(MatchingQueues.ArrivedMessage(
            context: communicator.context, source: communicator.rank, tag: tag, length: length, peer: rank,
            synchronous: false, cookie: 0, payload: payload))
        return request
    }

    /// A copy of an unexpected message's payload for the matching queue,
    /// counted; nil when it would pass the unexpected-memory limit.
    private func heldCopy(of payload: SendBuffer) -> MatchingQueues.Payload? {
        guard unexpectedBytes + payload.length <= settings.unexpectedMemoryLimit else { return nil }
        unexpectedBytes += payload.length
        statistics.copiedBytes += payload.length
        statistics.unexpectedCopies += 1
        return .copied(payload.packed())
    }

    // MARK: - Frames out

    /// Sends a header-only answer (done, acknowledgement, credit).
    private func answer(_ kind: MessageHeader.Kind, cookie: UInt64, on channel: PeerChannel<Device>) {
        var header = MessageHeader(kind: kind)
        header.cookie = cookie
        send(PeerChannel<Device>.OutgoingFrame(header: header, bounceSlot: nil, frameLength: MessageHeader.size), on: channel)
    }

    /// Sends `frame` now, or after the frames already waiting on `channel`.
    private func send(_ frame: PeerChannel<Device>.OutgoingFrame, on channel: PeerChannel<Device>) {
        guard channel.failure == nil else {
            if let slot = frame.bounceSlot { bounce.give(back: slot) }
            return
        }
        if channel.waiting.isEmpty, transmit(frame, on: channel) { return }
        channel.waiting.append(frame)
        markStalled(channel)
    }

    /// Posts `frame`; false when there is no room yet (no control slot, or
    /// a full send queue).
    private func transmit(_ frame: PeerChannel<Device>.OutgoingFrame, on channel: PeerChannel<Device>) -> Bool {
        var header = frame.header
        let returned = min(channel.creditsToReturn, Int(UInt16.max))
        header.credits = UInt16(returned)
        let id: WorkRequestID
        let element: ScatterGatherElement
        if let slot = frame.bounceSlot {
            header.encode(to: bounce.pointer(slot))
            id = .bounceSlot(slot)
            element = bounce.element(slot, length: frame.frameLength)
        } else {
            guard let slot = control.take() else { return false }
            header.encode(to: control.pointer(slot))
            id = .controlSlot(slot)
            element = control.element(slot, length: frame.frameLength)
        }
        channel.creditsToReturn -= returned
        sendsInFlight += 1
        channel.outbox.append(SendWorkRequest(id: id.encoded, operation: .send, local: .single(element)))
        if channel.outbox.count == 1 { unflushed.append(channel) }
        if channel.outbox.count >= settings.sendBatch { flush(channel) }
        return true
    }

    /// Queues a window's one-sided work request behind the frames already
    /// gathered for `channel` (it leaves in order with them).
    func postOneSided(_ request: SendWorkRequest, on channel: PeerChannel<Device>) {
        sendsInFlight += 1
        channel.outbox.append(request)
        if channel.outbox.count == 1 { unflushed.append(channel) }
        if channel.outbox.count >= settings.sendBatch { flush(channel) }
    }

    /// Posts the frames `channel` gathered, in one list (one doorbell; the
    /// software NIC sends them in as few system calls as fit).
    private func flush(_ channel: PeerChannel<Device>) {
        guard !channel.outbox.isEmpty, channel.failure == nil else { return }
        let posted: Int
        do {
            if channel.outbox.count == 1 {
                // The common case of a blocking exchange: one frame.
                posted = try channel.queuePair.postSend(channel.outbox[0]) == .posted ? 1 : 0
            } else {
                posted = try channel.outbox.withUnsafeBufferPointer { (list) throws(FabricError) -> Int in try channel.queuePair.postSend(list) }
            }
        } catch {
            fail(channel, "a send could not be posted: \(error.message)")
            return
        }
        if posted == channel.outbox.count {
            channel.outbox.removeAll(keepingCapacity: true)
        } else {
            // The send queue is full: the rest waits for completions.
            channel.outbox.removeFirst(posted)
            markStalled(channel)
        }
    }

    /// Posts what every connection gathered: at every call that waits or
    /// tests, and at the end of each progress round.
    private func flushAll() {
        while let channel = unflushed.popLast() { flush(channel) }
    }

    private func markStalled(_ channel: PeerChannel<Device>) {
        if !stalled.contains(where: { $0 === channel }) { stalled.append(channel) }
    }

    private func retryStalled() {
        let channels = stalled
        stalled.removeAll(keepingCapacity: true)
        for channel in channels where channel.failure == nil {
            flush(channel)
            while channel.outbox.isEmpty, let frame = channel.waiting.first {
                guard transmit(frame, on: channel) else { break }
                channel.waiting.removeFirst()
            }
            issueReads(on: channel)
            if !channel.waiting.isEmpty || !channel.outbox.isEmpty { markStalled(channel) }
        }
    }

    // MARK: - Slots and failures

    /// Posts receive slot `slot` on the shared receive queue again. (It
    /// never finds the queue full: it holds one receive per slot.)
    private func repost(_ slot: Int) {
        let request = ReceiveWorkRequest(id: WorkRequestID.receiveSlot(slot).encoded, local: .single(receiveSlots.element(slot, length: receiveSlots.slotSize)))
        _ = try? sharedReceiveQueue.postReceive(request)
    }

    private func releaseEagerSlot(_ slot: Int, of channel: PeerChannel<Device>) {
        repost(slot)
        channel.creditsToReturn += 1
    }

    /// The connection to `channel`'s peer is unusable: every operation that
    /// depends on it ends with an error, and later ones fail at once.
    private func fail(_ channel: PeerChannel<Device>, _ reason: String) {
        guard channel.failure == nil else { return }
        let error = MPIError(.peerFailed, "the connection to rank \(channel.rank) failed: \(reason)")
        channel.failure = error
        for index in requests.pending(on: channel.rank) {
            release(index)
            requests.complete(index, count: 0, error: error)
        }
        matching.removePosted { requests[$0].complete }
        matching.dropRemote(from: channel.rank)
        for frame in channel.waiting {
            if let slot = frame.bounceSlot { bounce.give(back: slot) }
        }
        channel.waiting.removeAll()
        for request in channel.outbox {
            switch WorkRequestID(request.id) {
            case .bounceSlot(let slot): if bounceReader[slot] < 0 { bounce.give(back: slot) }
            case .controlSlot(let slot): control.give(back: slot)
            case .oneSided: continue  // (below, with the window operations in flight)
            default: break
            }
            sendsInFlight -= 1
        }
        channel.outbox.removeAll()
        // Window operations still queued or in flight end with the error
        // and leave the requests in flight now: a WRITE the target already
        // acknowledged without a completion of its own will never complete,
        // and a ticket the window hands back may serve another peer before
        // a flushed completion comes (which then finds it ended, or not
        // this peer's, and is ignored).
        for ticket in oneSided.pending(on: channel.rank) {
            if oneSided.leaveFlight(ticket) { sendsInFlight -= 1 }
            finishOneSided(ticket, error: error)
        }
        channel.uncoveredWrites.removeAll()
        channel.readQueue.removeAll()
        for slot in bounceReader.indices where bounceReader[slot] == channel.rank {
            bounceReader[slot] = -1
            bounce.give(back: slot)
        }
    }

    private func channel(of queuePair: QueuePairNumber) -> PeerChannel<Device>? {
        if let known = channelsByQueuePair[queuePair] { return known }
        guard let found = connections.channel(ofQueuePair: queuePair) else { return nil }
        channelsByQueuePair[queuePair] = found
        // (A queue pair that lost a tie-break is findable by number until it
        // is discarded, but never becomes the peer's channel.)
        if connections.existingChannel(to: found.rank) === found { peerChannels[found.rank] = found }
        return found
    }

    /// The channel to `peer`, connecting on first use.
    func channel(toPeer peer: Int) throws(MPIError) -> PeerChannel<Device> {
        if let known = peerChannels[peer] { return known }
        let made = try connections.channel(to: peer)
        remember(made)
        return made
    }

    /// The channel to `peer` if it is connected (made by either side).
    private func knownChannel(_ peer: Int) -> PeerChannel<Device>? {
        if let known = peerChannels[peer] { return known }
        guard let found = connections.existingChannel(to: peer) else { return nil }
        remember(found)
        return found
    }

    private func remember(_ channel: PeerChannel<Device>) {
        peerChannels[channel.rank] = channel
        if channelsByQueuePair[channel.queuePair.number] == nil { channelsByQueuePair[channel.queuePair.number] = channel }
    }

    func checkOpen() throws(MPIError) {
        guard !closed else { throw MPIError(.invalidState, "the MPI runtime of rank \(rank) is finalized") }
    }

    /// What a receive or probe (`operation`) accepts, once its source and
    /// tag are checked against the communicator.
    private func checkedSelector(
        _ source: MessageSource, _ tag: MessageTag, _ communicator: Communicator, for operation: String
    ) throws(MPIError) -> MatchingQueues.Selector {
        guard source.isAny || (0..<communicator.size).contains(source.value) else {
            throw MPIError(.invalidRank, "\(operation) from rank \(source.value) of \(communicator) of \(communicator.size) ranks")
        }
        guard tag.isAny || (0...MessageTag.upperBound).contains(tag.value) else {
            throw MPIError(.invalidTag, "\(operation) with tag \(tag.value): tags run from 0 to \(MessageTag.upperBound), or any")
        }
        return MatchingQueues.Selector(context: communicator.context, source: source.value, tag: tag.value)
    }

    private func checkKnown(_ communicator: Communicator) throws(MPIError) {
        // The context names it; its size and rank tell a communicator of
        // another runtime (or a made-up one) from ours without comparing
        // every member.
        guard Int(communicator.context) < communicators.count, let known = communicators[Int(communicator.context)],
            known.rank == communicator.rank, known.size == communicator.size
        else {
            throw MPIError(.invalidArgument, "\(communicator) is not a communicator of rank \(rank)'s runtime")
        }
        guard !freedCommunicators[Int(communicator.context)] else {
            throw MPIError(.invalidArgument, "\(communicator) is freed")
        }
    }
}

/// What the runtime needs of point-to-point, whichever device it runs on:
/// the engine's operations as closures, made by `init(_:)` where the
/// device's type is known, so that each body is compiled for that device.
/// (Through a protocol, a generic class's methods run as unspecialised
/// generic code that looks up type metadata on every access: measured at a
/// third of an 8 B round trip's time.) One indirect call per operation.
struct PointToPointTransport: Sendable {
    let connectionCount: @Sendable () -> Int
    let statistics: @Sendable () -> PointToPointStatistics
    let registrationStatistics: @Sendable () -> RegistrationCacheStatistics
    let allocateMemory: @Sendable (Int) throws(MPIError) -> UnsafeMutableRawBufferPointer
    let freeMemory: @Sendable (UnsafeMutableRawPointer) throws(MPIError) -> Void
    let registeredMemoryPages: @Sendable () -> String
    let registrationCacheState: RegistrationCacheState
    let settings: PointToPointSettings
    let register: @Sendable (Communicator) -> Void
    let startSend: @Sendable (SendBuffer, Int, Int, Communicator, Bool) throws(MPIError) -> Request
    let startReceive: @Sendable (ReceiveBuffer, MessageSource, MessageTag, Communicator) throws(MPIError) -> Request
    let isComplete: @Sendable (Request) throws(MPIError) -> Bool
    let isFinished: @Sendable (Request) throws(MPIError) -> Bool
    let collect: @Sendable (Request) -> MessageStatus
    let probe: @Sendable (MessageSource, MessageTag, Communicator) throws(MPIError) -> MessageStatus?
    let wait: @Sendable (() throws(MPIError) -> Bool) throws(MPIError) -> Void
    let advance: @Sendable () -> Void
    let drain: @Sendable () throws(MPIError) -> Void
    let close: @Sendable () -> Void
    let matchedProbe: @Sendable (MessageSource, MessageTag, Communicator) throws(MPIError) -> (Message, MessageStatus)?
    let startMatchedReceive: @Sendable (Message, ReceiveBuffer) throws(MPIError) -> Request
    let cancel: @Sendable (Request) throws(MPIError) -> Void
    let free: @Sendable (Request) throws(MPIError) -> Void
    let peekStatus: @Sendable (Request) throws(MPIError) -> MessageStatus?
    let completedRequest: @Sendable (Int) -> Request
    let retire: @Sendable (Communicator) throws(MPIError) -> Void
    let checkUsable: @Sendable (Communicator) throws(MPIError) -> Void
    let flush: @Sendable () -> Void
    let registerWindowMemory: @Sendable (UnsafeMutableRawPointer, Int) throws(MPIError) -> WindowMemoryRegistration
    let startOneSided: @Sendable (OneSidedWork, Int, inout [Int]) throws(MPIError) -> Void
    let collectOneSided: @Sendable (inout [Int]) throws(MPIError) -> Bool
    let oneSidedRequest: @Sendable ([Int]) -> Request
    /// What the device's atomics are atomic with (windows choose how
    /// accumulates on their own memory are done).
    let atomics: DeviceCapabilities.AtomicSupport

    init<Device: FabricDevice>(_ engine: PointToPointEngine<Device>) {
        connectionCount = { engine.connectionCount }
        statistics = { engine.currentStatistics }
        registrationStatistics = { engine.registrations.statistics }
        allocateMemory = { (bytes) throws(MPIError) in try engine.allocateMemory(bytes) }
        freeMemory = { (address) throws(MPIError) in try engine.freeMemory(address) }
        registeredMemoryPages = { engine.registrations.poolPages }
        registrationCacheState = RegistrationCacheState(engine.registrations)
        settings = engine.settings
        register = { engine.register($0) }
        startSend = { (bytes, destination, tag, communicator, synchronous) throws(MPIError) in
            try engine.startSend(bytes, to: destination, tag: tag, on: communicator, synchronous: synchronous)
        }
        startReceive = { (buffer, source, tag, communicator) throws(MPIError) in
            try engine.startReceive(into: buffer, from: source, tag: tag, on: communicator)
        }
        isComplete = { (request) throws(MPIError) in try engine.isComplete(request) }
        isFinished = { (request) throws(MPIError) in try engine.isFinished(request) }
        collect = { engine.collect($0) }
        probe = { (source, tag, communicator) throws(MPIError) in try engine.probe(from: source, tag: tag, on: communicator) }
        wait = { (satisfied) throws(MPIError) in try engine.wait(until: satisfied) }
        advance = { engine.advance() }
        drain = { () throws(MPIError) in try engine.drain() }
        close = { engine.close() }
        matchedProbe = { (source, tag, communicator) throws(MPIError) in try engine.matchedProbe(from: source, tag: tag, on: communicator) }
        startMatchedReceive = { (message, buffer) throws(MPIError) in try engine.startReceive(message, into: buffer) }
        cancel = { (request) throws(MPIError) in try engine.cancel(request) }
        free = { (request) throws(MPIError) in try engine.free(request) }
        peekStatus = { (request) throws(MPIError) in try engine.peekStatus(request) }
        completedRequest = { engine.completedRequest(count: $0) }
        retire = { (communicator) throws(MPIError) in try engine.retire(communicator) }
        checkUsable = { (communicator) throws(MPIError) in try engine.checkUsable(communicator) }
        flush = { engine.flush() }
        registerWindowMemory = { (base, length) throws(MPIError) in try engine.registerWindowMemory(base, length: length) }
        startOneSided = { (work, peer, tickets) throws(MPIError) in try engine.startOneSided(work, to: peer, tickets: &tickets) }
        collectOneSided = { (tickets) throws(MPIError) in try engine.collectOneSided(&tickets) }
        oneSidedRequest = { engine.oneSidedRequest(for: $0) }
        atomics = engine.device.capabilities.atomics
    }
}
