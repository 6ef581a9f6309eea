import CFabricShims
import FabricCore
import Glibc

/// The incoming byte stream. Headers and small payloads arrive together in
/// the staging buffer (one read for many small frames); larger payloads are
/// read straight into their registered destination with readv. Every remote
/// access is checked against the key table before a byte is placed.
extension QueuePairCore {
    mutating func receive() {
        // A read that came back short means the socket is drained: reading
        // again now would only cost a system call that says EAGAIN. And one
        // call moves at most a budget of bytes, so that completions and
        // acknowledgements get out while a stream keeps arriving.
        lastReadShort = false
        var budget = EngineTuning.receiveBudget
        if emulating, let emulation, emulation.vanished {
            swallowInput(budget: budget)
            return
        }
        while !closedForInput {
            if !inPayload {
                let available = stagedEnd - stagedStart
                if available < FrameHeader.size {
                    if lastReadShort || budget <= 0 { return }
                    let before = counters.bytesReceived
                    if !readIntoStaging(available: available) { return }
                    budget -= counters.bytesReceived - before
                    continue
                }
                let decoded = FrameHeader.decode(from: staging + stagedStart, maxMessage: EngineTuning.wireMaximumMessage)
                stagedStart += FrameHeader.size
                counters.framesReceived += 1
                switch decoded {
                case .success(let header):
                    counters.packetsReceived += packets(header.payloadLength)
                    // Predict the next frame from this one: after a large
                    // payload, read the next header alone so that its
                    // payload, if large again, goes straight into place.
                    headerOnlyRead = header.payloadLength >= EngineTuning.largePayload
                    handle(header)
                case .failure(let error):
                    protocolViolation(error.detail)
                    return
                }
                continue
            }
            // Payload bytes already staged are copied; the rest is read in place.
            let available = stagedEnd - stagedStart
            if available > 0 {
                let count = min(available, payloadRemaining)
                placeStaged(count)
                stagedStart += count
                payloadRemaining -= count
                if payloadRemaining == 0 {
                    inPayload = false
                    finishPayload()
                    continue
                }
            }
            stagedStart = 0
            stagedEnd = 0
            if lastReadShort || budget <= 0 { return }
            let before = counters.bytesReceived
            if !readPayloadInPlace() { return }
            budget -= counters.bytesReceived - before
        }
    }

    /// A vanished queue pair reads what arrives and throws it away (so that
    /// the socket does not keep waking anyone); only the stream's end is
    /// noticed.
    private mutating func swallowInput(budget: Int) {
        var left = budget
        while left > 0 && !closedForInput {
            switch SystemCalls.read(fd, staging, EngineTuning.stagingCapacity) {
            case .transferred(let count):
                left -= count
            case .endOfStream:
                connectionFailed(.peerClosedConnection)
                return
            case .wouldBlock:
                return
            case .failed:
                connectionFailed(.peerClosedConnection)
                return
            }
        }
    }

    /// True once the peer's side of the stream ended or the queue pair
    /// stopped reading.
    var closedForInput: Bool { inputEnded }

    /// Reads more bytes into the staging buffer. False when nothing more
    /// can be read now.
    private mutating func readIntoStaging(available: Int) -> Bool {
        if stagedStart > 0 {
            if available > 0 {
                staging.copyMemory(from: staging + stagedStart, byteCount: available)
            }
            stagedStart = 0
            stagedEnd = available
        }
        let want = headerOnlyRead
            ? FrameHeader.size - available
            : min(EngineTuning.readWindow, EngineTuning.stagingCapacity - stagedEnd)
        switch SystemCalls.read(fd, staging + stagedEnd, want) {
        case .transferred(let n):
            lastReadShort = n < want
            stagedEnd += n
            counters.bytesReceived += n
            return true
        case .wouldBlock:
            return false
        case .endOfStream:
            inputEnded = true
            connectionFailed(available == 0 ? .peerClosedConnection : .truncatedFrame)
            return false
        case .failed:
            inputEnded = true
            connectionFailed(.peerClosedConnection)
            return false
        }
    }

