import FabricCore
import Glibc

/// The outgoing byte stream: requests from the send queue, the responder's
/// frames, acknowledgements. Payloads leave from registered memory through
/// sendmsg with an iovec per piece; several frames share one call.
extension QueuePairCore {
    /// Whether the next waiting request may go out now.
    private func mayTransmit(_ position: Int, outstanding: Int) -> Bool {
        guard state == .readyToSend, resendAt == 0, position < tail else { return false }
        let slot = sendQueue.slots[sendQueue.index(position)]
        if slot.flags.contains(.fence) && outstanding > 0 { return false }
        if slot.awaitsResponse && outstanding >= maxOutstandingReads { return false }
        return true
    }

    /// Appends the iovecs of `item` from byte `skip` on; returns the item's
    /// wire length, or nil if its memory could not be claimed (a request
    /// whose region was deregistered: it fails before any byte is sent).
    /// `complete` turns false when not all of the item's pieces fit in the
    /// iovec array: nothing may follow it in this batch.
    private mutating func appendSegments(_ item: OutputItem, skip: Int, iovCount: inout Int, accessCount: inout Int, complete: inout Bool) -> Int? {
        var skipLeft = skip
        var total = 0
        func add(_ pointer: UnsafeMutableRawPointer?, _ length: Int, _ iov: UnsafeMutablePointer<iovec>, _ iovCount: inout Int, _ skipLeft: inout Int, _ total: inout Int) {
            total += length
            if skipLeft >= length { skipLeft -= length; return }
            iov[iovCount] = iovec(iov_base: pointer.map { $0 + skipLeft }, iov_len: length - skipLeft)
            skipLeft = 0
            iovCount += 1
        }
        switch item {
        case .request(let position):
            let slot = sendQueue.slots[sendQueue.index(position)]
            let header = sendQueue.header(position)
            let carriesPayload = slot.opcode == .send || slot.opcode == .sendWithImmediate || slot.opcode == .write || slot.opcode == .writeWithImmediate
            // An inline payload sits right behind its header: one piece.
            let inlinePayload = carriesPayload && slot.flags.contains(.inline)
            let headerLength: Int
            if slot.opcode == .fetchAndAdd || slot.opcode == .compareAndSwap {
                headerLength = FrameHeader.size + atomicRequestPayload
            } else {
                headerLength = inlinePayload ? FrameHeader.size + slot.length : FrameHeader.size
            }
            add(header, headerLength, iov, &iovCount, &skipLeft, &total)
            if carriesPayload && !inlinePayload {
                let base = sendQueue.elementBase(position)
                for i in 0..<slot.elementCount {
                    let element = sendQueue.elements[base + i]
                    if element.length == 0 { continue }
                    if let record = sendQueue.records[base + i] {
                        guard record.beginAccess() else {
                            return nil
                        }
                        accessed[accessCount] = Unmanaged.passUnretained(record)
                        accessCount += 1
                    }
                    add(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), Int(element.length), iov, &iovCount, &skipLeft, &total)
                }
            }
        case .response(let index):
            let item = responses.items[index]
            let buffer = responses.buffer(index)
            let opcode = WireOpcode(rawValue: buffer.load(fromByteOffset: 1, as: UInt8.self))
            switch opcode {
            case .readResponse:
                add(buffer, FrameHeader.size, iov, &iovCount, &skipLeft, &total)
                if item.payloadLength > 0 {
                    var usable = item.payload != nil
                    if usable, let record = item.record {
                        if record.beginAccess() {
                            accessed[accessCount] = Unmanaged.passUnretained(record)
                            accessCount += 1
                        } else {
                            // Deregistered since the check: send zeros and say so.
                            markResponseFailed(index, detail: .unknownKey)
                            usable = false
                        }
                    }
                    if usable {
                        add(item.payload, item.payloadLength, iov, &iovCount, &skipLeft, &total)
                    } else {
                        var left = item.payloadLength
                        while left > 0 {
                            let piece = min(left, 65536)
                            if skipLeft >= piece || iovCount < EngineTuning.iovecCapacity - 2 {
                                add(zeroPage, piece, iov, &iovCount, &skipLeft, &total)
                            } else {
                                total += piece
                                complete = false
                            }
                            left -= piece
                        }
                    }
                }
                if complete {
                    add(buffer + 40, 4, iov, &iovCount, &skipLeft, &total)
                } else {
                    total += 4
                }
            case .atomicResponse:
                add(buffer, FrameHeader.size + atomicResponsePayload, iov, &iovCount, &skipLeft, &total)
            default:
                add(buffer, FrameHeader.size, iov, &iovCount, &skipLeft, &total)
            }
        case .standaloneAck, .disconnect:
            add(controlHeader, FrameHeader.size, iov, &iovCount, &skipLeft, &total)
        }
        return total
    }

    /// A READ response whose memory is gone: zeros, and a trailer that
    /// turns the response into a remote access error at the requester.
    mutating func markResponseFailed(_ index: Int, detail: CompletionDetail) {
        responses.items[index].record = nil
        responses.items[index].payload = nil
        responses.items[index].fatal = true
        responses.buffer(index).storeBytes(
            of: NakSyndrome.encode(status: .remoteAccessError, detail: detail).littleEndian,
            toByteOffset: 40, as: UInt32.self)
    }

    private func headerPointer(_ item: OutputItem) -> UnsafeMutableRawPointer {
        switch item {
        case .request(let position): return sendQueue.header(position)
        case .response(let index): return responses.buffer(index)
        case .standaloneAck, .disconnect: return controlHeader
        }
    }

    /// Writes as much of the pending output as the socket takes.
    @inline(__always)
    mutating func flushOutput(standaloneAcknowledge: Bool = false) {
        // Two specializations: the plain socket, where every question to
        // the link is answered at compile time, and the emulated link.
        if emulating, let emulation {
            flushOutput(through: emulation, standaloneAcknowledge: standaloneAcknowledge)
        } else {
            flushOutput(through: DirectLink(), standaloneAcknowledge: standaloneAcknowledge)
        }
    }

    @inline(__always)
    private mutating func flushOutput<Link: OutgoingLink>(through link: Link, standaloneAcknowledge: Bool) {
        var wantAcknowledge = standaloneAcknowledge && acknowledgeOwed
        var budget = EngineTuning.transmitBudget
        let now = link.beginRound()
        if link.isShaped { waitingForLink = false }
        while !socketShut && budget > 0 {
            if link.vanished {
                sendIntoVoid()
                return
            }
            // Build a batch without changing state: the current partial
            // frame, then responses, then requests that may go.
            var iovCount = 0
            var accessCount = 0
            var count = 0
            var freshFrom = 0
            var outstanding = outstandingReadAtomics
            var blockedRequest: Int? = nil
            var complete = true
            if let current {
                guard let length = appendSegments(current, skip: currentOffset, iovCount: &iovCount, accessCount: &accessCount, complete: &complete) else {
                    releaseAccessed(accessCount)
                    failCurrentRequest()
                    return
                }
                batch[0] = current
                batchLengths[0] = length - currentOffset
                count = 1
                freshFrom = 1
            }
            var responseIndex = (current.map { if case .response = $0 { return 1 } else { return 0 } } ?? 0)
            while complete && count < EngineTuning.batchCapacity && responseIndex < responses.count && iovCount < EngineTuning.iovecCapacity - 4 {
                var index = responses.head + responseIndex
                if index >= responses.depth { index -= responses.depth }
                if !link.mayRespond(readyAt: responses.items[index].readyAt, now: now) { break }
                let item = OutputItem.response(index: index)
                guard let length = appendSegments(item, skip: 0, iovCount: &iovCount, accessCount: &accessCount, complete: &complete) else { break }
                batch[count] = item
                batchLengths[count] = length
                count += 1
                responseIndex += 1
            }
            var position = transmitted
            var lostForGood: Int? = nil
            requests: while complete && count < EngineTuning.batchCapacity && iovCount < EngineTuning.iovecCapacity - sendQueue.maxElements - 2
                    && mayTransmit(position, outstanding: outstanding) {
                switch link.admit(position: position, sendQueue.slots[sendQueue.index(position)], now: now, counters: &counters) {
                case .go: break
                case .hold, .vanish: break requests
                case .retriesExhausted: lostForGood = position; break requests
                }
                let item = OutputItem.request(position: position)
                let before = iovCount
                guard let length = appendSegments(item, skip: 0, iovCount: &iovCount, accessCount: &accessCount, complete: &complete) else {
                    iovCount = before
                    blockedRequest = position
                    break
                }
                if sendQueue.slots[sendQueue.index(position)].awaitsResponse { outstanding += 1 }
                batch[count] = item
                batchLengths[count] = length
                count += 1
                position += 1
            }
            if count == 0 && wantAcknowledge && state == .readyToSend
                && link.mayRespond(readyAt: acknowledgeOwedSince, now: now) {
                var header = FrameHeader(opcode: .acknowledge)
                header.acknowledge = expectedSequence
                header.encode(to: controlHeader)
                _ = appendSegments(.standaloneAck, skip: 0, iovCount: &iovCount, accessCount: &accessCount, complete: &complete)
                batch[0] = .standaloneAck
                batchLengths[0] = FrameHeader.size
                count = 1
            }
            if count == 0 {
                releaseAccessed(accessCount)
                if let blockedRequest, blockedRequest == transmitted {
                    failRequestBeforeSending(blockedRequest, .localProtectionError, .unknownKey)
                }
                if let lostForGood, lostForGood == transmitted {
                    failRequestBeforeSending(lostForGood, .transportRetryExceeded, .injectedFault)
                }
                if link.vanished { sendIntoVoid() }
                return
            }
            // The acknowledgement rides on every frame that starts here.
            for i in freshFrom..<count {
                FrameHeader.patchAcknowledge(expectedSequence, at: headerPointer(batch[i]))
            }

            // One call moves at most a chunk: a socket locked for a long
            // copy holds back the peer's acknowledgements (TCP's and ours).
            var chunk = EngineTuning.writeChunk
            var linkLimit = Int.max
            if link.isShaped {
                // The emulated link's token bucket: write what it allows.
                var wanted = 0
                for i in 0..<iovCount { wanted += iov[i].iov_len }
                let allowed = link.allowance(wanted: wanted, now: now)
                if allowed == 0 {
                    releaseAccessed(accessCount)
                    waitingForLink = true
                    return
                }
                if allowed < min(wanted, chunk) { linkLimit = allowed }
                chunk = min(chunk, allowed)
            }
            for i in 0..<iovCount {
                if iov[i].iov_len >= chunk {
                    iov[i].iov_len = chunk
                    iovCount = i + 1
                    break
                }
                chunk -= iov[i].iov_len
            }
            let result = iovCount == 1
                ? SystemCalls.write(fd, iov[0].iov_base, iov[0].iov_len)
                : SystemCalls.writeVector(fd, iov, iovCount)
            releaseAccessed(accessCount)
            switch result {
            case .transferred(var written):
                counters.bytesSent += written
                let linkFull = link.isShaped && written >= linkLimit
                link.spend(written)
                socketFullAt = 0
                budget -= written
                if count > freshFrom && written >= (freshFrom == 1 ? batchLengths[0] : 0) + FrameHeader.size {
                    acknowledgeOwed = false
                    acknowledgeRequested = false
                    acceptedSinceAcknowledge = 0
                    wantAcknowledge = false
                }
                items: for i in 0..<count {
                    let item = batch[i]
                    let isCurrent = i == 0 && freshFrom == 1
                    if written >= batchLengths[i] {
                        written -= batchLengths[i]
                        if !isCurrent { take(item) }
                        finished(item)
                        if isCurrent { current = nil; currentOffset = 0 }
                    } else {
                        if !isCurrent {
                            take(item)
                            current = item
                            currentOffset = written
                        } else {
                            currentOffset += written
                        }
                        if linkFull {
                            // The link, not the socket, took no more: wait
                            // for tokens (the emulation sets the timer), or
                            // go on if some came in meanwhile.
                            if link.allowance(wanted: .max, now: now) == 0 {
                                waitingForLink = true
                                return
                            }
                            break items
                        }
                        socketFullAt = clock | 1
                        device.wantsWritable(number)
                        return  // the socket is full
                    }
                }
            case .wouldBlock:
                socketFullAt = clock | 1
                device.wantsWritable(number)
                return
            case .endOfStream:
                return
            case .failed(let code):
                if code == EFAULT {
                    handleTransmitFault(first: batch[0], isCurrent: freshFrom == 1)
                } else {
                    connectionFailed(.peerClosedConnection)
                    return
                }
            }
        }
    }

    private func releaseAccessed(_ count: Int) {
        for i in 0..<count { accessed[i].takeUnretainedValue().endAccess() }
    }

    /// The frame's first byte is being sent: it leaves the waiting set.
    private mutating func take(_ item: OutputItem) {
        if case .request(let position) = item {
            precondition(position == transmitted)
            transmitted += 1
            sendQueue.slots[sendQueue.index(position)].sentAt = MonotonicClock.now()
            if sendQueue.slots[sendQueue.index(position)].awaitsResponse {
                outstandingReadAtomics += 1
                outstandingReadAtomicsHighWater = max(outstandingReadAtomicsHighWater, outstandingReadAtomics)
            }
        }
    }

    /// The frame's last byte was sent.
    private mutating func finished(_ item: OutputItem) {
        counters.framesSent += 1
        let header = headerPointer(item)
        let length = Int(UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        counters.packetsSent += packets(header.load(fromByteOffset: 1, as: UInt8.self) == WireOpcode.readRequest.rawValue ? 0 : length)
        switch item {
        case .request:
            break
        case .response(let index):
            precondition(index == responses.head)
            let fatal = responses.items[index].fatal
            let failedRead = responses.items[index].payload == nil && responses.items[index].payloadLength > 0
            responses.popFront()
            if fatal {
                // A READ whose memory vanished ends the connection at both
                // ends, like any remote access error.
                if failedRead { enterError(.flushed, .pageNotMapped) }
                shutdownSocket()
            }
        case .standaloneAck:
            // Sending data this soon after receiving puts the kernel's TCP
            // into its "ping-pong" mode, which delays the ACKs of what we
            // receive hoping to ride them on our replies. A standalone ack
            // means the data flows one way (a stream of WRITEs or SENDs):
            // there are no replies, and the delayed kernel ACKs cost the
            // sender about a quarter of its loopback bandwidth. Ask for
            // prompt kernel ACKs again.
            SystemCalls.setOption(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, 1)
        case .disconnect:
            shutdownSocket()
        }
    }

    /// sendmsg said EFAULT: the memory of the first frame's payload is not
    /// mapped. A READ response turns into zeros plus an error trailer; a
    /// request fails locally and ends the connection.
    private mutating func handleTransmitFault(first: OutputItem, isCurrent: Bool) {
        switch first {
        case .response(let index):
            markResponseFailed(index, detail: .pageNotMapped)
        case .request(let position):
            if !isCurrent { take(first) }
            sendQueue.slots[sendQueue.index(position)].status = .localProtectionError
            sendQueue.slots[sendQueue.index(position)].detail = .localMemoryFault
            current = nil
            enterError(.localProtectionError, .localMemoryFault)
            shutdownSocket()
        default:
            connectionFailed(.localMemoryFault)
        }
    }

    /// The partially sent request's region was deregistered mid-frame: the
    /// frame cannot be finished, so the connection ends.
    private mutating func failCurrentRequest() {
        if case .request(let position) = current {
            sendQueue.slots[sendQueue.index(position)].status = .localProtectionError
            sendQueue.slots[sendQueue.index(position)].detail = .unknownKey
        }
        current = nil
        enterError(.localProtectionError, .unknownKey)
        shutdownSocket()
    }

    /// A request that fails before its first byte leaves (its region was
    /// deregistered; its packet was lost more often than its retries
    /// allow): it completes with `status`, and the queue pair is in error.
    private mutating func failRequestBeforeSending(_ position: Int, _ status: CompletionStatus, _ detail: CompletionDetail) {
        transmitted += 1
        sendQueue.slots[sendQueue.index(position)].status = status
        sendQueue.slots[sendQueue.index(position)].detail = detail
        enterError(status, detail)
    }

    mutating func shutdownSocket() {
        guard !socketShut else { return }
        socketShut = true
        // A vanished queue pair says nothing, not even goodbye.
        if emulating, let emulation, emulation.vanished { return }
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: - Emulated faults

    /// The packets of the profile's MTU a request frame takes, as the fault
    /// script numbers them: a READ request or an atomic is one packet.
    func requestPackets(_ slot: SendSlot) -> Int {
        switch slot.opcode {
        case .readRequest, .fetchAndAdd, .compareAndSwap: return 1
        default: return packets(slot.length)
        }
    }

    /// A vanished queue pair's output goes nowhere. Its requests count as
    /// sent, so that their response timeout ends them as it would on a card
    /// whose link died; the partial frame and the responses are dropped.
    mutating func sendIntoVoid() {
        current = nil
        currentOffset = 0
        responses.removeAll()
        while transmitted < tail { take(.request(position: transmitted)) }
        acknowledgeOwed = false
        acknowledgeRequested = false
    }

    /// Queues a responder frame; false if the peer exceeded its allowance
    /// of outstanding reads and atomics.
    mutating func queueResponse(_ header: FrameHeader, payload: UnsafeMutableRawPointer? = nil, length: Int = 0, record: RegionRecord? = nil, atomicValue: UInt64 = 0, fatal: Bool = false) -> Bool {
        guard !responses.isFull else { return false }
        let index = responses.reserve()
        let buffer = responses.buffer(index)
        header.encode(to: buffer)
        buffer.storeBytes(of: atomicValue.littleEndian, toByteOffset: 32, as: UInt64.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: 40, as: UInt32.self)
        responses.items[index].payload = payload
        responses.items[index].payloadLength = length
        responses.items[index].record = record
        responses.items[index].fatal = fatal
        if emulating { responses.items[index].readyAt = clock }
        return true
    }

    /// Queues the graceful end of the connection.
    mutating func queueDisconnect() {
        guard !socketShut else { return }
        var header = FrameHeader(opcode: .disconnect)
        header.acknowledge = expectedSequence
        header.encode(to: controlHeader)
        if current == nil {
            var iovCount = 0
            var accessCount = 0
            var complete = true
            _ = appendSegments(.disconnect, skip: 0, iovCount: &iovCount, accessCount: &accessCount, complete: &complete)
            if case .transferred(let n) = SystemCalls.writeVector(fd, iov, iovCount), n == FrameHeader.size {
                shutdownSocket()
                return
            }
        }
        shutdownSocket()
    }
}
