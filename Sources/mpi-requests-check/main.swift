// A rank for the tests of point-to-point beyond plain sends and receives:
// send modes, matched probes, persistent requests, cancel, request free,
// statuses, send-receive-replace and messages over 4 GiB. Ranks 0 and 1
// take part; each checks what it got and prints "rank R: MODE ok ...";
// a failed check prints what differed and exits 1. Modes:
//   modes       buffered (blocking, nonblocking, typed; a buffer too small;
//               detach waits for the sends to leave), ready, synchronous
//   matched     mprobe and improbe take a message no other receive can;
//               mrecv and imrecv receive it, eager and rendezvous
//   persistent  send-init and recv-init started 50 times, startAll, every mode
//   cancel      a pending receive is cancelled; a matched one is not; a
//               freed request completes on its own; get-status leaves it
//   replace     sendrecv-replace, bytes and a datatype
//   large [BYTES] one message of BYTES (default 4 GiB + 4 KiB)
import Foundation
import Glibc
import MPI
import RankCheck

func pattern(_ size: Int, _ sequence: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ sequence &* 7 &+ size) }
}

func refusal(_ body: () throws(MPIError) -> Void) -> MPIError? {
    do { try body() } catch { return error }
    return nil
}

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "modes"

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    let rank = mpi.rank
    let eager = mpi.eagerLimit
    func say(_ text: String) { print("rank \(rank): \(text)") }
    let sizes = [0, 100, eager + 1, 1 << 20]

    switch mode {
    case "modes":
        // Connected first: the timing below is of the sends, not of the
        // connection, which a first send waits for.
        // The messages are made before: in a debug build making a
        // megabyte's pattern takes a good part of the receiver's sleep.
        let messages = sizes.enumerated().map { pattern($0.element, $0.offset) }
        if rank == 0 { try mpi.send([UInt8](), to: 1, tag: 0) } else if rank == 1 { _ = try mpi.receive(UInt8.self, count: 0, from: 0, tag: 0) }
        if rank == 0 {
            // No buffer attached, then one too small: refused by name.
            let none = pattern(10, 0).withUnsafeBytes { bytes in refusal { () throws(MPIError) in try mpi.bufferedSend(bytes, to: 1, tag: 1) } }
            check(none?.kind == .invalidBuffer && none!.message.contains("no buffer attached"), "no buffer: \(String(describing: none))")
            let room = sizes.reduce(0, +) + sizes.count * MPIRuntime.bufferedSendOverhead
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: room, alignment: 16)
            try mpi.attachBuffer(memory)
            let twice = refusal { () throws(MPIError) in try mpi.attachBuffer(memory) }
            check(twice?.kind == .invalidBuffer, "a second attach: \(String(describing: twice))")
            // Every size buffered at once: they fit exactly; one more does not.
            for (index, message) in messages.enumerated() {
                try message.withUnsafeBytes { try mpi.bufferedSend($0, to: 1, tag: 10 + index) }
            }
            // (The eager ones left at once, and their pieces are free again;
            // the two rendezvous ones wait for rank 1.)
            let full = pattern(1000, 0).withUnsafeBytes { bytes in refusal { () throws(MPIError) in try mpi.bufferedSend(bytes, to: 1, tag: 99) } }
            check(full?.kind == .invalidBuffer && full!.message.contains("largest free piece"), "a full buffer: \(String(describing: full))")
            // Detach waits until rank 1 has received them all (it receives late).
            let started = ContinuousClock.now
            let returned = try mpi.detachBuffer()
            let waited = ContinuousClock.now - started
            check(returned.baseAddress == memory.baseAddress && returned.count == room, "detach returned another buffer")
            check(waited > .milliseconds(150), "detach returned after \(waited), before the receiver took the large messages")
            // Reattached: nonblocking and typed buffered sends; ready and synchronous.
            try mpi.attachBuffer(memory)
            let request = try pattern(100, 5).withUnsafeBytes { try mpi.startBufferedSend($0, to: 1, tag: 20) }
            check(try mpi.test(request) != nil, "an ibsend was not complete once copied")
            let values: [Int32] = [1, 2, 3, 4, 5, 6]
            let column = try Datatype.vector(count: 3, blockLength: 1, stride: 2, of: .int32)
            try column.commit()
            try values.withUnsafeBytes { try mpi.bufferedSend($0.baseAddress, count: 1, datatype: column, to: 1, tag: 21) }
            _ = try mpi.detachBuffer()
            memory.deallocate()
            try pattern(eager * 3, 6).withUnsafeBytes { try mpi.readySend($0, to: 1, tag: 22) }
            try mpi.synchronousSend(pattern(50, 7), to: 1, tag: 23)
            say("modes ok: detach waited \(waited); \(full!.message)")
        } else if rank == 1 {
            // (A signal can cut a usleep short: sleep by the clock.)
            let wakeUp = ContinuousClock.now + .milliseconds(300)
            while ContinuousClock.now < wakeUp { usleep(10_000) }
            for (index, size) in sizes.enumerated() {
                let (values, status) = try mpi.receive(UInt8.self, count: size, from: 0, tag: MessageTag(10 + index))
                check(values == messages[index] && status.count == size, "buffered message \(index) of \(size) bytes differs")
            }
            let (small, _) = try mpi.receive(UInt8.self, count: 100, from: 0, tag: 20)
            check(small == pattern(100, 5), "the ibsend message differs")
            let (column, _) = try mpi.receive(Int32.self, count: 3, from: 0, tag: 21)
            check(column == [1, 3, 5], "the typed buffered send brought \(column)")
            let (ready, _) = try mpi.receive(UInt8.self, count: eager * 3, from: 0, tag: 22)
            check(ready == pattern(eager * 3, 6), "the ready send differs")
            let (synchronous, _) = try mpi.receive(UInt8.self, count: 50, from: 0, tag: 23)
            check(synchronous == pattern(50, 7), "the synchronous send differs")
            say("modes ok")
        }

    case "matched":
        if rank == 0 {
            // All at once: rank 1 probes for each next one before it
            // receives the one it holds.
            let messages = sizes.enumerated().map { index, size in
                let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
                memory.copyBytes(from: pattern(size, index))
                return memory
            }
            _ = try mpi.waitAll(messages.map { try mpi.startSend(UnsafeRawBufferPointer($0), to: 1, tag: 5) })
            for memory in messages { memory.deallocate() }
            try mpi.send(pattern(10, 9), to: 1, tag: 6)
        } else if rank == 1 {
            // improbe before anything can have come: nothing, nothing taken.
            check(try mpi.matchedProbeIfArrived(from: 0, tag: 7) == nil, "improbe found a message never sent")
            for (index, size) in sizes.enumerated() {
                let (message, status) = index % 2 == 0
                    ? try mpi.matchedProbe(from: 0, tag: 5)
                    : try { () throws -> (message: Message, status: MessageStatus) in
                        while true { if let found = try mpi.matchedProbeIfArrived(from: .any, tag: 5) { return found } }
                    }()
                check(status.count == size && status.source == 0 && status.tag == 5, "probe \(index): \(status)")
                // Taken: a plain probe no longer sees it (the next one is older now).
                if index + 1 < sizes.count {
                    let next = try mpi.probe(from: 0, tag: 5)
                    check(next.count == sizes[index + 1], "after mprobe \(index) a probe saw \(next.count) bytes, not the next message")
                }
                var into = [UInt8](repeating: 0, count: size)
                let received = try into.withUnsafeMutableBytes { buffer in
                    index % 2 == 0 ? try mpi.receive(message, into: buffer) : try mpi.wait(try mpi.startReceive(message, into: buffer))
                }
                check(into == pattern(size, index) && received.count == size, "matched message \(index) of \(size) bytes differs")
                let again = refusal { () throws(MPIError) in _ = try mpi.receive(message, into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) }
                check(again?.kind == .invalidRequest, "a second mrecv of one message: \(String(describing: again))")
            }
            let (last, _) = try mpi.receive(UInt8.self, count: 10, from: 0, tag: 6)
            check(last == pattern(10, 9), "the message after the matched ones differs")
            say("matched ok, \(sizes.count) messages")
        }

    case "persistent":
        let rounds = 50
        if rank <= 1 {
            let peer = 1 - rank
            let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: eager * 4, alignment: 16)
            let incoming = UnsafeMutableRawBufferPointer.allocate(byteCount: eager * 4, alignment: 16)
            let attached = UnsafeMutableRawBufferPointer.allocate(byteCount: eager * 16, alignment: 16)
            try mpi.attachBuffer(attached)
            for mode in [SendMode.standard, .synchronous, .buffered, .ready] {
                for length in [16, eager * 4] {
                    let send = mpi.persistentSend(UnsafeRawBufferPointer(rebasing: outgoing[..<length]), to: peer, tag: 3, mode: mode)
                    let receive = mpi.persistentReceive(into: UnsafeMutableRawBufferPointer(rebasing: incoming[..<length]), from: MessageSource(peer), tag: 3)
                    for round in 0..<rounds {
                        for index in 0..<length { outgoing[index] = UInt8(truncatingIfNeeded: index &+ round &+ rank) }
                        try mpi.startAll([receive, send])
                        let twice = refusal { () throws(MPIError) in try mpi.start(send) }
                        check(twice?.kind == .invalidRequest, "a second start of an active request: \(String(describing: twice))")
                        let statuses = try mpi.waitAll([receive, send])
                        check(statuses[0].count == length, "\(mode) round \(round): \(statuses[0])")
                        for index in 0..<length where incoming[index] != UInt8(truncatingIfNeeded: index &+ round &+ peer) {
                            fail("\(mode) round \(round), \(length) bytes: byte \(index) differs")
                        }
                    }
                    // Inactive: a wait returns an empty status at once.
                    check(try mpi.wait(send).source == -1, "a wait on an inactive request")
                    try mpi.free(send)
                    try mpi.free(receive)
                    let freed = refusal { () throws(MPIError) in try mpi.start(send) }
                    check(freed?.kind == .invalidRequest, "a start of a freed request: \(String(describing: freed))")
                }
            }
            _ = try mpi.detachBuffer()
            for buffer in [outgoing, incoming, attached] { buffer.deallocate() }
            say("persistent ok, 4 modes × 2 sizes × \(rounds) rounds")
        }

    case "cancel":
        if rank == 0 {
            _ = try mpi.receive(UInt8.self, count: 0, from: 1, tag: 1)
            try mpi.send(pattern(100, 2), to: 1, tag: 2)
            try mpi.send(pattern(eager * 2, 3), to: 1, tag: 3)
            try mpi.send(pattern(30, 4), to: 1, tag: 4)
        } else if rank == 1 {
            let into = UnsafeMutableRawBufferPointer.allocate(byteCount: eager * 2, alignment: 16)
            into.initializeMemory(as: UInt8.self, repeating: 0)
            do {
                // Nothing will ever come with tag 9: cancelled, it completes.
                let pending = try mpi.startReceive(into: into, from: 0, tag: 9)
                check(try mpi.status(of: pending) == nil, "a receive nobody sends to has a status")
                try mpi.cancel(pending)
                let status = try mpi.wait(pending)
                check(status.isCancelled, "the cancelled receive reports \(status)")
                let collected = refusal { () throws(MPIError) in try mpi.cancel(pending) }
                check(collected?.kind == .invalidRequest, "cancel of a completed request: \(String(describing: collected))")
                // A receive matched before the cancel is not cancelled.
                let matched = try mpi.startReceive(into: into, from: 0, tag: 2)
                try mpi.send([UInt8](), to: 0, tag: 1)
                while try mpi.status(of: matched) == nil {}
                // get-status left it: it still completes with wait.
                try mpi.cancel(matched)
                let got = try mpi.wait(matched)
                check(!got.isCancelled && got.count == 100 && Array(into[..<100]) == pattern(100, 2), "the matched receive: \(got)")
            }
            into.deallocate()
            // A freed receive completes on its own; the next one still matches in order.
            let freedBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: eager * 2, alignment: 16)
            let freed = try mpi.startReceive(into: freedBuffer, from: 0, tag: 3)
            try mpi.free(freed)
            let (after, _) = try mpi.receive(UInt8.self, count: 30, from: 0, tag: 4)
            check(after == pattern(30, 4), "the message after the freed receive differs")
            while Array(freedBuffer[(eager * 2 - 10)...]) != Array(pattern(eager * 2, 3)[(eager * 2 - 10)...]) { _ = try mpi.probeIfArrived(from: 0, tag: 99) }
            check(Array(freedBuffer) == pattern(eager * 2, 3), "the freed receive's buffer differs")
            let stale = refusal { () throws(MPIError) in _ = try mpi.wait(freed) }
            check(stale?.kind == .invalidRequest, "a wait on a freed request: \(String(describing: stale))")
            freedBuffer.deallocate()
            say("cancel ok")
        }

    case "replace":
        if rank <= 1 {
            let peer = 1 - rank
            for size in [8, eager * 2] {
                var values = pattern(size, rank)
                let status = try values.withUnsafeMutableBytes {
                    try mpi.sendReceiveReplacing($0, to: peer, sendTag: 1, from: MessageSource(peer), receiveTag: 1)
                }
                check(values == pattern(size, peer) && status.count == size, "sendrecv-replace of \(size) bytes brought other bytes")
            }
            var matrix: [Double] = (0..<16).map { Double($0 + rank * 100) }
            let diagonal = try Datatype.vector(count: 4, blockLength: 1, stride: 5, of: .double)
            try diagonal.commit()
            let status = try matrix.withUnsafeMutableBytes {
                try mpi.sendReceiveReplacing($0.baseAddress, count: 1, datatype: diagonal, to: peer, sendTag: 2, from: MessageSource(peer), receiveTag: 2)
            }
            let expected: [Double] = (0..<16).map { $0 % 5 == 0 ? Double($0 + peer * 100) : Double($0 + rank * 100) }
            check(matrix == expected && status.count(of: diagonal) == 1, "sendrecv-replace of a diagonal: \(matrix)")
            say("replace ok")
        }

    case "large":
        let bytes = arguments.count > 1 ? Int(arguments[1]) ?? 0 : (4 << 30) + 4096
        if rank <= 1 {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 4096)
            defer { buffer.deallocate() }
            let words = UnsafeMutableBufferPointer<UInt64>(start: buffer.baseAddress!.assumingMemoryBound(to: UInt64.self), count: bytes / 8)
            var started = ContinuousClock.now
            if rank == 0 {
                for index in words.indices { words[index] = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 }
                _ = try mpi.receive(UInt8.self, count: 0, from: 1, tag: 0)
                try mpi.send(UnsafeRawBufferPointer(buffer), to: 1, tag: 1)
            } else {
                for index in words.indices { words[index] = 0 }
                // Timed from when both sides are ready.
                try mpi.send([UInt8](), to: 0, tag: 0)
                started = ContinuousClock.now
                let status = try mpi.receive(into: buffer, from: 0, tag: 1)
                say("received \(bytes) bytes in \(ContinuousClock.now - started)")
                check(status.count == bytes, "the status says \(status.count) bytes, not \(bytes)")
                for index in words.indices where words[index] != UInt64(index) &* 0x9E37_79B9_7F4A_7C15 {
                    fail("word \(index) of the \(bytes)-byte message differs")
                }
                // As elements of a type: a count past 2^31 through the Swift API.
                check(status.count(of: .byte) == bytes && bytes > Int(Int32.max) && status.count(of: .int64) == bytes / 8, "the counts of \(bytes) bytes")
            }
            say("large ok, \(bytes) bytes in \(ContinuousClock.now - started)")
        }

    default:
        fail("unknown mode '\(mode)'")
    }
    try mpi.finalize()
} catch {
    fail("\(error)")
}