    /// One readv straight into the destination, with the staging buffer
    /// behind it for the next header. False when nothing more can be read.
    private mutating func readPayloadInPlace() -> Bool {
        var iovCount = 0
        var accessCount = 0
        var planned = 0
        if discarding {
            planned = min(payloadRemaining, EngineTuning.scratchCapacity)
            iov[0] = iovec(iov_base: scratch, iov_len: planned)
            iovCount = 1
        } else {
            var index = targets.index
            var offset = targets.offset
            while planned < payloadRemaining && index < targets.count && iovCount < EngineTuning.iovecCapacity - 1 {
                let length = min(targets.lengths[index] - offset, payloadRemaining - planned)
                if length > 0 {
                    if let record = targets.records[index] {
                        guard record.beginAccess() else {
                            releaseAccessed(accessCount)
                            placementFailed(.unknownKey)
                            return true
                        }
                        accessed[accessCount] = Unmanaged.passUnretained(record)
                        accessCount += 1
                    }
                    iov[iovCount] = iovec(iov_base: targets.bases[index].map { $0 + offset }, iov_len: length)
                    iovCount += 1
                    planned += length
                }
                index += 1
                offset = 0
            }
        }
        // Behind the payload: room for the next header only after a large
        // payload (nothing of a following payload is over-read), else a
        // window for a run of small frames.
        let tail = payloadRemaining >= EngineTuning.largePayload ? FrameHeader.size : EngineTuning.readWindow
        iov[iovCount] = iovec(iov_base: staging, iov_len: tail)
        iovCount += 1
        let result = SystemCalls.readVector(fd, iov, iovCount)
        releaseAccessed(accessCount)
        switch result {
        case .transferred(let n):
            counters.bytesReceived += n
            let payload = min(n, planned)
            if !discarding { targets.advance(payload) }
            payloadRemaining -= payload
            // In the middle of a large payload the rest is on its way: read
            // again at once (until the socket says EAGAIN, or the round's
            // budget is spent) rather than go back through the
            // application's poll for each piece.
            lastReadShort = n < planned + tail && payloadRemaining < EngineTuning.largePayload
            stagedEnd = n - payload
            if payloadRemaining == 0 {
                inPayload = false
                finishPayload()
            }
            return true
        case .wouldBlock:
            return false
        case .endOfStream:
            inputEnded = true
            connectionFailed(.truncatedFrame)
            return false
        case .failed(let code):
            if code == EFAULT {
                placementFailed(.pageNotMapped)
                return true
            }
            inputEnded = true
            connectionFailed(.peerClosedConnection)
            return false
        }
    }

    private func releaseAccessed(_ count: Int) {
        for i in 0..<count { accessed[i].takeUnretainedValue().endAccess() }
    }

    /// Copies `count` staged payload bytes to their destination, under the
    /// fault guard: a destination its owner unmapped fails the placement
    /// instead of the process.
    private mutating func placeStaged(_ count: Int) {
        if discarding { return }
        device.noteCopied(count)
        var source = staging + stagedStart
        var left = count
        while left > 0 && targets.index < targets.count {
            let index = targets.index
            let length = min(targets.lengths[index] - targets.offset, left)
            if length > 0, let base = targets.bases[index] {
                let record = targets.records[index]
                if let record, !record.beginAccess() {
                    placementFailed(.unknownKey)
                    return
                }
                let status = fabric_guarded_copy(base + targets.offset, source, length)
                record?.endAccess()
                if status != 0 {
                    placementFailed(.pageNotMapped)
                    return
                }
            }
            targets.advance(length)
            source += length
            left -= length
        }
    }

    // MARK: - Frames

