import FabricCore
import Testing

@Suite("work request validation")
struct WorkRequestValidationTests {
    static let limits = QueuePairLimits(maxSendScatterEntries: 2, maxReceiveScatterEntries: 3, maxInlineData: 32)
    static let capabilities = DeviceCapabilities(
        maxMessageSize: 1 << 20, maxInlineData: 64, maxScatterEntries: 4, maxQueuePairs: 16, maxQueueDepth: 128,
        maxCompletionQueueDepth: 128, maxMemoryRegions: 16, maxMemoryRegionSize: 1 << 30, maxPrivateData: 56,
        atomics: .device, memoryModel: .pinned, oneSidedProgress: .hardware)
    static let queuePair = QueuePairNumber(rawValue: 7)
    static let remote = RemoteMemory(address: 0x10_0000, key: RemoteKey(rawValue: 9))

    static func element(_ length: UInt32, at address: UInt64 = 0x1000) -> ScatterGatherElement {
        ScatterGatherElement(address: address, length: length, localKey: LocalKey(rawValue: 1))
    }

    /// The rule `request` breaks, or nil if it passes.
    static func rule(
        _ request: SendWorkRequest, capabilities: DeviceCapabilities = capabilities
    ) -> WorkRequestRule?? {
        do {
            try WorkRequestValidation.check(request, limits: limits, capabilities: capabilities, on: queuePair)
            return .some(nil)
        } catch {
            #expect(error.kind == .invalidArgument)
            #expect(error.message.contains("\(request.id)"), "the message names the request: \(error.message)")
            return .some(error.workRequestRule)
        }
    }

    @Test("well-formed requests pass")
    func accepted() {
        let requests = [
            SendWorkRequest(id: 1, operation: .send, local: .empty),
            SendWorkRequest(id: 2, operation: .write(Self.remote), local: .multiple([Self.element(100), Self.element(200)])),
            SendWorkRequest(id: 3, operation: .send, local: .single(Self.element(32)), flags: [.inline]),
            SendWorkRequest(id: 4, operation: .read(Self.remote), local: .single(Self.element(1 << 20))),
            // Inline means nothing to a READ: no inline limit for it.
            SendWorkRequest(id: 5, operation: .read(Self.remote), local: .single(Self.element(4096)), flags: [.inline]),
            SendWorkRequest(id: 6, operation: .fetchAndAdd(Self.remote, add: 1), local: .single(Self.element(8))),
            SendWorkRequest(id: 7, operation: .compareAndSwap(RemoteMemory(address: 0x10_0008, key: RemoteKey(rawValue: 9)), compare: 1, swap: 2), local: .single(Self.element(8))),
        ]
        for request in requests {
            #expect(Self.rule(request) == .some(nil), "\(request)")
        }
    }

    @Test("each rule refuses what it names")
    func refused() {
        let unaligned = RemoteMemory(address: 0x10_0004, key: RemoteKey(rawValue: 9))
        let cases: [(SendWorkRequest, WorkRequestRule)] = [
            (SendWorkRequest(id: 11, operation: .send, local: .multiple([Self.element(1), Self.element(1), Self.element(1)])), .tooManyScatterEntries),
            (SendWorkRequest(id: 12, operation: .write(Self.remote), local: .single(Self.element(33)), flags: [.inline]), .inlineTooLarge),
            (SendWorkRequest(id: 13, operation: .sendWithImmediate(5), local: .multiple([Self.element(20), Self.element(20)]), flags: [.inline]), .inlineTooLarge),
            (SendWorkRequest(id: 14, operation: .write(Self.remote), local: .single(Self.element(1 << 20 + 1))), .messageTooLarge),
            (SendWorkRequest(id: 15, operation: .read(Self.remote), local: .multiple([Self.element(1 << 19), Self.element(1 << 19 + 1)])), .messageTooLarge),
            (SendWorkRequest(id: 16, operation: .fetchAndAdd(Self.remote, add: 1), local: .single(Self.element(4))), .atomicLocalBuffer),
            (SendWorkRequest(id: 17, operation: .fetchAndAdd(Self.remote, add: 1), local: .empty), .atomicLocalBuffer),
            (SendWorkRequest(id: 18, operation: .compareAndSwap(Self.remote, compare: 0, swap: 1), local: .multiple([Self.element(4), Self.element(4)])), .atomicLocalBuffer),
            (SendWorkRequest(id: 19, operation: .compareAndSwap(unaligned, compare: 0, swap: 1), local: .single(Self.element(8))), .atomicUnaligned),
            (SendWorkRequest(id: 20, operation: .fetchAndAdd(RemoteMemory(address: 0x10_0001, key: RemoteKey(rawValue: 9)), add: 1), local: .single(Self.element(8))), .atomicUnaligned),
        ]
        for (request, expected) in cases {
            #expect(Self.rule(request) == .some(expected), "\(request)")
        }
    }

    @Test("atomics on a device without them are refused; other requests are not")
    func noAtomics() {
        var capabilities = Self.capabilities
        capabilities.atomics = .none
        let atomic = SendWorkRequest(id: 21, operation: .fetchAndAdd(Self.remote, add: 1), local: .single(Self.element(8)))
        #expect(Self.rule(atomic, capabilities: capabilities) == .some(.atomicsUnsupported))
        let write = SendWorkRequest(id: 22, operation: .write(Self.remote), local: .single(Self.element(8)))
        #expect(Self.rule(write, capabilities: capabilities) == .some(nil))
    }

    @Test("receives: scatter count against the queue pair or the shared queue, and none on a queue pair that shares")
    func receives() throws {
        let three = ReceiveWorkRequest(id: 31, local: .multiple([Self.element(1), Self.element(1), Self.element(1)]))
        let four = ReceiveWorkRequest(id: 32, local: .multiple([Self.element(1), Self.element(1), Self.element(1), Self.element(1)]))
        try WorkRequestValidation.check(three, limits: Self.limits, usesSharedReceiveQueue: false, on: Self.queuePair)
        #expect { try WorkRequestValidation.check(four, limits: Self.limits, usesSharedReceiveQueue: false, on: Self.queuePair) } throws: {
            ($0 as? FabricError)?.workRequestRule == .tooManyScatterEntries
        }
        #expect { try WorkRequestValidation.check(three, limits: Self.limits, usesSharedReceiveQueue: true, on: Self.queuePair) } throws: {
            ($0 as? FabricError)?.workRequestRule == .receiveOnSharedQueuePair
        }
        try WorkRequestValidation.check(sharedReceive: four, maxScatterEntries: 4)
        #expect { try WorkRequestValidation.check(sharedReceive: four, maxScatterEntries: 3) } throws: { error in
            let error = error as? FabricError
            return error?.workRequestRule == .tooManyScatterEntries && error?.message.contains("shared receive queue") == true
        }
    }

    @Test("errors from elsewhere carry no rule")
    func otherErrors() {
        #expect(FabricError(.invalidState, "closed").workRequestRule == nil)
    }
}
