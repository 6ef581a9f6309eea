// A rank for the point-to-point tests: started by any launcher, it runs one
// scenario and prints checked lines ("rank R: MODE ok ..."); a failed check
// prints what differed and exits 1. Modes:
//   pingpong       rank 0 and 1 exchange every size around the eager limit, up to 4 MiB
//   order          rank 0 sends messages alternating around the eager limit
//                  on one tag; rank 1 must receive them in order
//   wildcards      every rank sends to rank 0 with its own tag; rank 0
//                  receives with any source and any tag
//   probe          rank 1 probes, then receives exactly what the probe said
//   truncate       a message longer than the receive buffer, eager and rendezvous
//   synchronous    a synchronous send returns only once matched
//   copies         the copy counter: 0 for a rendezvous, the payload for an
//                  unexpected eager message
//   overtake       rank 0 starts many sends on tag 1, then one on tag 2;
//                  rank 1 receives tag 2 first (needs no buffering it lacks)
//   flood          rank 0 floods rank 1 with eager messages it receives late:
//                  rank 1's resident memory stays bounded
//   threads        8 threads per rank send and receive at once
//   self           sends to this rank itself, before and after the receive
//   async          16 tasks per rank exchange with async forms on a pool of
//                  as many threads as cores (blocking waits would deadlock)
//   misuse         invalid ranks, tags, counts and requests are refused by name
//   drain          rank 0 sends and finalizes at once; rank 1 receives late
//   peer-death     rank 1 ends without finalize after one message; rank 0's
//                  next receive from it, a send to it and finalize fail by name
//   fatal          rank 1 sends to a rank outside the job with the default
//                  error handler: the job ends
import FabricSupport
import Foundation
import Glibc
import MPI
import RankCheck

/// Problems the async mode's tasks found.
final class AsyncOutcome: @unchecked Sendable {  // behind its lock
    private let lock = NSLock()
    private var found: [String] = []
    func add(_ problem: String) { lock.withLock { found.append(problem) } }
    var problems: [String] { lock.withLock { found } }
}