    private mutating func handle(_ header: FrameHeader) {
        // Every frame carries the peer's cumulative acknowledgement.
        if !acknowledge(upTo: header.acknowledge) { return }
        if header.opcode.isRequest {
            handleRequest(header)
        } else {
            handleResponse(header)
        }
    }

    private mutating func beginPayload(_ length: Int, action: ReceiveAction, discard: Bool = false) {
        self.action = action
        discarding = discard
        payloadRemaining = length
        if length == 0 {
            finishPayload()
        } else {
            inPayload = true
        }
    }

    /// The responder side: SEND, WRITE, READ and atomic requests.
    private mutating func handleRequest(_ header: FrameHeader) {
        if header.flags.contains(.acknowledgeRequested) { acknowledgeRequested = true }
        if state != .readyToSend {
            // In error: read and drop whatever still arrives.
            beginPayload(header.payloadLength, action: .discard(nak: nil), discard: true)
            return
        }
        if header.sequence != expectedSequence {
            if let waiting = awaitingRetryOf, header.sequence != waiting {
                // After an RNR NAK, requests up to the retried one are dropped
                // (go-back-N); the requester sends them again.
                counters.outOfSequenceDropped += 1
                beginPayload(header.payloadLength, action: .discard(nak: nil), discard: true)
                return
            }
            protocolViolation(.malformedFrame)
            return
        }
        awaitingRetryOf = nil
        targets.reset()
        let length = Int(header.length)
        if length > maxMessage {
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
            if emulating, let emulation, emulation.refusesSend() {
                counters.faultsInjected += 1
                receiverNotReady(header)
                return
            }
            guard let id = takeReceive() else {
                receiverNotReady(header)
                return
            }
            guard length <= targets.total else {
                // The message does not fit: the receive fails with a length
                // error here, the requester gets an invalid-request NAK.
                targets.reset()
                pushReceiveCompletion(Completion(workRequestID: id, status: .localLengthError, opcode: .receive, byteLength: UInt32(length), queuePair: number, detail: .receiveBufferTooSmall))
                beginPayload(length, action: .discard(nak: (header.sequence, .remoteInvalidRequest, .receiveBufferTooSmall)), discard: true)
                return
            }
            let immediate: UInt32? = header.opcode == .sendWithImmediate ? header.immediate : nil
            beginPayload(length, action: .receivePlaced(id: id, opcode: .receive, immediate: immediate, length: length))
        case .write, .writeWithImmediate:
            if emulating, let emulation, emulation.refusesAccess() {
                counters.faultsInjected += 1
                counters.remoteAccessErrors += 1
                beginPayload(length, action: .discard(nak: (header.sequence, .remoteAccessError, .injectedFault)), discard: true)
                return
            }
            switch table.checkRemote(key: header.remoteKey, address: header.remoteAddress, length: UInt64(length), right: .remoteWrite, domain: domain, cache: &lastRemoteRecord) {
            case .failure(let detail):
                counters.remoteAccessErrors += 1
                beginPayload(length, action: .discard(nak: (header.sequence, .remoteAccessError, detail)), discard: true)
                return
            case .success(let record):
                if header.opcode == .writeWithImmediate {
                    // The immediate needs a receive; check before placing.
                    let placedTargets = record
                    targets.reset()
                    guard let id = takeReceive() else {
                        receiverNotReady(header)
                        return
                    }
                    targets.reset()
                    targets.append(UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress)), length: length, record: placedTargets)
                    beginPayload(length, action: .receivePlaced(id: id, opcode: .receiveWithImmediate, immediate: header.immediate, length: length))
                } else {
                    targets.append(UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress)), length: length, record: record)
                    beginPayload(length, action: .writePlaced)
                }
            }
        case .readRequest:
            if emulating, let emulation, emulation.refusesAccess() {
                counters.faultsInjected += 1
                counters.remoteAccessErrors += 1
                sendNak(header.sequence, .remoteAccessError, .injectedFault)
                return
            }
            switch table.checkRemote(key: header.remoteKey, address: header.remoteAddress, length: UInt64(length), right: .remoteRead, domain: domain, cache: &lastRemoteRecord) {
            case .failure(let detail):
                counters.remoteAccessErrors += 1
                sendNak(header.sequence, .remoteAccessError, detail)
            case .success(let record):
                var response = FrameHeader(opcode: .readResponse)
                response.sequence = header.sequence
                response.length = header.length
                acceptRequest()
                if !queueResponse(response, payload: UnsafeMutableRawPointer(bitPattern: UInt(header.remoteAddress)), length: length, record: record) {
                    tooManyOutstanding()
                }
            }
        case .fetchAndAdd, .compareAndSwap:
            targets.append(operands, length: atomicRequestPayload, record: nil)
            beginPayload(atomicRequestPayload, action: .atomicRequest(header))
        default:
            protocolViolation(.unknownOpcode)
        }
    }

    /// Takes a posted receive (own queue or shared) into `targets`.
    private mutating func takeReceive() -> UInt64? {
        if let shared = sharedReceiveQueue {
            return shared.ring.withLock { $0.take(into: &targets) }
        }
        return receives.take(into: &targets)
    }

    /// No receive posted: NAK with RNR and drop this request's payload;
    /// the requester retries after its RNR delay.
    private mutating func receiverNotReady(_ header: FrameHeader) {
        counters.receiverNotReadyNaksSent += 1
        awaitingRetryOf = header.sequence
        beginPayload(header.payloadLength, action: .discard(nak: (header.sequence, .receiverNotReadyRetryExceeded, .none)), discard: true)
    }

    /// A request was accepted: it will be acknowledged.
    private mutating func acceptRequest() {
        expectedSequence &+= 1
        if !acknowledgeOwed {
            acknowledgeOwed = true
            acknowledgeOwedSince = clock
        }
        acceptedSinceAcknowledge += 1
    }

    /// A NAK names a request that was NOT accepted: the acknowledgement it
    /// carries stops just before it.
    private mutating func sendNak(_ sequence: UInt32, _ status: CompletionStatus, _ detail: CompletionDetail) {
        var nak = FrameHeader(opcode: .negativeAcknowledge)
        nak.sequence = sequence
        nak.immediate = NakSyndrome.encode(status: status, detail: detail)
        let fatal = status != .receiverNotReadyRetryExceeded
        if !queueResponse(nak, fatal: fatal) {
            // The peer exceeded its allowance of outstanding requests.
            protocolViolation(.malformedFrame)
            return
        }
        if fatal {
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
        let finished = action
        action = .none
        discarding = false
        switch finished {
        case .none:
            break
        case .writePlaced:
            targets.reset()
            acceptRequest()
        case .receivePlaced(let id, let opcode, let immediate, let length):
            targets.reset()
            acceptRequest()
            pushReceiveCompletion(Completion(workRequestID: id, status: .success, opcode: opcode, byteLength: UInt32(length), immediate: immediate, queuePair: number))
        case .atomicRequest(let header):
            targets.reset()
            executeAtomic(header)
        case .readResponse(let position):
            targets.reset()
            let trailer = UInt32(littleEndian: operands.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            if trailer == 0 {
                responseArrived(position)
            } else if let (status, detail) = NakSyndrome.decode(trailer) {
                failRequest(position, status, detail)
            } else {
                protocolViolation(.malformedFrame)
            }
        case .atomicResponse(let position):
            targets.reset()
            responseArrived(position)
        case .discard(let nak):
            targets.reset()
            if let nak {
                sendNak(nak.sequence, nak.status, nak.detail)
            }
        }
    }

    /// Applies a remote atomic under the fault guard and queues the answer.
    private mutating func executeAtomic(_ header: FrameHeader) {
        let operand1 = UInt64(littleEndian: operands.loadUnaligned(as: UInt64.self))
        let operand2 = UInt64(littleEndian: operands.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        // A card without atomics refuses them as invalid requests.
        if device.capabilities.atomics == .none {
            sendNak(header.sequence, .remoteInvalidRequest, .operationNotSupported)
            return
        }
        if header.remoteAddress & 7 != 0 {
            sendNak(header.sequence, .remoteInvalidRequest, .unalignedAtomic)
            return
        }
        if emulating, let emulation, emulation.refusesAccess() {
            counters.faultsInjected += 1
            counters.remoteAccessErrors += 1
            sendNak(header.sequence, .remoteAccessError, .injectedFault)
            return
        }
        switch table.checkRemote(key: header.remoteKey, address: header.remoteAddress, length: 8, right: .remoteAtomic, domain: domain, cache: &lastRemoteRecord) {
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
            acceptRequest()
            var response = FrameHeader(opcode: .atomicResponse)
            response.sequence = header.sequence
            response.length = UInt32(atomicResponsePayload)
            if !queueResponse(response, atomicValue: old) {
                tooManyOutstanding()
            }
        }
    }

    /// The payload could not be placed (region revoked or unmapped): drop
    /// the rest, and fail the request the way its kind requires.
    private mutating func placementFailed(_ detail: CompletionDetail) {
        let failed = action
        discarding = true
        switch failed {
        case .writePlaced:
            counters.remoteAccessErrors += 1
            action = .discard(nak: (expectedSequence, .remoteAccessError, detail))
        case .receivePlaced(let id, let opcode, _, _):
            if opcode == .receiveWithImmediate {
                action = .discard(nak: (expectedSequence, .remoteAccessError, detail))
            } else {
                pushReceiveCompletion(Completion(workRequestID: id, status: .localProtectionError, opcode: opcode, queuePair: number, detail: .localMemoryFault))
                action = .discard(nak: (expectedSequence, .remoteOperationError, detail))
            }
        case .readResponse(let position), .atomicResponse(let position):
            sendQueue.slots[sendQueue.index(position)].status = .localProtectionError
            sendQueue.slots[sendQueue.index(position)].detail = .localMemoryFault
            action = .discard(nak: nil)
            enterError(.localProtectionError, .localMemoryFault)
        default:
            action = .discard(nak: nil)
        }
        targets.reset()
    }

    // MARK: - Requester side

    /// Cumulative acknowledgement: every request below `value` was accepted.
    /// False if the peer acknowledged something never sent.
    private mutating func acknowledge(upTo value: UInt32) -> Bool {
        let newlyAcknowledged = Int(Int32(bitPattern: value &- sequence(of: acknowledged)))
        if newlyAcknowledged <= 0 { return true }
        guard acknowledged + newlyAcknowledged <= transmitted else {
            protocolViolation(.unexpectedResponse)
            return false
        }
        acknowledged += newlyAcknowledged
        receiverNotReadyRetriesLeft = retry.receiverNotReadyRetries
        retireCompleted()
        return true
    }

    /// The responder side's answers: READ data, atomic values, ACK, NAK.
    private mutating func handleResponse(_ header: FrameHeader) {
        switch header.opcode {
        case .acknowledge:
            break
        case .disconnect:
            inputEnded = true
            connectionFailed(.disconnected)
        case .readResponse, .atomicResponse:
            guard let position = outstandingPosition(header.sequence),
                  sendQueue.slots[sendQueue.index(position)].awaitsResponse,
                  !sendQueue.slots[sendQueue.index(position)].responded
            else {
                protocolViolation(.unexpectedResponse)
                return
            }
            let slot = sendQueue.slots[sendQueue.index(position)]
            if header.opcode == .readResponse {
                guard slot.opcode == .readRequest, Int(header.length) == slot.length else {
                    protocolViolation(.unexpectedResponse)
                    return
                }
                let base = sendQueue.elementBase(position)
                for i in 0..<slot.elementCount {
                    let element = sendQueue.elements[base + i]
                    targets.append(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), length: Int(element.length), record: sendQueue.records[base + i])
                }
                targets.append(operands + 16, length: 4, record: nil)
                beginPayload(slot.length + 4, action: .readResponse(position: position))
            } else {
                guard slot.opcode == .fetchAndAdd || slot.opcode == .compareAndSwap else {
                    protocolViolation(.unexpectedResponse)
                    return
                }
                let element = sendQueue.elements[sendQueue.elementBase(position)]
                targets.append(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), length: 8, record: sendQueue.records[sendQueue.elementBase(position)])
                beginPayload(atomicResponsePayload, action: .atomicResponse(position: position))
            }
        case .negativeAcknowledge:
            guard let position = outstandingPosition(header.sequence),
                  let (status, detail) = NakSyndrome.decode(header.immediate)
            else {
                protocolViolation(.unexpectedResponse)
                return
            }
            if status == .receiverNotReadyRetryExceeded {
                counters.receiverNotReadyNaksReceived += 1
                if let left = receiverNotReadyRetriesLeft {
                    if left == 0 {
                        failRequest(position, .receiverNotReadyRetryExceeded, .none)
                        return
                    }
                    receiverNotReadyRetriesLeft = left - 1
                }
                goBack(to: position)
            } else {
                failRequest(position, status, detail)
            }
        default:
            protocolViolation(.unknownOpcode)
        }
    }

    /// The send-queue position of a request the peer answers, if it is one
    /// that was sent and not yet finished.
    private func outstandingPosition(_ sequenceNumber: UInt32) -> Int? {
        let distance = Int(Int32(bitPattern: sequenceNumber &- sequence(of: head)))
        guard distance >= 0 else { return nil }
        let position = head + distance
        guard position < transmitted else { return nil }
        return position
    }

    /// Sends everything from `position` again after the RNR delay.
    private mutating func goBack(to position: Int) {
        for p in position..<transmitted where sendQueue.slots[sendQueue.index(p)].awaitsResponse {
            outstandingReadAtomics -= 1
        }
        transmitted = position
        if acknowledged > position { acknowledged = position }
        // A request still partly on the wire finishes its frame; the peer
        // drops it as out of sequence.
        resendAt = MonotonicClock.now() &+ MonotonicClock.nanoseconds(retry.receiverNotReadyDelay)
    }

    private mutating func responseArrived(_ position: Int) {
        sendQueue.slots[sendQueue.index(position)].responded = true
        outstandingReadAtomics -= 1
        // A response implies every earlier request was accepted.
        if acknowledged <= position { acknowledged = position + 1 }
        retireCompleted()
    }

    private mutating func failRequest(_ position: Int, _ status: CompletionStatus, _ detail: CompletionDetail) {
        sendQueue.slots[sendQueue.index(position)].status = status
        sendQueue.slots[sendQueue.index(position)].detail = detail
        if status == .remoteAccessError { counters.remoteAccessErrors += 1 }
        enterError(status, detail)
    }

    /// Completes finished requests in posting order.
    mutating func retireCompleted() {
        while head < acknowledged {
            let index = sendQueue.index(head)
            let slot = sendQueue.slots[index]
            if slot.awaitsResponse && !slot.responded { return }
            if slot.flags.contains(.signaled) || slot.status != .success {
                pushSendCompletion(id: slot.id, status: slot.status, opcode: slot.completionOpcode, length: completedLength(slot), detail: slot.detail)
            }
            sendQueue.releaseRecords(head)
            head += 1
        }
    }

    func completedLength(_ slot: SendSlot) -> UInt32 {
        switch slot.opcode {
        case .fetchAndAdd, .compareAndSwap: return 8
        default: return UInt32(truncatingIfNeeded: slot.length)
        }
    }
}
