import FabricCore
import Glibc

/// The error state, as on a card: the failing request completes with its
/// status, everything else outstanding and every posted receive completes as
/// flushed, and the queue pair stays in error.
extension QueuePairCore {
    mutating func enterError(_ status: CompletionStatus, _ detail: CompletionDetail) {
        guard state != .error else { return }
        let wasConnected = state == .readyToSend
        state = .error
        if case .request = output.partial {
            // A request cut off mid-frame: the stream cannot continue.
            output.abandonPartial()
            shutdownSocket()
        }
        while head < tail {
            let index = sendQueue.index(head)
            let slot = sendQueue.slots[index]
            let finishedOK = head < acknowledged && slot.status == .success && (!slot.awaitsResponse || slot.responded)
            if finishedOK {
                if slot.flags.contains(.signaled) {
                    pushSendCompletion(id: slot.id, status: .success, opcode: slot.completionOpcode, length: completedLength(slot), detail: .none)
                }
            } else {
                let failed = slot.status != .success
                pushSendCompletion(
                    id: slot.id, status: failed ? slot.status : .flushed, opcode: slot.completionOpcode,
                    length: 0, detail: failed ? slot.detail : detail)
            }
            sendQueue.releaseRecords(head)
            head += 1
        }
        // A receive that was being filled when the stream broke.
        if inPayload, case .receivePlaced(let id, let opcode, _, _) = action {
            pushReceiveCompletion(Completion(workRequestID: id, status: .flushed, opcode: opcode, queuePair: number, detail: detail))
            action = .discard(nak: nil)
            discarding = true
            targets.reset()
        }
        acknowledged = tail
        transmitted = tail
        outstandingReadAtomics = 0
        resendAt = 0
        let receiveNumber = number
        var flushedReceives: [UInt64] = []
        receives.drain { flushedReceives.append($0) }
        for id in flushedReceives {
            pushReceiveCompletion(Completion(workRequestID: id, status: .flushed, opcode: .receive, queuePair: receiveNumber, detail: detail))
        }
        // If a fatal NAK is queued, the responses before it still go out and
        // the NAK tells the peer why; otherwise responses are dropped.
        var keepsFatalNak = false
        if responses.count > 0 {
            var index = responses.head
            for _ in 0..<responses.count {
                if responses.items[index].fatal { keepsFatalNak = true }
                index += 1
                if index == responses.depth { index = 0 }
            }
        }
        if !keepsFatalNak {
            if output.partial == nil { responses.removeAll() }
            shutdownSocket()
        }
        if wasConnected || detail != .none {
            device.postEvent(AsyncEvent(kind: .queuePairFatal, queuePair: number, detail: detail))
        }
    }

    /// The byte stream ended or broke.
    mutating func connectionFailed(_ detail: CompletionDetail) {
        inputEnded = true
        if state == .readyToSend {
            if detail != .disconnected, head < tail {
                // The oldest outstanding request reports why.
                let index = sendQueue.index(head)
                if sendQueue.slots[index].status == .success {
                    sendQueue.slots[index].status = .transportRetryExceeded
                    sendQueue.slots[index].detail = detail
                }
            }
            device.postEvent(AsyncEvent(kind: .peerGone, queuePair: number, detail: detail))
            enterError(.flushed, detail)
        }
        if !socketShut { socketShut = true }
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// The peer broke the protocol: the connection closes, and the
    /// completions name the cause.
    mutating func protocolViolation(_ detail: CompletionDetail) {
        inputEnded = true
        if state == .readyToSend, head < tail {
            let index = sendQueue.index(head)
            if sendQueue.slots[index].status == .success {
                sendQueue.slots[index].status = .badResponse
                sendQueue.slots[index].detail = detail
            }
        }
        enterError(.flushed, detail)
        socketShut = true
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    mutating func pushSendCompletion(id: UInt64, status: CompletionStatus, opcode: CompletionOpcode, length: UInt32, detail: CompletionDetail) {
        let completion = Completion(workRequestID: id, status: status, opcode: opcode, byteLength: length, queuePair: number, detail: detail)
        if !sendCQ.push(completion) { completionQueueOverrun() }
    }

    mutating func pushReceiveCompletion(_ completion: Completion) {
        if !receiveCQ.push(completion) { completionQueueOverrun() }
    }

    private mutating func completionQueueOverrun() {
        device.postEvent(AsyncEvent(kind: .completionQueueOverrun, queuePair: number, detail: .completionQueueOverrun))
    }
}