/// The bytes message `sequence` of `size` bytes carries.
func pattern(_ size: Int, _ sequence: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ sequence &* 7 &+ size) }
}

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "pingpong"

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = mode == "fatal" ? .abortJob : .returnErrors
    let rank = mpi.rank
    let size = mpi.size
    let eager = mpi.eagerLimit
    func say(_ text: String) { print("rank \(rank): \(text)") }

    switch mode {
    case "pingpong":
        let sizes = [0, 1, 8, eager - 1, eager, eager + 1, 65536, 1 << 20, (4 << 20) + 3]
        for (sequence, length) in sizes.enumerated() {
            if rank == 0 {
                try mpi.send(pattern(length, sequence), to: 1, tag: sequence)
                let (back, status) = try mpi.receive(UInt8.self, count: length, from: 1, tag: MessageTag(sequence))
                check(status.count == length && back == pattern(length, sequence + 100), "rank 0: \(length) bytes back: \(status)")
            } else if rank == 1 {
                let (values, status) = try mpi.receive(UInt8.self, count: length, from: 0, tag: MessageTag(sequence))
                check(status.source == 0 && status.tag == sequence && status.count == length, "rank 1: status \(status) for \(length) bytes")
                check(values == pattern(length, sequence), "rank 1: the \(length)-byte message differs")
                try mpi.send(pattern(length, sequence + 100), to: 0, tag: sequence)
            }
        }
        say("pingpong ok, \(sizes.count) sizes, eager limit \(eager)")

    case "order":
        let count = 60
        let lengths = (0..<count).map { $0 % 2 == 0 ? eager / 2 : eager * 4 + $0 }
        if rank == 0 {
            var buffers = (0..<count).map { pattern(lengths[$0], $0) }
            var requests: [Request] = []
            for index in 0..<count {
                requests.append(try buffers[index].withUnsafeBytes { try mpi.startSend($0, to: 1, tag: 5) })
            }
            _ = try mpi.waitAll(requests)
            buffers.removeAll()
        } else if rank == 1 {
            // Half the receives posted before the messages arrive, half after.
            let halves = count / 2
            var early = (0..<halves).map { [UInt8](repeating: 0, count: lengths[$0]) }
            var requests: [Request] = []
            for index in 0..<halves {
                requests.append(try early[index].withUnsafeMutableBytes { try mpi.startReceive(into: $0, from: 0, tag: 5) })
            }
            let statuses = try mpi.waitAll(requests)
            for index in 0..<halves {
                check(statuses[index].count == lengths[index] && early[index] == pattern(lengths[index], index), "rank 1: message \(index) out of order or damaged (\(statuses[index]))")
            }
            early.removeAll()
            for index in halves..<count {
                let (values, status) = try mpi.receive(UInt8.self, count: lengths[index], from: 0, tag: 5)
                check(status.count == lengths[index] && values == pattern(lengths[index], index), "rank 1: message \(index) out of order or damaged (\(status))")
            }
            say("order ok, \(count) messages alternating \(eager / 2) and above \(eager * 4) bytes")
        }

    case "wildcards":
        if rank == 0 {
            var seen = Set<Int>()
            for _ in 1..<size {
                let (values, status) = try mpi.receive(Int64.self, count: 4, from: .any, tag: .any)
                check(status.tag == 100 + status.source && values == [Int64(status.source), 1, 2, 3], "rank 0: from \(status): \(values)")
                seen.insert(status.source)
            }
            check(seen == Set(1..<size), "rank 0: heard from \(seen.sorted())")
            say("wildcards ok, \(seen.count) senders")
        } else {
            try mpi.send([Int64(rank), 1, 2, 3], to: 0, tag: 100 + rank)
        }

    case "probe":
        if rank == 0 {
            try mpi.send(pattern(1234, 1), to: 1, tag: 7)
            try mpi.send(pattern(eager * 3, 2), to: 1, tag: 8)
        } else if rank == 1 {
            let first = try mpi.probe(from: 0, tag: 8)
            check(first.count == eager * 3 && first.tag == 8, "rank 1: probe for tag 8 said \(first)")
            let any = try mpi.probe()
            check(any.tag == 7 && any.count == 1234, "rank 1: probe for anything said \(any) (the oldest is tag 7)")
            let (small, _) = try mpi.receive(UInt8.self, count: any.count, from: MessageSource(any.source), tag: MessageTag(any.tag))
            let (large, _) = try mpi.receive(UInt8.self, count: first.count, from: 0, tag: 8)
            check(small == pattern(1234, 1) && large == pattern(eager * 3, 2), "rank 1: probed messages differ")
            check(try mpi.probeIfArrived() == nil, "rank 1: a message arrived from nowhere")
            say("probe ok")
        }

    case "truncate":
        for (sequence, length) in [100, eager * 4].enumerated() {
            if rank == 0 {
                try mpi.send(pattern(length, sequence), to: 1, tag: 3)
            } else if rank == 1 {
                var buffer = [UInt8](repeating: 0, count: length / 2)
                do {
                    _ = try buffer.withUnsafeMutableBytes { try mpi.receive(into: $0, from: 0, tag: 3) }
                    fail("rank 1: a \(length)-byte message fit a \(length / 2)-byte buffer")
                } catch let error as MPIError {
                    check(error.kind == .truncated && error.message.contains("\(length) bytes"), "rank 1: truncation said \(error)")
                    check(buffer == Array(pattern(length, sequence).prefix(length / 2)), "rank 1: the truncated message's first bytes differ")
                    say("truncate ok at \(length) bytes: \(error.message)")
                }
            }
        }

    case "synchronous":
        if rank == 0 {
            let clock = ContinuousClock()
            let standard = try clock.measure { try mpi.send([UInt8](repeating: 1, count: 64), to: 1, tag: 1) }
            let synchronous = try clock.measure { try mpi.synchronousSend([UInt8](repeating: 2, count: 64), to: 1, tag: 2) }
            check(standard < .milliseconds(200), "rank 0: a standard eager send took \(standard)")
            check(synchronous >= .milliseconds(250), "rank 0: a synchronous send returned after \(synchronous), before its receive was posted")
            say("synchronous ok: standard send \(standard), synchronous send \(synchronous)")
        } else if rank == 1 {
            usleep(400_000)
            _ = try mpi.receive(UInt8.self, count: 64, from: 0, tag: 1)
            _ = try mpi.receive(UInt8.self, count: 64, from: 0, tag: 2)
        }

    case "copies":
        let large = 1 << 20
        let small = 1000
        if rank == 0 {
            let before = mpi.pointToPointStatistics
            try mpi.send(pattern(large, 1), to: 1, tag: 1)
            let afterLarge = mpi.pointToPointStatistics
            try mpi.send(pattern(small, 2), to: 1, tag: 2)
            let afterSmall = mpi.pointToPointStatistics
            check(afterLarge.copiedBytes - before.copiedBytes == 0, "rank 0: a rendezvous send copied \(afterLarge.copiedBytes - before.copiedBytes) bytes")
            check(afterSmall.copiedBytes - afterLarge.copiedBytes == small, "rank 0: an eager send copied \(afterSmall.copiedBytes - afterLarge.copiedBytes) bytes, not \(small)")
            say("copies ok on the sender: rendezvous 0, eager \(small)")
        } else if rank == 1 {
            let before = mpi.pointToPointStatistics
            let (values, _) = try mpi.receive(UInt8.self, count: large, from: 0, tag: 1)
            let afterLarge = mpi.pointToPointStatistics
            check(values == pattern(large, 1), "rank 1: the rendezvous message differs")
            check(afterLarge.copiedBytes - before.copiedBytes == 0, "rank 1: a rendezvous receive copied \(afterLarge.copiedBytes - before.copiedBytes) bytes")
            // Wait until the eager message is surely there, unexpected.
            _ = try mpi.probe(from: 0, tag: 2)
            let arrived = mpi.pointToPointStatistics
            let (smallValues, _) = try mpi.receive(UInt8.self, count: small, from: 0, tag: 2)
            let afterSmall = mpi.pointToPointStatistics
            check(smallValues == pattern(small, 2), "rank 1: the eager message differs")
            check(afterSmall.copiedBytes - before.copiedBytes == small, "rank 1: an unexpected eager message cost \(afterSmall.copiedBytes - before.copiedBytes) copied bytes, not \(small)")
            check(arrived.unexpectedMessages > before.unexpectedMessages, "rank 1: the eager message was not unexpected")
            say("copies ok on the receiver: rendezvous 0, unexpected eager \(small); registrations \(afterSmall.registrations)")
        }

    case "overtake":
        let count = 200
        if rank == 0 {
            var buffers = (0..<count).map { pattern(1000, $0) }
            var requests: [Request] = []
            for index in 0..<count { requests.append(try buffers[index].withUnsafeBytes { try mpi.startSend($0, to: 1, tag: 1) }) }
            let last = pattern(77, 999)
            requests.append(try last.withUnsafeBytes { try mpi.startSend($0, to: 1, tag: 2) })
            _ = try mpi.waitAll(requests)
            buffers.removeAll()
            let statistics = mpi.pointToPointStatistics
            say("overtake sender: \(statistics.eagerSends) eager, \(statistics.rendezvousFromCopy) from copies, \(statistics.rendezvousSends) rendezvous")
        } else if rank == 1 {
            usleep(200_000)
            let (last, _) = try mpi.receive(UInt8.self, count: 77, from: 0, tag: 2)
            check(last == pattern(77, 999), "rank 1: the tag-2 message differs")
            for index in 0..<count {
                let (values, _) = try mpi.receive(UInt8.self, count: 1000, from: 0, tag: 1)
                check(values == pattern(1000, index), "rank 1: tag-1 message \(index) out of order or damaged")
            }
            say("overtake ok, \(count) messages held back by one received first")
        }

    case "flood":
        let count = Int(arguments.dropFirst().first ?? "") ?? 20000
        let length = min(8192, eager)
        if rank == 0 {
            // Every send started at once, from one buffer (MPI lets sends
            // share one), as fast as the sender can.
            let message = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 64)
            defer { message.deallocate() }
            pattern(length, 0).withUnsafeBytes { message.copyMemory(from: $0) }
            var requests: [Request] = []
            for _ in 0..<count { requests.append(try mpi.startSend(UnsafeRawBufferPointer(message), to: 1, tag: 1)) }
            _ = try mpi.waitAll(requests)
            let statistics = mpi.pointToPointStatistics
            say("flood sender: sent \(count) messages of \(length) bytes: \(statistics.eagerSends) eager, \(statistics.rendezvousFromCopy) from copies, \(statistics.rendezvousSends) rendezvous")
        } else if rank == 1 {
            let baseline = try ResidentMemory.bytes()
            // The sender floods while this rank only advances MPI (as a
            // rank whose receives come late does), until nothing more
            // arrives for 300 ms.
            var peak = baseline
            var seen = -1
            var quietSince = ContinuousClock.now
            while ContinuousClock.now - quietSince < .milliseconds(300) {
                _ = try mpi.probeIfArrived(from: 0, tag: 2)
                let unexpected = mpi.pointToPointStatistics.unexpectedMessages
                if unexpected != seen {
                    seen = unexpected
                    quietSince = ContinuousClock.now
                    peak = max(peak, try ResidentMemory.bytes())
                }
            }
            peak = max(peak, try ResidentMemory.bytes())
            let expected = pattern(length, 0)
            var buffer = [UInt8](repeating: 0, count: length)
            for index in 0..<count {
                let status = try buffer.withUnsafeMutableBytes { try mpi.receive(into: $0, from: 0, tag: 1) }
                check(status.count == length && buffer == expected, "rank 1: flood message \(index) damaged")
                if index % 1000 == 0 { peak = max(peak, try ResidentMemory.bytes()) }
            }
            let statistics = mpi.pointToPointStatistics
            say("flood ok: \(count) messages of \(length) bytes; resident memory grew by \((peak - baseline) >> 10) KiB at most; \(statistics.unexpectedMessages) unexpected, \(statistics.unexpectedCopies) copied out, \(seen) unexpected before the first receive")
        }

    case "threads":
        let threads = 8
        let rounds = 200
        let peer = rank == 0 ? 1 : 0
        if rank < 2 {
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                do {
                    for round in 0..<rounds {
                        let length = round % 3 == 0 ? eager * 2 : 64
                        let outgoing = pattern(length, thread * 1000 + round + rank)
                        let incoming = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 16)
                        defer { incoming.deallocate() }
                        let receiving = try mpi.startReceive(into: incoming, from: MessageSource(peer), tag: MessageTag(thread))
                        let sending = try outgoing.withUnsafeBytes { try mpi.startSend($0, to: peer, tag: thread) }
                        _ = try mpi.waitAll([sending, receiving])
                        check(Array(incoming) == pattern(length, thread * 1000 + round + peer), "rank \(rank) thread \(thread) round \(round): the message differs")
                    }
                } catch {
                    fail("rank \(rank) thread \(thread): \(error)")
                }
            }
            say("threads ok, \(threads) threads x \(rounds) exchanges, thread level \(mpi.providedThreadLevel)")
        }

    case "async":
        // Rank 0 sends tag 15 first and each next tag only once the reply
        // to the previous came back; rank 1 runs one task per tag, each
        // awaiting its message, then replying. Its tasks start in tag
        // order: with waits that blocked a thread, the pool's few threads
        // would all wait for the lowest tags, which come last.
        let tasks = 16
        if rank == 0 {
            for task in (0..<tasks).reversed() {
                let length = task % 4 == 0 ? eager * 2 : 100
                try mpi.send(pattern(length, task), to: 1, tag: task)
                let (reply, _) = try mpi.receive(UInt8.self, count: length, from: 1, tag: MessageTag(task))
                check(reply == pattern(length, task + 1), "rank 0: reply \(task) differs")
            }
            say("async ok, \(tasks) exchanges answered by tasks")
        } else if rank == 1 {
            let done = DispatchSemaphore(value: 0)
            let outcome = AsyncOutcome()
            // Detached: this top-level code's actor is the main thread,
            // which waits on the semaphore below.
            Task.detached {
                await withTaskGroup(of: String?.self) { group in
                    for task in 0..<tasks {
                        group.addTask {
                            let length = task % 4 == 0 ? eager * 2 : 100
                            let incoming = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 16)
                            let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 16)
                            defer { incoming.deallocate(); outgoing.deallocate() }
                            pattern(length, task + 1).withUnsafeBytes { outgoing.copyMemory(from: $0) }
                            do {
                                _ = try await mpi.receive(into: incoming, from: 0, tag: MessageTag(task))
                                try await mpi.send(UnsafeRawBufferPointer(outgoing), to: 0, tag: task)
                                return Array(incoming) == pattern(length, task) ? nil : "task \(task): the message differs"
                            } catch {
                                return "task \(task): \(error)"
                            }
                        }
                    }
                    for await problem in group { if let problem { outcome.add(problem) } }
                }
                done.signal()
            }
            done.wait()
            check(outcome.problems.isEmpty, "rank 1: \(outcome.problems)")
            say("async ok, \(tasks) tasks awaiting at once")
        }

    case "self":
        try mpi.send(pattern(100, 1), to: rank, tag: 1)
        let (first, status) = try mpi.receive(UInt8.self, count: 100, from: MessageSource(rank), tag: 1)
        check(first == pattern(100, 1) && status.source == rank, "rank \(rank): a message to itself differs")
        let large = pattern(eager * 8, 2)
        var into = [UInt8](repeating: 0, count: large.count)
        try large.withUnsafeBytes { outgoing in
            try into.withUnsafeMutableBytes { incoming in
                let sending = try mpi.startSend(outgoing, to: rank, tag: 2)
                let receiving = try mpi.startReceive(into: incoming, from: MessageSource(rank), tag: 2)
                _ = try mpi.waitAll([sending, receiving])
            }
        }
        check(into == large, "rank \(rank): a large message to itself differs")
        say("self ok")

    case "misuse":
        func refused(_ kind: MPIError.Kind, _ what: String, _ body: () throws -> Void) {
            do {
                try body()
                fail("rank \(rank): \(what) was accepted")
            } catch let error as MPIError {
                check(error.kind == kind, "rank \(rank): \(what) gave \(error.kind): \(error.message)")
                say("\(what) refused: \(error.message)")
            } catch {
                fail("rank \(rank): \(what) threw \(error)")
            }
        }
        refused(.invalidRank, "a send to rank \(size)") { try mpi.send([1], to: size, tag: 0) }
        refused(.invalidRank, "a receive from rank -2") { _ = try mpi.receive(UInt8.self, count: 1, from: MessageSource(-2)) }
        refused(.invalidTag, "a send with tag -5") { try mpi.send([1], to: 0, tag: -5) }
        refused(.invalidArgument, "a receive of -1 elements") { _ = try mpi.receive(UInt8.self, count: -1) }
        let request = try [UInt8(1)].withUnsafeBytes { try mpi.startSend($0, to: rank, tag: 9) }
        _ = try mpi.receive(UInt8.self, count: 1, from: MessageSource(rank), tag: 9)
        _ = try mpi.wait(request)
        refused(.invalidRequest, "a wait on a request already completed") { _ = try mpi.wait(request) }
        try mpi.finalize()
        refused(.invalidState, "a send after finalize") { try mpi.send([1], to: 0, tag: 0) }
        say("misuse ok")
        exit(0)

    case "drain":
        let count = 100
        if rank == 0 {
            for index in 0..<count { try mpi.send(pattern(500, index), to: 1, tag: 1) }
            try mpi.send(pattern(eager * 4, 7), to: 1, tag: 2)
        } else if rank == 1 {
            usleep(500_000)
            for index in 0..<count {
                let (values, _) = try mpi.receive(UInt8.self, count: 500, from: 0, tag: 1)
                check(values == pattern(500, index), "rank 1: message \(index) sent before finalize differs")
            }
            let (large, _) = try mpi.receive(UInt8.self, count: eager * 4, from: 0, tag: 2)
            check(large == pattern(eager * 4, 7), "rank 1: the large message differs")
            say("drain ok, \(count + 1) messages sent before the sender's finalize all arrived")
        }

    case "peer-death":
        // Rank 1's connection breaks as it posts its second send (its
        // FABRIC_TCP_FAULTS says "error post=2"): to rank 0 it is dead.
        if rank == 1 {
            try mpi.send([UInt8](repeating: 1, count: 10), to: 0, tag: 1)
            do {
                try mpi.send([UInt8](repeating: 2, count: 10), to: 0, tag: 9)
                _ = try mpi.receive(UInt8.self, count: 10, from: 0, tag: 2)
                fail("rank 1: a receive over a broken connection completed")
            } catch {
                say("peer-death: rank 1's own operation failed: \(error.message)")
            }
        } else if rank == 0 {
            _ = try mpi.receive(UInt8.self, count: 10, from: 1, tag: 1)
            let started = ContinuousClock.now
            do {
                _ = try mpi.receive(UInt8.self, count: 10, from: 1, tag: 2)
                fail("rank 0: a receive from a dead rank completed")
            } catch {
                check(error.kind == .peerFailed, "rank 0: the receive failed with \(error.kind): \(error.message)")
                say("peer-death: the pending receive failed after \(ContinuousClock.now - started): \(error.message)")
            }
            do {
                try mpi.send([1], to: 1, tag: 3)
                fail("rank 0: a send to a dead rank completed")
            } catch {
                check(error.kind == .peerFailed, "rank 0: the later send failed with \(error.kind)")
                say("peer-death: a later send failed at once: \(error.message)")
            }
        }
        do {
            try mpi.finalize()
            fail("rank \(rank): finalize with a dead connection succeeded")
        } catch {
            say("peer-death ok: finalize reported \(error.message)")
        }
        exit(0)

    case "fatal":
        if rank == 1 { try mpi.send([1], to: 7, tag: 0) }
        usleep(5_000_000)
        fail("rank \(rank): still running after rank 1's error")

    default:
        fail("unknown mode '\(mode)'")
    }
    try mpi.finalize()
} catch {
    fail("\(error)")
}
