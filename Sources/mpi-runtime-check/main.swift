// A rank for the MPI runtime's tests: started by any launcher, it
// initialises the runtime, exchanges runtime messages, and prints one
// checked line. Modes:
//   ring          send to both ring neighbours at once, receive from both
//   all           send to every rank, receive from every rank
//   busy SECONDS  rank 0 computes outside MPI that long before receiving;
//                 the others connect and send to it meanwhile
//   abort R       rank R aborts the job with exit code 9
//   wait R        rank R waits for a message nobody sends (for timeouts)
//   startup       prints when this rank passed the first barrier
//                 (CLOCK_REALTIME, ns), for start-up figures
//   first-contact each rank sends to every other in turn, timing each
//                 first message (connection included) and a second one
import Glibc
import MPI
import RankCheck

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "ring"
var started = timespec()
clock_gettime(CLOCK_MONOTONIC, &started)

do {
    let runtime = try MPIRuntime.initialize()
    let rank = runtime.world.rank
    let size = runtime.world.size
    guard runtime.selfCommunicator.size == 1, try runtime.selfCommunicator.worldRank(of: 0) == rank, try runtime.world.worldRank(of: rank) == rank else {
        fail("rank \(rank): the world and self communicators disagree with the runtime")
    }
    func message(_ from: Int, _ to: Int) -> [UInt8] { Array("runtime message from \(from) to \(to)".utf8) }
    func expect(from peer: Int) throws(MPIError) {
        let received = try runtime.receiveRuntimeMessage(from: peer)
        guard received == message(peer, rank) else {
            fail("rank \(rank): from rank \(peer) came '\(String(decoding: received, as: UTF8.self))'")
        }
    }
    switch mode {
    case "ring" where size > 1:
        let next = (rank + 1) % size
        let previous = (rank + size - 1) % size
        try runtime.sendRuntimeMessage(message(rank, next), to: next)
        if previous != next { try runtime.sendRuntimeMessage(message(rank, previous), to: previous) }
        try expect(from: previous)
        if previous != next { try expect(from: next) }
    case "all":
        for peer in 0..<size where peer != rank { try runtime.sendRuntimeMessage(message(rank, peer), to: peer) }
        for peer in 0..<size where peer != rank { try expect(from: peer) }
    case "busy":
        let seconds = UInt32(arguments.dropFirst().first.flatMap { UInt32($0) } ?? 2)
        if rank == 0 {
            sleep(seconds)
            // The others connected while this rank computed: their queue
            // pairs were accepted by the runtime's listening thread.
            let connectedWhileBusy = runtime.connectionCount
            for peer in 1..<size { try expect(from: peer) }
            print("rank 0: \(connectedWhileBusy) connections accepted while computing")
        } else {
            try runtime.sendRuntimeMessage(message(rank, 0), to: 0)
        }
    case "abort":
        let target = arguments.dropFirst().first.flatMap { Int($0) } ?? 0
        if rank == target { runtime.abort(exitCode: 9, message: "rank \(rank) aborts on purpose") }
        sleep(30)
        fail("rank \(rank): still running 30 s after rank \(target)'s abort")
    case "wait":
        let target = arguments.dropFirst().first.flatMap { Int($0) } ?? 0
        if rank == target { _ = try runtime.receiveRuntimeMessage(from: (rank + 1) % size) }
    case "startup":
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        print("rank \(rank) passed the first barrier at \(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)) ns")
    case "first-contact":
        func microseconds(_ body: () throws(MPIError) -> Void) throws(MPIError) -> Int {
            var before = timespec()
            var after = timespec()
            clock_gettime(CLOCK_MONOTONIC, &before)
            try body()
            clock_gettime(CLOCK_MONOTONIC, &after)
            return Int((after.tv_sec - before.tv_sec) * 1_000_000 + (after.tv_nsec - before.tv_nsec) / 1000)
        }
        var first: [Int] = []
        var second: [Int] = []
        for step in 1..<size {
            let peer = (rank + step) % size
            first.append(try microseconds { () throws(MPIError) in try runtime.sendRuntimeMessage(message(rank, peer), to: peer) })
        }
        for step in 1..<size {
            let peer = (rank + step) % size
            second.append(try microseconds { () throws(MPIError) in try runtime.sendRuntimeMessage(message(rank, peer), to: peer) })
        }
        for _ in 0..<2 { for peer in 0..<size where peer != rank { try expect(from: peer) } }
        print("rank \(rank) first-contact-us \(first.map(String.init).joined(separator: ",")) second-us \(second.map(String.init).joined(separator: ","))")
    case "ring":
        break
    default:
        fail("unknown mode '\(mode)'")
    }
    let connections = runtime.connectionCount
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    try runtime.finalize()
    let elapsed = Double(now.tv_sec - started.tv_sec) + Double(now.tv_nsec - started.tv_nsec) / 1e9
    print("rank \(rank) of \(size): \(mode) ok, \(connections) connections, backend \(runtime.backend), via \(runtime.bootstrapProtocol), \(String(Int(elapsed * 1000))) ms, reachable at \(runtime.address.hosts.first ?? "?")")
} catch {
    fail("\(error)")
}
