import FabricCore

/// Every question the engine asks the emulated link and fault rules, in one
/// place. Most queue pairs have no emulation: then `active` is false, every
/// hook answers "nothing to do" after testing that plain flag (binding the
/// reference would cost reference counting on the data path), and output
/// runs through `DirectLink`, whose answers are constants.
struct EmulationHooks {
    /// The emulated link and fault rules of this queue pair, if any apply.
    let link: LinkEmulation?
    let active: Bool

    init(_ link: LinkEmulation?) {
        self.link = link
        active = link != nil
    }

    /// The queue pair went silent (a `vanish` fault): it reads and drops
    /// what arrives, and sends nothing, not even goodbye.
    @inline(__always)
    var vanished: Bool {
        if active, let link { return link.vanished }
        return false
    }

    /// A request was posted at `now`: stamps it with its time and its
    /// packet numbers (`packets` of them), as the fault script counts them.
    /// True if a fault rule fails the queue pair at this post.
    func posted(_ slot: inout SendSlot, packets: Int, now: UInt64, counters: inout QueuePairStatistics) -> Bool {
        guard active, let link else { return false }
        slot.readyAt = now
        slot.packetCount = packets
        slot.firstPacket = link.numberPackets(packets)
        if link.forcesError() {
            counters.faultsInjected += 1
            return true
        }
        return false
    }

    /// An arriving SEND is refused with RNR by a fault rule.
    @inline(__always)
    func refusesSend(counters: inout QueuePairStatistics) -> Bool {
        guard active, let link, link.refusesSend() else { return false }
        counters.faultsInjected += 1
        return true
    }

    /// An arriving one-sided request fails its access check by a fault rule.
    @inline(__always)
    func refusesAccess(counters: inout QueuePairStatistics) -> Bool {
        guard active, let link, link.refusesAccess() else { return false }
        counters.faultsInjected += 1
        counters.remoteAccessErrors += 1
        return true
    }

    /// When a responder frame queued at `now` became ready (what the link
    /// delays it from); 0 without emulation.
    @inline(__always)
    func readyAt(_ now: UInt64) -> UInt64 { active ? now : 0 }

    /// Brings the link's timers into the next deadline: a held frame's
    /// release (only while output may leave: `outputMayLeave`; a past
    /// release time would otherwise wake us for nothing, for ever), and an
    /// acknowledgement cannot leave before the link's latency.
    @inline(__always)
    func adjust(deadline: inout UInt64, acknowledgeDue: inout UInt64, acknowledgeOwedSince: UInt64, outputMayLeave: Bool) {
        guard active, let link else { return }
        if outputMayLeave { deadline = min(deadline, link.releaseAt) }
        acknowledgeDue = max(acknowledgeDue, acknowledgeOwedSince &+ link.latency)
    }
}
