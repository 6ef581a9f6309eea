import CFabricShims
import FabricCore
import Glibc

/// The incoming byte stream: the core reads as `FrameInput` plans, places
/// payloads through `PayloadPlacement`, and hands each frame to the
/// responder side (requests) or the requester side (answers). Every remote
/// access is checked against the key table before a byte is placed.
extension QueuePairCore {
    mutating func receive() {
        // A read that came back short means the socket is drained: reading
        // again now would only cost a system call that says EAGAIN. And one
        // call moves at most a budget of bytes, so that completions and
        // acknowledgements get out while a stream keeps arriving.
        input.beginRound()
        var budget = EngineTuning.receiveBudget
        if emulation.vanished {
            swallowInput(budget: budget)
            return
        }
        while !input.ended {
            if !input.inPayload {
                guard let decoded = input.nextHeader() else {
                    if !input.mayRead(budget: budget) { return }
                    let before = counters.bytesReceived
                    if input.expectsLargeSend && sharedReceiveQueue == nil && state == .readyToSend,
                       let piece = receives.firstPieceOfOldest(), piece.length >= EngineTuning.largePayload {
                        if !readSendAhead(into: piece) { return }
                        budget -= counters.bytesReceived - before
                        continue
                    }
                    if !readIntoStaging() { return }
                    budget -= counters.bytesReceived - before
                    continue
                }
                if !handle(decoded) { return }
                continue
            }
            // Payload bytes already staged are copied; the rest is read in place.
            if input.staged > 0 {
                let (source, count) = input.takeStagedPayload()
                placeStaged(source, count)
                if !input.inPayload {
                    finishPayload()
                    continue
                }
            }
            input.clearStaging()
            if !input.mayRead(budget: budget) { return }
            let before = counters.bytesReceived
            if !readPayloadInPlace() { return }
            budget -= counters.bytesReceived - before
        }
    }

    /// Reads more bytes into the staging buffer. False when nothing more
    /// can be read now.
    private mutating func readIntoStaging() -> Bool {
        let available = input.staged
        let (into, want) = input.stagingRead()
        counters.receiveCalls += 1
        switch SystemCalls.read(fd, into, want) {
        case .transferred(let n):
            input.stagingReadReturned(n, want: want)
            counters.bytesReceived += n
            return true
        case .wouldBlock:
            return false
        case .endOfStream:
            input.ended = true
            connectionFailed(available == 0 ? .peerClosedConnection : .truncatedFrame)
            return false
        case .failed:
            input.ended = true
            connectionFailed(.peerClosedConnection)
            return false
        }
    }

    /// The header of the large SEND expected next, and as much of its
    /// payload as came with it, in one read: the header into the staging
    /// buffer, the payload straight into the oldest posted receive, where a
    /// SEND's payload starts (a read of the header alone, then one of the
    /// payload, cost one system call more per message: about 8 % of a
    /// 64 KiB one-way latency on loopback, measured by a C mimic of both
    /// ways). Until its completion a posted receive's bytes are the
    /// device's, so a frame that turns out to be something else costs only
    /// a copy of what was read ahead into the staging buffer. False when
    /// nothing more can be read now.
    private mutating func readSendAhead(into piece: (base: UnsafeMutableRawPointer, length: Int, record: Unmanaged<RegionRecord>?)) -> Bool {
        if let record = piece.record, !record._withUnsafeGuaranteedRef({ $0.beginAccess() }) { return readIntoStaging() }
        let wanted = min(piece.length, input.lastLargeSendLength, EngineTuning.readWindow)
        // Behind the payload, room for the next header (in the staging
        // buffer, past where the payload's bytes could be staged): a read
        // that does not fill it has drained the socket, so no read that
        // finds nothing follows a message that came whole.
        let tail = input.staging + FrameHeader.size + wanted
        placement.vectors[0] = iovec(iov_base: input.staging, iov_len: FrameHeader.size)
        placement.vectors[1] = iovec(iov_base: piece.base, iov_len: wanted)
        placement.vectors[2] = iovec(iov_base: tail, iov_len: FrameHeader.size)
        counters.receiveCalls += 1
        let result = SystemCalls.readVector(fd, placement.vectors, 3)
        piece.record?._withUnsafeGuaranteedRef { $0.endAccess() }
        let read: Int
        switch result {
        case .transferred(let n):
            read = n
        case .wouldBlock:
            return false
        case .endOfStream:
            input.ended = true
            connectionFailed(.peerClosedConnection)
            return false
        case .failed(let code):
            // The receive's memory is gone (EFAULT, nothing was read): the
            // SEND fails as usual when its payload is placed.
            if code == EFAULT { return readIntoStaging() }
            input.ended = true
            connectionFailed(.peerClosedConnection)
            return false
        }
        counters.bytesReceived += read
        let drained = read < FrameHeader.size + wanted + FrameHeader.size
        input.readAheadStaged(min(read, FrameHeader.size))
        if read <= FrameHeader.size {
            input.readAheadReturned(drained: drained)
            return true
        }
        // Stream bytes in the receive, then in the tail.
        let ahead = min(read - FrameHeader.size, wanted)
        let behind = read - FrameHeader.size - ahead
        guard let decoded = input.nextHeader() else { return true }
        if !handle(decoded) { return false }
        // The frame was the SEND expected, and took the receive read into:
        // its first bytes are in place.
        if input.inPayload, case .receivePlaced = placement.action, !placement.discarding,
           placement.targets.index == 0, placement.targets.offset == 0, placement.targets.count > 0,
           placement.targets.bases[0] == piece.base {
            readAheadHits += 1
            let inPlace = min(ahead, input.payloadRemaining)
            input.payloadPlacedAhead(inPlace)
            placement.placed(inPlace)
            if ahead > inPlace { input.stage(copying: piece.base + inPlace, count: ahead - inPlace) }
            input.stage(copying: tail, count: behind)
            // The rest of the payload is on its way (see payloadReadReturned).
            input.readAheadReturned(drained: drained && !input.inPayload)
            if !input.inPayload { finishPayload() }
        } else {
            readAheadMisses += 1
            input.readAheadReturned(drained: drained)
            input.stage(copying: piece.base, count: ahead)
            input.stage(copying: tail, count: behind)
        }
        return true
    }

