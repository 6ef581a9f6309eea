@testable import FabricTCP
import FabricCore
import Testing

/// The emulation hooks alone: without a link every hook must answer
/// "nothing to do" and count nothing; with fault rules they must answer as
/// the rules say and count the faults.
@Suite("tcp engine: emulation hooks")
struct EmulationHooksTests {
    @Test("without emulation no hook refuses, delays or counts anything")
    func inactive() {
        let hooks = EmulationHooks(nil)
        var counters = QueuePairStatistics.zero
        #expect(!hooks.active)
        #expect(!hooks.vanished)
        for _ in 0..<3 {
            let refusesSend = hooks.refusesSend(counters: &counters)
            let refusesAccess = hooks.refusesAccess(counters: &counters)
            #expect(!refusesSend)
            #expect(!refusesAccess)
        }
        #expect(hooks.readyAt(12345) == 0)
        var deadline: UInt64 = 77
        var acknowledgeDue: UInt64 = 88
        hooks.adjust(deadline: &deadline, acknowledgeDue: &acknowledgeDue, acknowledgeOwedSince: 1, outputMayLeave: true)
        #expect(deadline == 77)
        #expect(acknowledgeDue == 88)
        var slot = SendSlot()
        let failed = hooks.posted(&slot, packets: 3, now: 99, counters: &counters)
        #expect(!failed)
        #expect(slot.readyAt == 0)
        #expect(counters.faultsInjected == 0)
        #expect(counters.remoteAccessErrors == 0)
    }

    @Test("fault rules refuse the sends and accesses they name, count them, and fail the post they name")
    func faultRules() throws {
        let rules = FaultScript(rules: [
            .init(.receiverNotReady(sends: 1, after: 1)),
            .init(.accessError(request: 2)),
            .init(.forceError(post: 2)),
        ])
        let link = try #require(LinkEmulation(link: .unshaped, faults: rules, queuePair: 1, retry: RetryPolicy()))
        let hooks = EmulationHooks(link)
        var counters = QueuePairStatistics.zero
        #expect(hooks.active)
        let sends = (0..<3).map { _ in hooks.refusesSend(counters: &counters) }
        #expect(sends == [false, true, false])
        let accesses = (0..<3).map { _ in hooks.refusesAccess(counters: &counters) }
        #expect(accesses == [false, true, false])
        #expect(counters.faultsInjected == 2)
        #expect(counters.remoteAccessErrors == 1)
        #expect(hooks.readyAt(12345) == 12345)
        var first = SendSlot()
        var second = SendSlot()
        let firstFailed = hooks.posted(&first, packets: 2, now: 50, counters: &counters)
        let secondFailed = hooks.posted(&second, packets: 1, now: 60, counters: &counters)
        #expect(!firstFailed)
        #expect(secondFailed)
        #expect(first.readyAt == 50)
        #expect(first.packetCount == 2)
        // Packets are numbered from 1 in posting order.
        #expect(first.firstPacket == 1)
        #expect(second.firstPacket == 3)
        #expect(counters.faultsInjected == 3)
    }

    @Test("an emulated link's latency holds back an acknowledgement")
    func latencyHoldsAcknowledgement() throws {
        let link = try #require(LinkEmulation(link: LinkShape(latency: .microseconds(500)), faults: .none, queuePair: 1, retry: RetryPolicy()))
        let hooks = EmulationHooks(link)
        var deadline = UInt64.max
        var acknowledgeDue: UInt64 = 1_000 + 20_000
        hooks.adjust(deadline: &deadline, acknowledgeDue: &acknowledgeDue, acknowledgeOwedSince: 1_000, outputMayLeave: false)
        #expect(acknowledgeDue == 1_000 + 500_000)
        #expect(deadline == .max)
    }

    @Test("random loss draws the same losses from the same seed, its own per queue pair, once per transmission, and each loss costs a retry timeout")
    func randomLossIsRepeatable() throws {
        let script = try FaultScript.parse("loss rate=30% seed=11")
        let retry = RetryPolicy(responseTimeout: .microseconds(80), transportRetries: 7)  // 10 us per attempt
        /// Which of 200 one-packet requests were held back at their first try.
        func losses(queuePair: UInt32) throws -> (lost: [Int], counters: QueuePairStatistics) {
            let link = try #require(LinkEmulation(link: .unshaped, faults: script, queuePair: queuePair, retry: retry))
            var counters = QueuePairStatistics.zero
            var lost: [Int] = []
            var now: UInt64 = 1_000
            for position in 0..<200 {
                var slot = SendSlot()
                slot.firstPacket = link.numberPackets(1)
                slot.packetCount = 1
                slot.readyAt = now
                var answer = link.admit(position: position, slot, now: now, counters: &counters)
                if answer == .hold { lost.append(position) }
                // Retry until it leaves: every retransmission is drawn again.
                while answer == .hold {
                    now = link.releaseAt
                    _ = link.beginRound()
                    answer = link.admit(position: position, slot, now: now, counters: &counters)
                }
                #expect(answer == .go, "request \(position) was lost more often than 7 retries allow")
                // Asked again before it leaves (a shaped link's tokens ran
                // out): the transmission was drawn once and stays kept.
                let before = counters
                #expect(link.admit(position: position, slot, now: now, counters: &counters) == .go)
                #expect(counters == before, "a second ask drew again")
                now += 1
            }
            return (lost, counters)
        }
        let first = try losses(queuePair: 1)
        let again = try losses(queuePair: 1)
        let other = try losses(queuePair: 2)
        #expect(first.lost == again.lost, "the same seed and queue pair lose the same requests")
        #expect(first.lost != other.lost, "another queue pair draws its own sequence")
        #expect((30...90).contains(first.lost.count), "about 30 % of 200 lost at the first try: \(first.lost.count)")
        #expect(first.counters.faultsInjected >= first.lost.count)
        #expect(first.counters.retries == first.counters.faultsInjected, "each loss is retried once: \(first.counters)")
    }
}
