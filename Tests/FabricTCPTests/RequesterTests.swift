@testable import FabricTCP
import FabricCore
import Testing

/// The requester alone: requests are queued, "sent" and answered by
/// scripted acknowledgements, NAKs and clock readings; no socket, no
/// clock of its own.
@Suite("tcp engine: requester")
struct RequesterTests {
    let table = RegionTable()
    var domain: ObjectIdentifier { ObjectIdentifier(table) }

    func makeRequester(depth: Int = 8, maxOutstandingReads: Int = 4, retry: RetryPolicy = RetryPolicy()) -> Requester {
        Requester(depth: depth, maxElements: 2, maxInline: 64, maxOutstandingReads: maxOutstandingReads, retry: retry)
    }

    /// Queues a request without local memory; returns its position.
    @discardableResult
    func post(_ requester: inout Requester, _ operation: SendOperation = .send, id: UInt64, flags: SendFlags = [.signaled]) -> Int {
        let queued = requester.queue(SendWorkRequest(id: id, operation: operation, local: .empty, flags: flags), table: table, domain: domain)
        #expect(queued.localFailure == nil)
        return queued.position
    }

    /// Marks every waiting request sent at `now`.
    func sendAll(_ requester: inout Requester, now: UInt64) {
        while requester.hasUnsent {
            let position = requester.transmitted
            requester.sent(position, now: now)
        }
    }

    func retired(_ requester: inout Requester) -> [UInt64] {
        var ids: [UInt64] = []
        while requester.oldestFinished {
            ids.append(requester.slot(requester.head).id)
            requester.retireOldest()
        }
        return ids
    }

    let remote = RemoteMemory(address: 0x1000, key: RemoteKey(rawValue: 7))

    @Test("a cumulative acknowledgement retires the requests it covers, in order, and no more")
    func acknowledgementCoversSome() {
        var requester = makeRequester()
        for id: UInt64 in 10..<13 { post(&requester, id: id) }
        sendAll(&requester, now: 100)
        let accepted = requester.acknowledge(upTo: 2)
        #expect(accepted == .advanced)
        let ids = retired(&requester)
        #expect(ids == [10, 11])
        #expect(requester.head == 2)
        // An old acknowledgement changes nothing.
        let stale = requester.acknowledge(upTo: 1)
        #expect(stale == .unchanged)
        #expect(requester.acknowledged == 2)
        let none = retired(&requester)
        #expect(none.isEmpty)
    }

    @Test("an acknowledgement of a request never sent is refused")
    func acknowledgementBeyondSent() {
        var requester = makeRequester()
        post(&requester, id: 1)
        post(&requester, id: 2)
        requester.sent(0, now: 1)
        let accepted = requester.acknowledge(upTo: 2)
        #expect(accepted == .beyondSent)
        #expect(requester.acknowledged == 0)
    }

    @Test("a READ stays until its response, and holds back the requests behind it")
    func readWaitsForResponse() {
        var requester = makeRequester()
        post(&requester, .read(remote), id: 1)
        post(&requester, id: 2)
        sendAll(&requester, now: 5)
        #expect(requester.outstandingReadAtomics == 1)
        let accepted = requester.acknowledge(upTo: 2)
        #expect(accepted == .advanced)
        let early = retired(&requester)
        #expect(early.isEmpty)
        let position = requester.outstandingPosition(0)
        #expect(position == 0)
        requester.responseArrived(0)
        #expect(requester.outstandingReadAtomics == 0)
        let ids = retired(&requester)
        #expect(ids == [1, 2])
    }

    @Test("an RNR NAK sends everything from the refused request again, after the RNR delay counted from the given clock")
    func receiverNotReadyGoesBack() {
        var requester = makeRequester(retry: RetryPolicy(receiverNotReadyDelay: .microseconds(200)))
        for id: UInt64 in 0..<3 { post(&requester, id: id) }
        sendAll(&requester, now: 100)
        let retried = requester.receiverNotReady(at: 1, now: 1_000)
        #expect(retried)
        #expect(requester.transmitted == 1)
        #expect(requester.resendAt == 201_000)
        #expect(requester.deadline == 201_000)
        let waiting = requester.mayTransmit(1, outstanding: 0)
        #expect(!waiting)
        requester.resendIfDue(now: 200_999)
        let stillWaiting = requester.mayTransmit(1, outstanding: 0)
        #expect(!stillWaiting)
        requester.resendIfDue(now: 201_000)
        let mayGo = requester.mayTransmit(1, outstanding: 0)
        #expect(mayGo)
        requester.sent(1, now: 201_000)
        #expect(requester.transmitted == 2)
    }

    @Test("RNR retries run out; an acknowledgement of progress starts the count over")
    func receiverNotReadyExhausted() {
        var requester = makeRequester(retry: RetryPolicy(receiverNotReadyRetries: 2))
        post(&requester, id: 0)
        post(&requester, id: 1)
        sendAll(&requester, now: 1)
        var answers: [Bool] = []
        for _ in 0..<2 {
            answers.append(requester.receiverNotReady(at: 0, now: 10))
            requester.resendIfDue(now: .max)
            sendAll(&requester, now: 20)
        }
        #expect(answers == [true, true])
        let third = requester.receiverNotReady(at: 0, now: 30)
        #expect(!third)
        // Progress: the first request is accepted; the second gets its own retries.
        let accepted = requester.acknowledge(upTo: 1)
        #expect(accepted == .advanced)
        #expect(requester.receiverNotReadyRetriesLeft == 2)
        let again = requester.receiverNotReady(at: 1, now: 40)
        #expect(again)
    }

