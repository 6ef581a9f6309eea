import Fabric
import FabricTestSupport
import Glibc
import Testing

/// Every error status the fabric API promises, produced for real.
@Suite("errors and the error state")
struct ErrorTests {
    enum BadAccess: String, CaseIterable, Sendable {
        case unknownKey, outOfBounds, rightNotGranted, otherDomain, deregistered
    }

    @Test("a bad remote access fails at the initiator, flushes the target, and touches nothing", arguments: ConformanceBackend.available, BadAccess.allCases)
    func remoteAccessError(_ backend: ConformanceBackend, _ kind: BadAccess) throws {
        try remoteAccessError(on: backend.opener, kind)
    }

    private func remoteAccessError<Backend: BackendOpener>(on backend: Backend, _ kind: BadAccess) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(4096, fill: 0xAA)
        let readOnly = try pair.server.register(target, [.localWrite, .remoteRead])
        let writable = try pair.server.register(target, .all)
        let otherDomain = try pair.server.device.allocateProtectionDomain()
        let foreign = try pair.server.device.registerMemory(target.pointer, length: 4096, access: .all, in: otherDomain)
        let doomed = try pair.server.register(target, .all)
        let doomedRemote = doomed.remote()
        try doomed.deregister()
        let receiveBuffer = Buffer(64)
        let receiveRegion = try pair.server.register(receiveBuffer)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 5, local: .single(receiveRegion.element())))

        let remote: RemoteMemory
        let expectedDetail: CompletionDetail
        switch kind {
        case .unknownKey:
            remote = RemoteMemory(address: writable.remote().address, key: RemoteKey(rawValue: writable.remoteKey.rawValue ^ 0x5A5A))
            expectedDetail = .unknownKey
        case .outOfBounds:
            remote = writable.remote(offset: 4000)
            expectedDetail = .outOfBounds
        case .rightNotGranted:
            remote = readOnly.remote()
            expectedDetail = .accessNotGranted
        case .otherDomain:
            remote = foreign.remote()
            expectedDetail = .keyOfAnotherProtectionDomain
        case .deregistered:
            remote = doomedRemote
            expectedDetail = .unknownKey
        }
        let source = Buffer(200, fill: 0x11)
        let sourceRegion = try pair.client.register(source)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(remote), local: .single(sourceRegion.element())))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .empty))
        let failed = try pair.client.nextSend()
        #expect(failed.workRequestID == 1 && failed.status == .remoteAccessError, "\(failed)")
        #expect(backend.hasDetail(failed, expectedDetail), "\(failed)")
        let flushed = try pair.client.nextSend()
        #expect(flushed.workRequestID == 2 && flushed.status == .flushed)
        let targetFlushed = try pair.server.nextReceive()
        #expect(targetFlushed.workRequestID == 5 && targetFlushed.status == .flushed)
        if !backend.reportsDetail {
            // A card names no cause; the verbs backend says what a flush implies.
            #expect(flushed.detail == .queuePairInError && targetFlushed.detail == .queuePairInError, "\(flushed), \(targetFlushed)")
        }
        #expect(pair.client.queuePair.state == .error)
        #expect(pair.server.queuePair.state == .error)
        // Nothing of the payload reached memory.
        #expect((0..<4096).allSatisfy { target.pointer.load(fromByteOffset: $0, as: UInt8.self) == 0xAA })
        // Posting to a queue pair in error completes as flushed.
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 3, operation: .send, local: .empty))
        let late = try pair.client.nextSend()
        #expect(late.workRequestID == 3 && late.status == .flushed)
        _ = (readOnly, foreign)
    }

    @Test("READ and atomics without the right fail with a remote access error", arguments: ConformanceBackend.available)
    func readAndAtomicRights(_ backend: ConformanceBackend) throws {
        try readAndAtomicRights(on: backend.opener)
    }

    private func readAndAtomicRights<Backend: BackendOpener>(on backend: Backend) throws {
        for operation in ["read", "atomic"] {
            let pair = try connectedPair(backend)
            let target = Buffer(64)
            let region = try pair.server.register(target, [.localWrite, .remoteWrite])
            let local = Buffer(8)
            let localRegion = try pair.client.register(local)
            let op: SendOperation = operation == "read" ? .read(region.remote()) : .fetchAndAdd(region.remote(), add: 1)
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: op, local: .single(localRegion.element())))
            let completion = try pair.client.nextSend()
            #expect(completion.status == .remoteAccessError && backend.hasDetail(completion, .accessNotGranted), "\(operation): \(completion)")
            #expect(target.word() == 0)
        }
    }

    @Test("an unaligned atomic is refused at posting, naming the rule", arguments: ConformanceBackend.available)
    func unalignedAtomic(_ backend: ConformanceBackend) throws {
        try unalignedAtomic(on: backend.opener)
    }

    private func unalignedAtomic<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(64)
        let region = try pair.server.register(target)
        let local = Buffer(8)
        let localRegion = try pair.client.register(local)
        for operation: SendOperation in [.compareAndSwap(region.remote(offset: 4), compare: 0, swap: 1), .fetchAndAdd(region.remote(offset: 1), add: 1)] {
            let request = SendWorkRequest(id: 1, operation: operation, local: .single(try localRegion.element()))
            #expect { _ = try pair.client.queuePair.postSend(request) } throws: { error in
                let error = error as? FabricError
                return error?.kind == .invalidArgument && error?.workRequestRule == .atomicUnaligned
            }
        }
        // Nothing went out: the queue pair still works, the target is untouched.
        #expect(pair.client.queuePair.state == .readyToSend)
        let aligned = SendWorkRequest(id: 2, operation: .fetchAndAdd(region.remote(offset: 8), add: 5), local: .single(try localRegion.element()))
        _ = try pair.client.queuePair.postSend(aligned)
        let completion = try pair.client.nextSend()
        #expect(completion.workRequestID == 2 && completion.status == .success, "\(completion)")
        #expect(target.word(0) == 0 && target.word(8) == 5)
    }

    @Test("malformed requests are refused at posting with the rule they broke", arguments: ConformanceBackend.available)
    func malformedRequests(_ backend: ConformanceBackend) throws {
        try malformedRequests(on: backend.opener)
    }

    private func malformedRequests<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let limits = pair.client.queuePair.limits
        let buffer = Buffer(4096)
        let region = try pair.client.register(buffer)
        let element = try region.element(offset: 0, length: 8)
        let cases: [(SendWorkRequest, WorkRequestRule)] = [
            (SendWorkRequest(id: 1, operation: .send, local: .multiple(Array(repeating: element, count: limits.maxSendScatterEntries + 1))), .tooManyScatterEntries),
            (SendWorkRequest(id: 2, operation: .send, local: .single(try region.element(offset: 0, length: limits.maxInlineData + 1)), flags: [.signaled, .inline]), .inlineTooLarge),
            (SendWorkRequest(id: 3, operation: .fetchAndAdd(region.remote(), add: 1), local: .single(try region.element(offset: 0, length: 16))), .atomicLocalBuffer),
            (SendWorkRequest(id: 4, operation: .compareAndSwap(region.remote(), compare: 0, swap: 1), local: .empty), .atomicLocalBuffer),
        ]
        for (request, rule) in cases {
            #expect { _ = try pair.client.queuePair.postSend(request) } throws: { error in
                (error as? FabricError)?.workRequestRule == rule
            }
        }
        let receive = ReceiveWorkRequest(id: 5, local: .multiple(Array(repeating: element, count: limits.maxReceiveScatterEntries + 1)))
        #expect { _ = try pair.client.queuePair.postReceive(receive) } throws: { error in
            (error as? FabricError)?.workRequestRule == .tooManyScatterEntries
        }
        // None of them reached the queue pair.
        #expect(pair.client.queuePair.state == .readyToSend)
        #expect(pair.client.nothingCompletes(pair.client.sendCQ, for: .milliseconds(20)) == nil)
    }

    @Test("a bad local key is a local protection error", arguments: ConformanceBackend.available)
    func localProtection(_ backend: ConformanceBackend) throws {
        try localProtection(on: backend.opener)
    }

    private func localProtection<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let source = Buffer(64)
        let region = try pair.client.register(source)
        let bad = ScatterGatherElement(address: try region.element().address, length: 64, localKey: LocalKey(rawValue: region.localKey.rawValue ^ 1))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 9, operation: .send, local: .single(bad)))
        let completion = try pair.client.nextSend()
        #expect(completion.workRequestID == 9 && backend.localProtectionStatuses.contains(completion.status), "\(completion)")
        #expect(pair.client.queuePair.state == .error)
        // Beyond the region's end.
        let pair2 = try connectedPair(backend)
        let region2 = try pair2.client.register(source)
        _ = try pair2.client.queuePair.postSend(SendWorkRequest(id: 10, operation: .send, local: .single(region2.element(offset: 32, length: 64))))
        let completion2 = try pair2.client.nextSend()
        #expect(backend.localProtectionStatuses.contains(completion2.status) && backend.hasDetail(completion2, .outOfBounds), "\(completion2)")
    }

    @Test("a send with no posted receive fails after its RNR retries", arguments: ConformanceBackend.available)
    func receiverNotReady(_ backend: ConformanceBackend) throws {
        try receiverNotReady(on: backend.opener)
    }

    private func receiverNotReady<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend, retry: RetryPolicy(receiverNotReadyRetries: 2, receiverNotReadyDelay: .milliseconds(1)))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .empty))
        let completion = try pair.client.nextSend()
        #expect(completion.status == .receiverNotReadyRetryExceeded, "\(completion)")
        if let queuePair = pair.client.queuePair as? TCPQueuePair {
            #expect(queuePair.counters.receiverNotReadyNaksReceived == 3)
        }
    }

    @Test("RNR retries deliver once a receive is posted, in order", arguments: ConformanceBackend.available)
    func receiverNotReadyRecovers(_ backend: ConformanceBackend) throws {
        try receiverNotReadyRecovers(on: backend.opener)
    }

    private func receiverNotReadyRecovers<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend, retry: RetryPolicy(receiverNotReadyRetries: nil, receiverNotReadyDelay: .milliseconds(2)))
        let target = Buffer(64)
        let region = try pair.server.register(target)
        let source = Buffer(16)
        source.setWord(1, 0)
        source.setWord(2, 8)
        let sourceRegion = try pair.client.register(source)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(sourceRegion.element(offset: 0, length: 8))))
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .single(sourceRegion.element(offset: 8, length: 8))))
        #expect(pair.client.nothingCompletes(pair.client.sendCQ, for: .milliseconds(30)) == nil)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 10, local: .single(region.element(offset: 0, length: 8))))
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 11, local: .single(region.element(offset: 8, length: 8))))
        let first = try pair.server.nextReceive()
        let second = try pair.server.nextReceive()
        #expect(first.workRequestID == 10 && first.status == .success)
        #expect(second.workRequestID == 11 && second.status == .success)
        #expect(target.word(0) == 1 && target.word(8) == 2)
        #expect(try pair.client.nextSend().workRequestID == 1)
        #expect(try pair.client.nextSend().workRequestID == 2)
        if let queuePair = pair.server.queuePair as? TCPQueuePair {
            #expect(queuePair.counters.receiverNotReadyNaksSent >= 1)
        }
    }

    @Test("a message longer than the receive fails at both ends", arguments: ConformanceBackend.available)
    func receiveTooSmall(_ backend: ConformanceBackend) throws {
        try receiveTooSmall(on: backend.opener)
    }

    private func receiveTooSmall<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(16)
        let region = try pair.server.register(target)
        _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 3, local: .single(region.element())))
        let source = Buffer(100)
        let sourceRegion = try pair.client.register(source)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(sourceRegion.element())))
        let received = try pair.server.nextReceive()
        let sent = try pair.client.nextSend()
        if backend.reportsDetail {
            #expect(received.workRequestID == 3 && received.status == .localLengthError, "\(received)")
            #expect(sent.status == .remoteInvalidRequest && sent.detail == .receiveBufferTooSmall, "\(sent)")
        } else {
            // rxe answers with a remote operation error and fails the
            // receive as a local queue pair operation error
            // (docs/verbs-backend.md lists the differences).
            #expect(received.workRequestID == 3 && [.localLengthError, .localQueuePairOperationError].contains(received.status), "\(received)")
            #expect([.remoteInvalidRequest, .remoteOperationError].contains(sent.status), "\(sent)")
        }
    }

    @Test("a full send queue refuses the post without an error", arguments: ConformanceBackend.available)
    func queueFull(_ backend: ConformanceBackend) throws {
        try queueFull(on: backend.opener)
    }

    private func queueFull<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend, limits: QueuePairLimits(sendQueueDepth: 4), retry: RetryPolicy(receiverNotReadyRetries: nil))
        for id in 0..<4 {
            #expect(try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(id), operation: .send, local: .empty)) == .posted)
        }
        #expect(try pair.client.queuePair.postSend(SendWorkRequest(id: 4, operation: .send, local: .empty)) == .wouldBlock)
    }

    @Test("shapes a queue pair cannot take are refused when posting", arguments: ConformanceBackend.available)
    func refusedShapes(_ backend: ConformanceBackend) throws {
        try refusedShapes(on: backend.opener)
    }

    private func refusedShapes<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend, limits: QueuePairLimits(maxSendScatterEntries: 2, maxInlineData: 16))
        let buffer = Buffer(64)
        let region = try pair.client.register(buffer)
        let element = try region.element(offset: 0, length: 8)
        #expect(throws: FabricError.self) {
            try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .multiple([element, element, element])))
        }
        #expect(throws: FabricError.self) {
            try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .send, local: .single(region.element(offset: 0, length: 32)), flags: [.inline]))
        }
        #expect(throws: FabricError.self) {
            try pair.client.queuePair.postSend(SendWorkRequest(id: 3, operation: .fetchAndAdd(RemoteMemory(address: 0, key: RemoteKey(rawValue: 1)), add: 1), local: .single(region.element(offset: 0, length: 16))))
        }
        #expect(pair.client.queuePair.state == .readyToSend)
    }

    @Test(
        "memory taken away under a registration (mapped again with no access) gives access errors, not crashes",
        .disabled(if: underThreadSanitizer, "the thread sanitizer defers signals, so the fault guard's jump out of a faulting copy cannot work"),
        arguments: ConformanceBackend.available, ["write", "read", "atomic", "receive"])
    func unmappedRegion(_ backend: ConformanceBackend, operation: String) throws {
        try unmappedRegion(on: backend.opener, operation: operation)
    }

    private func unmappedRegion<Backend: BackendOpener>(on backend: Backend, operation: String) throws {
        let pair = try connectedPair(backend)
        let size = 1 << 16
        guard let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mapping != MAP_FAILED else {
            throw TestFailure("mmap failed")
        }
        let region = try pair.server.device.registerMemory(mapping, length: size, access: .all, in: pair.server.domain)
        if operation == "receive" {
            _ = try pair.server.queuePair.postReceive(ReceiveWorkRequest(id: 1, local: .single(region.element())))
        }
        // Take the pages away. munmap would let another test's allocation
        // land on the range at once (tests run in parallel); mapping it again
        // with no access keeps it reserved and faults every touch, which is
        // what the NIC meets after an munmap: EFAULT from system calls, a
        // fault in its own copies and atomics.
        guard mmap(mapping, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == mapping else {
            throw TestFailure("mmap MAP_FIXED failed")
        }
        defer { munmap(mapping, size) }
        let local = Buffer(size)
        let localRegion = try pair.client.register(local)
        let request: SendWorkRequest
        switch operation {
        case "write": request = SendWorkRequest(id: 1, operation: .write(region.remote()), local: .single(try localRegion.element()))
        case "read": request = SendWorkRequest(id: 1, operation: .read(region.remote()), local: .single(try localRegion.element()))
        case "atomic": request = SendWorkRequest(id: 1, operation: .fetchAndAdd(region.remote(), add: 1), local: .single(try localRegion.element(offset: 0, length: 8)))
        default: request = SendWorkRequest(id: 1, operation: .send, local: .single(try localRegion.element()))
        }
        _ = try pair.client.queuePair.postSend(request)
        let completion = try pair.client.nextSend()
        if pair.server.device.capabilities.memoryModel == .pinned {
            // The device pinned the pages at registration and keeps using
            // them: nothing fails, and the bytes go to pages the process no
            // longer sees (the registration cache's hazard, tested below).
            #expect(completion.status == .success, "\(completion)")
            if operation == "receive" { #expect(try pair.server.nextReceive().status == .success) }
        } else if operation == "receive" {
            #expect(completion.status == .remoteOperationError, "\(completion)")
            let received = try pair.server.nextReceive()
            #expect(received.status == .localProtectionError, "\(received)")
        } else {
            #expect(completion.status == .remoteAccessError && completion.detail == .pageNotMapped, "\(completion)")
        }
        try region.deregister()
    }

    @Test("a peer that disconnects mid-transfer completes everything outstanding", arguments: ConformanceBackend.available)
    func peerDisconnects(_ backend: ConformanceBackend) throws {
        try peerDisconnects(on: backend.opener)
    }

    private func peerDisconnects<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend, limits: QueuePairLimits(sendQueueDepth: 64))
        let target = Buffer(8 << 20)
        let region = try pair.server.register(target)
        let source = Buffer(8 << 20)
        let sourceRegion = try pair.client.register(source)
        for id in 0..<16 {
            _ = try pair.client.queuePair.postSend(SendWorkRequest(id: UInt64(id), operation: .write(region.remote()), local: .single(sourceRegion.element())))
        }
        pair.server.queuePair.disconnect()
        var statuses: [CompletionStatus] = []
        for _ in 0..<16 { statuses.append(try pair.client.nextSend().status) }
        #expect(statuses.contains { $0 != .success })
        #expect(statuses.allSatisfy { [.success, .flushed, .transportRetryExceeded].contains($0) })
        #expect(pair.client.queuePair.state == .error)
        var sawPeerGone = false
        while let event = pair.client.device.pollAsyncEvent() {
            if event.kind == .peerGone || event.kind == .queuePairFatal { sawPeerGone = true }
        }
        #expect(sawPeerGone)
    }
}

