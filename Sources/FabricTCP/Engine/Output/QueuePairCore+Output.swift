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

    /// Adds the pieces of `item` to the batch from byte `skip` on; returns
    /// the item's wire length, or nil if its memory could not be claimed (a
    /// request whose region was deregistered: it fails before any byte is
    /// sent). Clears `output.complete` when not all of the item's pieces
    /// fit: nothing may follow it in this batch.
    private mutating func addPieces(of item: OutputItem, skip: Int) -> Int? {
        var skip = skip
        var total = 0
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
            total += headerLength
            output.addPiece(header, headerLength, skip: &skip)
            if carriesPayload && !inlinePayload {
                let base = sendQueue.elementBase(position)
                for i in 0..<slot.elementCount {
                    let element = sendQueue.elements[base + i]
                    if element.length == 0 { continue }
                    if let record = sendQueue.records[base + i] {
                        guard output.pin(record) else { return nil }
                    }
                    total += Int(element.length)
                    output.addPiece(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), Int(element.length), skip: &skip)
                }
            }
        case .response(let index):
            let item = responses.items[index]
            let buffer = responses.buffer(index)
            let opcode = WireOpcode(rawValue: buffer.load(fromByteOffset: 1, as: UInt8.self))
            switch opcode {
            case .readResponse:
                total += FrameHeader.size
                output.addPiece(buffer, FrameHeader.size, skip: &skip)
                if item.payloadLength > 0 {
                    var usable = item.payload != nil
                    if usable, let record = item.record, !output.pin(record) {
                        // Deregistered since the check: send zeros and say so.
                        markResponseFailed(index, detail: .unknownKey)
                        usable = false
                    }
                    if usable {
                        total += item.payloadLength
                        output.addPiece(item.payload, item.payloadLength, skip: &skip)
                    } else {
                        var left = item.payloadLength
                        while left > 0 {
                            let piece = min(left, 65536)
                            total += piece
                            if skip >= piece || output.vectorsLeft > 2 {
                                output.addPiece(zeroPage, piece, skip: &skip)
                            } else {
                                output.complete = false
                            }
                            left -= piece
                        }
                    }
                }
                total += 4
                if output.complete { output.addPiece(buffer + 40, 4, skip: &skip) }
            case .atomicResponse:
                total += FrameHeader.size + atomicResponsePayload
                output.addPiece(buffer, FrameHeader.size + atomicResponsePayload, skip: &skip)
            default:
                total += FrameHeader.size
                output.addPiece(buffer, FrameHeader.size, skip: &skip)
            }
        case .standaloneAck, .disconnect:
            total += FrameHeader.size
            output.addPiece(controlHeader, FrameHeader.size, skip: &skip)
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
            // Build a batch without changing state: the cut frame, then
            // responses, then requests that may go.
            output.begin()
            var outstanding = outstandingReadAtomics
            var blockedRequest: Int? = nil
            if let partial = output.partial {
                guard let length = addPieces(of: partial, skip: output.partialOffset) else {
                    output.releasePins()
                    failCutRequest()
                    return
                }
                output.appendCut(length: length)
            }
            var responseIndex = (output.partial.map { if case .response = $0 { return 1 } else { return 0 } } ?? 0)
            while output.complete && !output.isFull && responseIndex < responses.count && output.vectorsLeft > 4 {
                var index = responses.head + responseIndex
                if index >= responses.depth { index -= responses.depth }
                if !link.mayRespond(readyAt: responses.items[index].readyAt, now: now) { break }
                let item = OutputItem.response(index: index)
                guard let length = addPieces(of: item, skip: 0) else { break }
                output.append(item, length: length)
                responseIndex += 1
            }
            var position = transmitted
            var lostForGood: Int? = nil
            requests: while output.complete && !output.isFull && output.vectorsLeft > sendQueue.maxElements + 2
                    && mayTransmit(position, outstanding: outstanding) {
                switch link.admit(position: position, sendQueue.slots[sendQueue.index(position)], now: now, counters: &counters) {
                case .go: break
                case .hold, .vanish: break requests
                case .retriesExhausted: lostForGood = position; break requests
                }
                let item = OutputItem.request(position: position)
                let before = output.vectorCount
                guard let length = addPieces(of: item, skip: 0) else {
                    output.dropPieces(after: before)
                    blockedRequest = position
                    break
                }
                if sendQueue.slots[sendQueue.index(position)].awaitsResponse { outstanding += 1 }
                output.append(item, length: length)
                position += 1
            }
            if output.isEmpty && wantAcknowledge && state == .readyToSend
                && link.mayRespond(readyAt: acknowledgeOwedSince, now: now) {
                var header = FrameHeader(opcode: .acknowledge)
                header.acknowledge = expectedSequence
                header.encode(to: controlHeader)
                output.append(.standaloneAck, length: addPieces(of: .standaloneAck, skip: 0)!)
            }
            if output.isEmpty {
                output.releasePins()
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
            for i in output.freshItems {
                FrameHeader.patchAcknowledge(expectedSequence, at: headerPointer(output.items[i]))
            }

            // One call moves at most a chunk: a socket locked for a long
            // copy holds back the peer's acknowledgements (TCP's and ours).
            var chunk = EngineTuning.writeChunk
            var linkLimit = Int.max
            if link.isShaped {
                // The emulated link's token bucket: write what it allows.
                let wanted = output.byteCount
                let allowed = link.allowance(wanted: wanted, now: now)
                if allowed == 0 {
                    output.releasePins()
                    waitingForLink = true
                    return
                }
                if allowed < min(wanted, chunk) { linkLimit = allowed }
                chunk = min(chunk, allowed)
            }
            output.limit(to: chunk)
            let result = output.vectorCount == 1
                ? SystemCalls.write(fd, output.vectors[0].iov_base, output.vectors[0].iov_len)
                : SystemCalls.writeVector(fd, output.vectors, output.vectorCount)
            output.releasePins()
            switch result {
            case .transferred(let written):
                counters.bytesSent += written
                let linkFull = link.isShaped && written >= linkLimit
                link.spend(written)
                socketFullAt = 0
                budget -= written
                let resumed = output.freshItems.lowerBound
                let outcome = output.wrote(written)
                if outcome.acknowledgementSent {
                    acknowledgeOwed = false
                    acknowledgeRequested = false
                    acceptedSinceAcknowledge = 0
                    wantAcknowledge = false
                }
                for i in 0..<outcome.finished {
                    let item = output.items[i]
                    if i >= resumed { take(item) }
                    finished(item)
                }
                if outcome.startedCut { take(output.items[outcome.finished]) }
                if outcome.stoppedShort {
                    if linkFull {
                        // The link, not the socket, took no more: wait for
                        // tokens (the emulation sets the timer), or go on
                        // if some came in meanwhile.
                        if link.allowance(wanted: .max, now: now) == 0 {
                            waitingForLink = true
                            return
                        }
                        continue
                    }
                    socketFullAt = clock | 1
                    device.wantsWritable(number)
                    return  // the socket is full
                }
            case .wouldBlock:
                socketFullAt = clock | 1
                device.wantsWritable(number)
                return
            case .endOfStream:
                return
            case .failed(let code):
                if code == EFAULT {
                    handleTransmitFault(first: output.items[0], isCut: output.freshItems.lowerBound == 1)
                } else {
                    connectionFailed(.peerClosedConnection)
                    return
                }
            }
        }
    }

    /// The frame's first byte is being sent: it leaves the waiting set.
    private mutating func take(_ item: OutputItem) {
        // After the queue pair failed (a READ response in the same batch
        // whose memory vanished) every request already counts as done.
        if case .request(let position) = item, state == .readyToSend {
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
    private mutating func handleTransmitFault(first: OutputItem, isCut: Bool) {
        switch first {
        case .response(let index):
            markResponseFailed(index, detail: .pageNotMapped)
        case .request(let position):
            if !isCut { take(first) }
            sendQueue.slots[sendQueue.index(position)].status = .localProtectionError
            sendQueue.slots[sendQueue.index(position)].detail = .localMemoryFault
            output.abandonPartial()
            enterError(.localProtectionError, .localMemoryFault)
            shutdownSocket()
        default:
            connectionFailed(.localMemoryFault)
        }
    }

    /// The cut request's region was deregistered mid-frame: the frame
    /// cannot be finished, so the connection ends.
    private mutating func failCutRequest() {
        if case .request(let position) = output.partial {
            sendQueue.slots[sendQueue.index(position)].status = .localProtectionError
            sendQueue.slots[sendQueue.index(position)].detail = .unknownKey
        }
        output.abandonPartial()
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
        output.abandonPartial()
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
        if output.partial == nil {
            output.begin()
            output.append(.disconnect, length: addPieces(of: .disconnect, skip: 0)!)
            if case .transferred(let n) = SystemCalls.writeVector(fd, output.vectors, output.vectorCount), n == FrameHeader.size {
                shutdownSocket()
                return
            }
        }
        shutdownSocket()
    }
}
