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
        while let (slot, finished) = requester.flushNext() {
            if finished {
                if slot.flags.contains(.signaled) {
                    pushSendCompletion(id: slot.id, status: .success, opcode: slot.completionOpcode, length: Requester.completedLength(slot), detail: .none)
                }
            } else {
                let failed = slot.status != .success
                pushSendCompletion(
                    id: slot.id, status: failed ? slot.status : .flushed, opcode: slot.completionOpcode,
                    length: 0, detail: failed ? slot.detail : detail)
            }
        }
        // A receive that was being filled when the stream broke.
        if input.inPayload, case .receivePlaced(let id, let opcode, _, _) = placement.action {
            pushReceiveCompletion(Completion(workRequestID: id, status: .flushed, opcode: opcode, queuePair: number, detail: detail))
            placement.action = .discard(nak: nil)
            placement.discarding = true
            placement.targets.reset()
        }
        let receiveNumber = number
        var flushedReceives: [UInt64] = []
        receives.drain { flushedReceives.append($0) }
        for id in flushedReceives {
            pushReceiveCompletion(Completion(workRequestID: id, status: .flushed, opcode: .receive, queuePair: receiveNumber, detail: detail))
        }
        // If a fatal NAK is queued, the responses before it still go out and
        // the NAK tells the peer why; otherwise responses are dropped.
        let keepsFatalNak = responder.holdsFatalResponse
        if !keepsFatalNak {
            if output.partial == nil { responder.responses.removeAll() }
            shutdownSocket()
        }
        if wasConnected || detail != .none {
            device.postEvent(AsyncEvent(kind: .queuePairFatal, queuePair: number, detail: detail))
        }
    }

    /// The byte stream ended or broke.
    mutating func connectionFailed(_ detail: CompletionDetail) {
        input.ended = true
        if state == .readyToSend {
            if detail != .disconnected {
                // The oldest outstanding request reports why.
                requester.failOldest(.transportRetryExceeded, detail)
            }
            device.postEvent(AsyncEvent(kind: .peerGone, queuePair: number, detail: detail))
            enterError(.flushed, detail)
        }
        if !socketShut { socketShut = true }
        SystemCalls.shutdown(fd)
    }

    /// The peer broke the protocol: the connection closes, and the
    /// completions name the cause.
    mutating func protocolViolation(_ detail: CompletionDetail) {
        input.ended = true
        if state == .readyToSend {
            requester.failOldest(.badResponse, detail)
        }
        enterError(.flushed, detail)
        socketShut = true
        SystemCalls.shutdown(fd)
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