@Suite("key revocation")
struct KeyRevocationTests {
    @Test("a key used a moment ago is refused once deregistered, even over the same range", arguments: ConformanceBackend.available)
    func revokedAfterUse(_ backend: ConformanceBackend) throws {
        try revokedAfterUse(on: backend.opener)
    }

    private func revokedAfterUse<Backend: BackendOpener>(on backend: Backend) throws {
        let pair = try connectedPair(backend)
        let target = Buffer(4096, fill: 0)
        let region = try pair.server.register(target)
        let source = Buffer(64, fill: 7)
        let sourceRegion = try pair.client.register(source)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 1, operation: .write(region.remote()), local: .single(sourceRegion.element())))
        #expect(try pair.client.nextSend().status == .success)
        let oldRemote = region.remote()
        try region.deregister()
        // The same range registered again gets a new key; the old one stays dead.
        let again = try pair.server.register(target)
        #expect(again.remoteKey != oldRemote.key)
        target.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        _ = try pair.client.queuePair.postSend(SendWorkRequest(id: 2, operation: .write(oldRemote), local: .single(sourceRegion.element())))
        let refused = try pair.client.nextSend()
        #expect(refused.status == .remoteAccessError && backend.hasDetail(refused, .unknownKey), "\(refused)")
        #expect((0..<4096).allSatisfy { target.pointer.load(fromByteOffset: $0, as: UInt8.self) == 0 })
        // A local key is revoked the same way.
        let pair2 = try connectedPair(backend)
        let local = try pair2.client.register(source)
        let element = try local.element()
        let remoteBuffer = Buffer(64)
        let remote = try pair2.server.register(remoteBuffer)
        _ = try pair2.client.queuePair.postSend(SendWorkRequest(id: 3, operation: .write(remote.remote()), local: .single(element)))
        #expect(try pair2.client.nextSend().status == .success)
        try local.deregister()
        _ = try pair2.client.queuePair.postSend(SendWorkRequest(id: 4, operation: .write(remote.remote()), local: .single(element)))
        let localRefused = try pair2.client.nextSend()
        #expect(backend.localProtectionStatuses.contains(localRefused.status), "\(localRefused)")
    }
}