    @Test("with no RNR limit the retries never run out")
    func receiverNotReadyForever() {
        var requester = makeRequester(retry: RetryPolicy(receiverNotReadyRetries: nil))
        post(&requester, id: 0)
        sendAll(&requester, now: 1)
        for _ in 0..<50 {
            let retried = requester.receiverNotReady(at: 0, now: 10)
            #expect(retried)
            requester.resendIfDue(now: .max)
            sendAll(&requester, now: 20)
        }
    }

    @Test("the oldest request times out only after the response timeout, by the clock it is given")
    func responseTimeout() {
        var requester = makeRequester(retry: RetryPolicy(responseTimeout: .milliseconds(1)))
        post(&requester, id: 4)
        post(&requester, id: 5)
        sendAll(&requester, now: 5_000)
        #expect(requester.deadline == 1_005_000)
        let onTime = requester.responseTimedOut(now: 1_005_000)
        #expect(!onTime)
        let before = requester.slot(0)
        #expect(before.status == .success)
        let late = requester.responseTimedOut(now: 1_005_001)
        #expect(late)
        let after = requester.slot(0)
        #expect(after.status == .transportRetryExceeded)
        #expect(after.detail == .peerTimedOut)
    }

    @Test("nothing sent, nothing times out")
    func noTimeoutUnsent() {
        var requester = makeRequester(retry: RetryPolicy(responseTimeout: .milliseconds(1)))
        post(&requester, id: 4)
        #expect(requester.deadline == .max)
        let timedOut = requester.responseTimedOut(now: .max)
        #expect(!timedOut)
    }

    @Test("READs and atomics in flight are limited, and a fenced request waits for them")
    func outstandingLimitAndFence() {
        var requester = makeRequester(maxOutstandingReads: 1)
        post(&requester, .read(remote), id: 1)
        post(&requester, .fetchAndAdd(remote, add: 1), id: 2)
        post(&requester, .send, id: 3, flags: [.signaled, .fence])
        let first = requester.mayTransmit(0, outstanding: 0)
        #expect(first)
        requester.sent(0, now: 1)
        let secondRead = requester.mayTransmit(1, outstanding: 1)
        #expect(!secondRead)
        let fenced = requester.mayTransmit(2, outstanding: 1)
        #expect(!fenced)
        let fencedAlone = requester.mayTransmit(2, outstanding: 0)
        #expect(fencedAlone)
        #expect(requester.outstandingReadAtomicsHighWater == 1)
    }

    @Test("an answer names an outstanding request only if it was sent and is not finished")
    func outstandingPositions() {
        var requester = makeRequester()
        for id: UInt64 in 0..<3 { post(&requester, id: id) }
        requester.sent(0, now: 1)
        requester.sent(1, now: 1)
        let sent = requester.outstandingPosition(1)
        #expect(sent == 1)
        let unsent = requester.outstandingPosition(2)
        #expect(unsent == nil)
        _ = requester.acknowledge(upTo: 1)
        _ = retired(&requester)
        let retiredOne = requester.outstandingPosition(0)
        #expect(retiredOne == nil)
    }

    @Test("the queue says when it is full, and the header asks for an acknowledgement once it is half full")
    func fullQueue() {
        var requester = makeRequester(depth: 4)
        for id: UInt64 in 0..<4 { post(&requester, id: id, flags: []) }
        let isFull = requester.isFull
        #expect(isFull)
        var asks: [Bool] = []
        for position in 0..<4 {
            let raw = UInt16(littleEndian: requester.sendQueue.header(position).loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            asks.append(WireFlags(rawValue: raw).contains(.acknowledgeRequested))
        }
        #expect(asks == [false, false, true, true])
    }

    @Test("flushing for the error state says which requests had finished, and leaves nothing outstanding")
    func flushForError() {
        var requester = makeRequester()
        post(&requester, id: 1)
        post(&requester, .read(remote), id: 2)
        post(&requester, id: 3)
        sendAll(&requester, now: 1)
        requester.fail(2, .remoteAccessError, .unknownKey)
        _ = requester.acknowledge(upTo: 3)
        var seen: [(UInt64, Bool, CompletionStatus)] = []
        while let (slot, finished) = requester.flushNext() { seen.append((slot.id, finished, slot.status)) }
        #expect(seen.map(\.0) == [1, 2, 3])
        #expect(seen.map(\.1) == [true, false, false])
        #expect(seen.map(\.2) == [.success, .success, .remoteAccessError])
        let isEmpty = requester.isEmpty
        #expect(isEmpty)
        let hasUnsent = requester.hasUnsent
        #expect(!hasUnsent)
        #expect(requester.outstandingReadAtomics == 0)
    }
}
