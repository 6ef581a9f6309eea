import FabricCore
import Glibc

/// The outgoing byte stream: requests from the send queue, the responder's
/// frames, acknowledgements. Payloads leave from registered memory through
/// sendmsg with an iovec per piece; several frames share one call.
extension QueuePairCore {
    /// Whether the next waiting request may go out now.
    @inline(__always)
    private func mayTransmit(_ position: Int, outstanding: Int) -> Bool {
        state == .readyToSend && requester.mayTransmit(position, outstanding: outstanding)
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
            let slot = requester.sendQueue.slots[requester.sendQueue.index(position)]
            let header = requester.sendQueue.header(position)
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
                let base = requester.sendQueue.elementBase(position)
                for i in 0..<slot.elementCount {
                    let element = requester.sendQueue.elements[base + i]
                    if element.length == 0 { continue }
                    if let record = unretainedRecord(at: requester.sendQueue.records + base + i) {
                        guard output.pin(record) else { return nil }
                    }
                    total += Int(element.length)
                    output.addPiece(UnsafeMutableRawPointer(bitPattern: UInt(element.address)), Int(element.length), skip: &skip)
                }
            }
        case .response(let index):
            let item = responder.responses.items[index]
            let buffer = responder.responses.buffer(index)
            let opcode = WireOpcode(rawValue: buffer.load(fromByteOffset: 1, as: UInt8.self))
            switch opcode {
            case .readResponse:
                total += FrameHeader.size
                output.addPiece(buffer, FrameHeader.size, skip: &skip)
                if item.payloadLength > 0 {
                    var usable = item.payload != nil
                    if usable, let record = item.record, !output.pin(record) {
                        // Deregistered since the check: send zeros and say so.
                        responder.markResponseFailed(index, detail: .unknownKey)
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

    private func headerPointer(_ item: OutputItem) -> UnsafeMutableRawPointer {
        switch item {
        case .request(let position): return requester.sendQueue.header(position)
        case .response(let index): return responder.responses.buffer(index)
        case .standaloneAck, .disconnect: return controlHeader
        }
    }

    /// Writes as much of the pending output as the socket takes.
    @inline(__always)
    mutating func flushOutput(standaloneAcknowledge: Bool = false) {
        // Two specializations: the plain socket, where every question to
        // the link is answered at compile time, and the emulated link.
        if emulation.active, let link = emulation.link {
            flushOutput(through: link, standaloneAcknowledge: standaloneAcknowledge)
        } else {
            flushOutput(through: DirectLink(), standaloneAcknowledge: standaloneAcknowledge)
        }
    }

    @inline(__always)
    private mutating func flushOutput<Link: OutgoingLink>(through link: Link, standaloneAcknowledge: Bool) {
        var wantAcknowledge = standaloneAcknowledge && responder.acknowledgeOwed
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
            var outstanding = requester.outstandingReadAtomics
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
            while output.complete && !output.isFull && responseIndex < responder.responses.count && output.vectorsLeft > 4 {
                var index = responder.responses.head + responseIndex
                if index >= responder.responses.depth { index -= responder.responses.depth }
                if !link.mayRespond(readyAt: responder.responses.items[index].readyAt, now: now) { break }
                let item = OutputItem.response(index: index)
                guard let length = addPieces(of: item, skip: 0) else { break }
                output.append(item, length: length)
                responseIndex += 1
            }
            var position = requester.transmitted
            var lostForGood: Int? = nil
            requests: while output.complete && !output.isFull && output.vectorsLeft > requester.sendQueue.maxElements + 2
                    && mayTransmit(position, outstanding: outstanding) {
                switch link.admit(position: position, requester.slot(position), now: now, counters: &counters) {
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
                if requester.slot(position).awaitsResponse { outstanding += 1 }
                output.append(item, length: length)
                position += 1
            }
            if output.isEmpty && wantAcknowledge && state == .readyToSend
                && link.mayRespond(readyAt: responder.acknowledgeOwedSince, now: now) {
                var header = FrameHeader(opcode: .acknowledge)
                header.acknowledge = responder.expectedSequence
                header.encode(to: controlHeader)
                output.append(.standaloneAck, length: addPieces(of: .standaloneAck, skip: 0)!)
            }
            if output.isEmpty {
                output.releasePins()
                if let blockedRequest, blockedRequest == requester.transmitted {
                    failRequestBeforeSending(blockedRequest, .localProtectionError, .unknownKey)
                }
                if let lostForGood, lostForGood == requester.transmitted {
                    failRequestBeforeSending(lostForGood, .transportRetryExceeded, .injectedFault)
                }
                if link.vanished { sendIntoVoid() }
                return
            }
            // The acknowledgement rides on every frame that starts here.
            let acknowledge = responder.expectedSequence
            for i in output.freshItems {
                FrameHeader.patchAcknowledge(acknowledge, at: headerPointer(output.items[i]))
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
            let result: TransferResult
            if output.vectorCount == 1 {
                counters.sendCalls += 1
                result = SystemCalls.write(fd, output.vectors[0].iov_base, output.vectors[0].iov_len)
            } else {
                counters.sendmsgCalls += 1
                result = SystemCalls.writeVector(fd, output.vectors, output.vectorCount)
            }
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
                    responder.acknowledgementSent()
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
    @inline(__always)
    private mutating func take(_ item: OutputItem) {
        // After the queue pair failed (a READ response in the same batch
        // whose memory vanished) every request already counts as done.
        if case .request(let position) = item, state == .readyToSend {
            requester.sent(position, now: MonotonicClock.now())
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
            precondition(index == responder.responses.head)
            let fatal = responder.responses.items[index].fatal
            let failedRead = responder.responses.items[index].payload == nil && responder.responses.items[index].payloadLength > 0
            responder.responses.popFront()
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
            responder.markResponseFailed(index, detail: .pageNotMapped)
        case .request(let position):
            if !isCut { take(first) }
            requester.fail(position, .localProtectionError, .localMemoryFault)
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
            requester.fail(position, .localProtectionError, .unknownKey)
        }
        output.abandonPartial()
        enterError(.localProtectionError, .unknownKey)
        shutdownSocket()
    }

    /// A request that fails before its first byte leaves (its region was
    /// deregistered; its packet was lost more often than its retries
    /// allow): it completes with `status`, and the queue pair is in error.
    private mutating func failRequestBeforeSending(_ position: Int, _ status: CompletionStatus, _ detail: CompletionDetail) {
        requester.failUnsent(position, status, detail)
        enterError(status, detail)
    }

    mutating func shutdownSocket() {
        guard !socketShut else { return }
        socketShut = true
        // A vanished queue pair says nothing, not even goodbye.
        if emulation.vanished { return }
        SystemCalls.shutdownForWriting(fd)
    }

    /// Queues the graceful end of the connection.
    mutating func queueDisconnect() {
        guard !socketShut else { return }
        var header = FrameHeader(opcode: .disconnect)
        header.acknowledge = responder.expectedSequence
        header.encode(to: controlHeader)
        if output.partial == nil {
            output.begin()
            output.append(.disconnect, length: addPieces(of: .disconnect, skip: 0)!)
            counters.sendmsgCalls += 1
            if case .transferred(let n) = SystemCalls.writeVector(fd, output.vectors, output.vectorCount), n == FrameHeader.size {
                shutdownSocket()
                return
            }
        }
        shutdownSocket()
    }
}