    /// One readv straight into the destination, with the staging buffer
    /// behind it for the next header. False when nothing more can be read.
    private mutating func readPayloadInPlace() -> Bool {
        let tail = input.payloadReadTail
        let plan: PayloadPlacement.ReadPlan
        switch placement.planRead(remaining: input.payloadRemaining, staging: input.staging, tail: tail) {
        case .success(let planned):
            plan = planned
        case .failure(let detail):
            placementFailed(detail)
            return true
        }
        counters.receiveCalls += 1
        let result = SystemCalls.readVector(fd, placement.vectors, plan.vectorCount)
        placement.endRead(plan.pinnedCount)
        switch result {
        case .transferred(let n):
            counters.bytesReceived += n
            let payload = input.payloadReadReturned(n, planned: plan.planned, tail: tail)
            placement.placed(payload)
            if !input.inPayload { finishPayload() }
            return true
        case .wouldBlock:
            return false
        case .endOfStream:
            input.ended = true
            connectionFailed(.truncatedFrame)
            return false
        case .failed(let code):
            if code == EFAULT {
                placementFailed(.pageNotMapped)
                return true
            }
            input.ended = true
            connectionFailed(.peerClosedConnection)
            return false
        }
    }

    /// Copies `count` staged payload bytes to their destination (nothing
    /// when the payload is thrown away).
    private mutating func placeStaged(_ source: UnsafeMutableRawPointer, _ count: Int) {
        if placement.discarding { return }
        device.noteCopied(count)
        if let failure = placement.copy(from: source, count: count) {
            placementFailed(failure)
        }
    }

    // MARK: - Frames

    /// Counts a frame whose header was decoded and hands it on; false when
    /// the header broke the protocol (the connection is over).
    @inline(__always)
    private mutating func handle(_ decoded: Result<FrameHeader, FrameError>) -> Bool {
        counters.framesReceived += 1
        switch decoded {
        case .success(let header):
            counters.packetsReceived += packets(header.payloadLength)
            handle(header)
            return true
        case .failure(let error):
            protocolViolation(error.detail)
            return false
        }
    }

    // Inlined into `receive`, as it was before the parts: out of line it
    // costs a call per frame.
    @inline(__always)
    private mutating func handle(_ header: FrameHeader) {
        // Every frame carries the peer's cumulative acknowledgement.
        switch requester.acknowledge(upTo: header.acknowledge) {
        case .unchanged:
            break
        case .advanced:
            retireCompleted()
        case .beyondSent:
            protocolViolation(.unexpectedResponse)
            return
        }
        if header.opcode.isRequest {
            handleRequest(header)
        } else {
            handleResponse(header)
        }
    }

