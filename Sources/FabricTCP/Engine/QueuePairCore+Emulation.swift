import FabricCore

/// What the emulated link and fault rules do to the engine, beyond the
/// questions `EmulationHooks` answers: a post that is stamped (and may be
/// failed), and a queue pair that vanished, whose input is swallowed and
/// whose output goes nowhere. None of this runs without emulation.
extension QueuePairCore {
    /// Stamps the request just posted at `position` for the link; true if
    /// a fault rule failed the queue pair at this post.
    mutating func emulatedPost(_ position: Int) -> Bool {
        let index = requester.sendQueue.index(position)
        let packets = requestPackets(requester.sendQueue.slots[index])
        if emulation.posted(&requester.sendQueue.slots[index], packets: packets, now: MonotonicClock.now(), counters: &counters) {
            enterError(.flushed, .injectedFault)
            return true
        }
        return false
    }

    /// The packets of the profile's MTU a request frame takes, as the fault
    /// script numbers them: a READ request or an atomic is one packet.
    func requestPackets(_ slot: SendSlot) -> Int {
        switch slot.opcode {
        case .readRequest, .fetchAndAdd, .compareAndSwap: return 1
        default: return packets(slot.length)
        }
    }

    /// A vanished queue pair reads what arrives and throws it away (so that
    /// the socket does not keep waking anyone); only the stream's end is
    /// noticed.
    mutating func swallowInput(budget: Int) {
        var left = budget
        while left > 0 && !input.ended {
            counters.receiveCalls += 1
            switch SystemCalls.read(fd, input.staging, FrameInput.capacity) {
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

    /// A vanished queue pair's output goes nowhere. Its requests count as
    /// sent, so that their response timeout ends them as it would on a card
    /// whose link died; the partial frame and the responses are dropped.
    mutating func sendIntoVoid() {
        output.abandonPartial()
        responder.responses.removeAll()
        if state == .readyToSend {
            while requester.hasUnsent { requester.sent(requester.transmitted, now: MonotonicClock.now()) }
        }
        responder.forgetAcknowledgement()
    }
}