    private mutating func beginPayload(_ length: Int, action: ReceiveAction, discard: Bool = false) {
        placement.begin(action, discard: discard)
        if !input.expectPayload(length) { finishPayload() }
    }

    /// The responder side: SEND, WRITE, READ and atomic requests.
    private mutating func handleRequest(_ header: FrameHeader) {
        switch responder.admit(header, connected: state == .readyToSend) {
        case .inSequence:
            break
        case .discard:
            // In error: read and drop whatever still arrives.
            beginPayload(header.payloadLength, action: .discard(nak: nil), discard: true)
            return
        case .droppedOutOfSequence:
            // After an RNR NAK, requests up to the retried one are dropped
            // (go-back-N); the requester sends them again.
            counters.outOfSequenceDropped += 1
            beginPayload(header.payloadLength, action: .discard(nak: nil), discard: true)
            return
        case .violation:
            protocolViolation(.malformedFrame)
            return
        }
        placement.targets.reset()
        let length = Int(header.length)
        if length > responder.maxMessage {
            // Longer than this device carries (the peer's profile allows
            // more): refused as a card does, with an invalid-request NAK.
            switch header.opcode {
            case .readRequest:
                sendNak(header.sequence, .remoteInvalidRequest, .messageTooLong)
                return
            case .send, .sendWithImmediate, .write, .writeWithImmediate:
                beginPayload(header.payloadLength, action: .discard(nak: (header.sequence, .remoteInvalidRequest, .messageTooLong)), discard: true)
                return
            default:
                break
            }
        }
        switch header.opcode {
        case .send, .sendWithImmediate:
            if emulation.refusesSend(counters: &counters) {
                receiverNotReady(header)
                return
            }
            guard let id = takeReceive() else {
                receiverNotReady(header)
                return
            }
            guard length <= placement.targets.total else {
                // The message does not fit: the receive fails with a length
                // error here, the requester gets an invalid-request NAK.
                placement.targets.reset()
                pushReceiveCompletion(Completion(workRequestID: id, status: .localLengthError, opcode: .receive, byteLength: UInt32(length), queuePair: number, detail: .receiveBufferTooSmall))
                beginPayload(length, action: .discard(nak: (header.sequence, .remoteInvalidRequest, .receiveBufferTooSmall)), discard: true)
                return
            }
            let immediate: UInt32? = header.opcode == .sendWithImmediate ? header.immediate : nil
            beginPayload(length, action: .receivePlaced(id: id, opcode: .receive, immediate: immediate, length: length))
        case .write, .writeWithImmediate:
            if emulation.refusesAccess(counters: &counters) {
                beginPayload(length, action: .discard(nak: (header.sequence, .remoteAccessError, .injectedFault)), discard: true)
                return
            }
            switch responder.check(header, length: length, right: .remoteWrite, table: table, domain: domain) {
            case .failure(let detail):
                counters.remoteAccessErrors += 1
                beginPayload(length, action: .discard(nak: (header.sequence, .remoteAccessError, detail)), discard: true)
                return
            case .success(let record):
                if header.opcode == .writeWithImmediate {
                    // The immediate needs a receive; check before placing.
                    placement.targets.reset()
                    guard let id = takeReceive() else {
                        receiverNotReady(header)
                        return
                    }
                    placement.targets.reset()
                    placement.targets.append(UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress)), length: length, record: record)
                    beginPayload(length, action: .receivePlaced(id: id, opcode: .receiveWithImmediate, immediate: header.immediate, length: length))
                } else {
                    placement.targets.append(UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress)), length: length, record: record)
                    beginPayload(length, action: .writePlaced)
                }
            }
        case .readRequest:
            if emulation.refusesAccess(counters: &counters) {
                sendNak(header.sequence, .remoteAccessError, .injectedFault)
                return
            }
            switch responder.check(header, length: length, right: .remoteRead, table: table, domain: domain) {
            case .failure(let detail):
                counters.remoteAccessErrors += 1
                sendNak(header.sequence, .remoteAccessError, detail)
            case .success(let record):
                var response = FrameHeader(opcode: .readResponse)
                response.sequence = header.sequence
                response.length = header.length
                responder.accept(now: clock)
                if !responder.queueResponse(
                    response, payload: UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress)), length: length,
                    record: record, readyAt: emulation.readyAt(clock)) {
                    tooManyOutstanding()
                }
            }
        case .fetchAndAdd, .compareAndSwap:
            placement.targets.append(placement.operands, length: atomicRequestPayload, record: nil)
            beginPayload(atomicRequestPayload, action: .atomicRequest(header))
        default:
            protocolViolation(.unknownOpcode)
        }
    }

    /// Takes a posted receive (own queue or shared) into the placement's
    /// targets.
    private mutating func takeReceive() -> UInt64? {
        if let shared = sharedReceiveQueue {
            return shared.ring.withLock { $0.take(into: &placement.targets) }
        }
        return receives.take(into: &placement.targets)
    }

    /// No receive posted: NAK with RNR and drop this request's payload;
    /// the requester retries after its RNR delay.
    private mutating func receiverNotReady(_ header: FrameHeader) {
        counters.receiverNotReadyNaksSent += 1
        responder.refusedNotReady(header.sequence)
        beginPayload(header.payloadLength, action: .discard(nak: (header.sequence, .receiverNotReadyRetryExceeded, .none)), discard: true)
    }

    /// Queues a NAK; every NAK but RNR ends the connection.
    private mutating func sendNak(_ sequence: UInt32, _ status: CompletionStatus, _ detail: CompletionDetail) {
        if !responder.queueNak(sequence, status, detail, readyAt: emulation.readyAt(clock)) {
            // The peer exceeded its allowance of outstanding requests.
            protocolViolation(.malformedFrame)
            return
        }
        if status != .receiverNotReadyRetryExceeded {
            // A remote access error or invalid request ends the connection
            // at both ends (as rxe does): our receives are flushed too.
            enterError(.flushed, detail)
        }
    }

    /// The peer ignored the limit on outstanding reads and atomics.
    private mutating func tooManyOutstanding() {
        protocolViolation(.malformedFrame)
    }

    /// The payload is complete.
    private mutating func finishPayload() {
        switch placement.finish() {
        case .none:
            break
        case .writePlaced:
            placement.targets.reset()
            responder.accept(now: clock)
        case .receivePlaced(let id, let opcode, let immediate, let length):
            placement.targets.reset()
            responder.accept(now: clock)
            pushReceiveCompletion(Completion(workRequestID: id, status: .success, opcode: opcode, byteLength: UInt32(length), immediate: immediate, queuePair: number))
        case .atomicRequest(let header):
            placement.targets.reset()
            executeAtomic(header)
        case .readResponse(let position):
            placement.targets.reset()
            let trailer = UInt32(littleEndian: placement.operands.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            if trailer == 0 {
                responseArrived(position)
            } else if let (status, detail) = NakSyndrome.decode(trailer) {
                failRequest(position, status, detail)
            } else {
                protocolViolation(.malformedFrame)
            }
        case .atomicResponse(let position):
            placement.targets.reset()
            responseArrived(position)
        case .discard(let nak):
            placement.targets.reset()
            if let nak {
                sendNak(nak.sequence, nak.status, nak.detail)
            }
        }
    }

    /// Applies a remote atomic under the fault guard and queues the answer.
    private mutating func executeAtomic(_ header: FrameHeader) {
        let operand1 = UInt64(littleEndian: placement.operands.loadUnaligned(as: UInt64.self))
        let operand2 = UInt64(littleEndian: placement.operands.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        // A card without atomics refuses them as invalid requests.
        if device.capabilities.atomics == .none {
            sendNak(header.sequence, .remoteInvalidRequest, .operationNotSupported)
            return
        }
        if header.remoteAddress & 7 != 0 {
            sendNak(header.sequence, .remoteInvalidRequest, .unalignedAtomic)
            return
        }
        if emulation.refusesAccess(counters: &counters) {
            sendNak(header.sequence, .remoteAccessError, .injectedFault)
            return
        }
        switch responder.check(header, length: 8, right: .remoteAtomic, table: table, domain: domain) {
        case .failure(let detail):
            counters.remoteAccessErrors += 1
            sendNak(header.sequence, .remoteAccessError, detail)
        case .success(let record):
            guard record.beginAccess() else {
                sendNak(header.sequence, .remoteAccessError, .unknownKey)
                return
            }
            var old: UInt64 = 0
            let address = UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress))!
            let status = header.opcode == .fetchAndAdd
                ? fabric_guarded_fetch_add_u64(address, operand1, &old)
                : fabric_guarded_compare_swap_u64(address, operand1, operand2, &old)
            record.endAccess()
            if status != 0 {
                sendNak(header.sequence, .remoteAccessError, .pageNotMapped)
                return
            }
            responder.accept(now: clock)
            var response = FrameHeader(opcode: .atomicResponse)
            response.sequence = header.sequence
            response.length = UInt32(atomicResponsePayload)
            if !responder.queueResponse(response, atomicValue: old, readyAt: emulation.readyAt(clock)) {
                tooManyOutstanding()
            }
        }
    }

    /// The payload could not be placed (region revoked or unmapped): drop
    /// the rest, and fail the request the way its kind requires.
    private mutating func placementFailed(_ detail: CompletionDetail) {
        let failed = placement.action
        let expected = responder.expectedSequence
        placement.discarding = true
        switch failed {
        case .writePlaced:
            counters.remoteAccessErrors += 1
            placement.action = .discard(nak: (expected, .remoteAccessError, detail))
        case .receivePlaced(let id, let opcode, _, _):
            if opcode == .receiveWithImmediate {
                placement.action = .discard(nak: (expected, .remoteAccessError, detail))
            } else {
                pushReceiveCompletion(Completion(workRequestID: id, status: .localProtectionError, opcode: opcode, queuePair: number, detail: .localMemoryFault))
                placement.action = .discard(nak: (expected, .remoteOperationError, detail))
            }
        case .readResponse(let position), .atomicResponse(let position):
            requester.fail(position, .localProtectionError, .localMemoryFault)
            placement.action = .discard(nak: nil)
            enterError(.localProtectionError, .localMemoryFault)
        default:
            placement.action = .discard(nak: nil)
        }
        placement.targets.reset()
    }

    // MARK: - Requester side

    /// The responder side's answers: READ data, atomic values, ACK, NAK.
    private mutating func handleResponse(_ header: FrameHeader) {
        switch header.opcode {
        case .acknowledge:
            break
        case .disconnect:
            input.ended = true
            connectionFailed(.disconnected)
        case .readResponse, .atomicResponse:
            guard let position = requester.outstandingPosition(header.sequence),
                  requester.slot(position).awaitsResponse,
                  !requester.slot(position).responded
            else {
                protocolViolation(.unexpectedResponse)
                return
            }
            let slot = requester.slot(position)
            if header.opcode == .readResponse {
                guard slot.opcode == .readRequest, Int(header.length) == slot.length else {
                    protocolViolation(.unexpectedResponse)
                    return
                }
                let base = requester.sendQueue.elementBase(position)
                for i in 0..<slot.elementCount {
                    let element = requester.sendQueue.elements[base + i]
                    placement.targets.append(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), length: Int(element.length), record: requester.sendQueue.records[base + i])
                }
                placement.targets.append(placement.operands + 16, length: 4, record: nil)
                beginPayload(slot.length + 4, action: .readResponse(position: position))
            } else {
                guard slot.opcode == .fetchAndAdd || slot.opcode == .compareAndSwap else {
                    protocolViolation(.unexpectedResponse)
                    return
                }
                let base = requester.sendQueue.elementBase(position)
                let element = requester.sendQueue.elements[base]
                placement.targets.append(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), length: 8, record: requester.sendQueue.records[base])
                beginPayload(atomicResponsePayload, action: .atomicResponse(position: position))
            }
        case .negativeAcknowledge:
            guard let position = requester.outstandingPosition(header.sequence),
                  let (status, detail) = NakSyndrome.decode(header.immediate)
            else {
                protocolViolation(.unexpectedResponse)
                return
            }
            if status == .receiverNotReadyRetryExceeded {
                counters.receiverNotReadyNaksReceived += 1
                if !requester.receiverNotReady(at: position, now: MonotonicClock.now()) {
                    failRequest(position, .receiverNotReadyRetryExceeded, .none)
                }
            } else {
                failRequest(position, status, detail)
            }
        default:
            protocolViolation(.unknownOpcode)
        }
    }

    private mutating func responseArrived(_ position: Int) {
        requester.responseArrived(position)
        retireCompleted()
    }

    private mutating func failRequest(_ position: Int, _ status: CompletionStatus, _ detail: CompletionDetail) {
        requester.fail(position, status, detail)
        if status == .remoteAccessError { counters.remoteAccessErrors += 1 }
        enterError(status, detail)
    }

    /// Completes finished requests in posting order.
    @inline(__always)
    mutating func retireCompleted() {
        while requester.oldestFinished {
            let slot = requester.slot(requester.head)
            if slot.flags.contains(.signaled) || slot.status != .success {
                pushSendCompletion(id: slot.id, status: slot.status, opcode: slot.completionOpcode, length: Requester.completedLength(slot), detail: slot.detail)
            }
            requester.retireOldest()
        }
    }
}
