// A rank for the datatype tests: started by any launcher, rank 0 sends
// messages described by datatypes to rank 1, which receives them through
// other datatypes of the same signature. Every byte of the receiver's
// buffer is checked (the elements hold what was sent, the gaps keep their
// sentinel), as are the status's counts and each side's copy counter.
// Prints "rank R: MODE ok ..."; a failed check prints what differed and
// exits 1. Modes:
//   layouts   vectors, structures with gaps, subarrays, resized types:
//             eager and rendezvous, spread out on one side, both or neither
//   self      the same to this rank itself
//   misuse    uncommitted, freed and null-buffer sends are refused by name
import Foundation
import Glibc
import MPI
import RankCheck

/// Memory for `count` elements of `type`, its address placed so that
/// every byte of the elements falls inside, filled with `fill(i)`.
final class ElementBuffer {
    let memory: UnsafeMutableRawBufferPointer
    let address: UnsafeMutableRawPointer

    init(_ type: Datatype, count: Int, fill: (Int) -> UInt8) {
        let last = max(0, count - 1) * type.extent
        let lower = min(type.trueLowerBound, type.trueLowerBound + last)
        let upper = max(type.trueLowerBound + type.trueExtent, type.trueLowerBound + type.trueExtent + last)
        memory = .allocate(byteCount: upper - lower + 64, alignment: 16)
        for index in memory.indices { memory[index] = fill(index) }
        address = memory.baseAddress! + 32 - lower
    }

    deinit { memory.deallocate() }

    var bytes: [UInt8] { Array(memory) }
}

/// One message: the sender's elements and the receiver's, same signature.
struct Case {
    var name: String
    var sent: Datatype
    var sentCount: Int
    var received: Datatype
    var receivedCount: Int
    /// The receiver's elements hold fewer bytes than are sent.
    var truncates = false
    /// The sender's bytes are not one range (a rendezvous packs them).
    var sentSpreadOut = true
}

func committed(_ type: Datatype) throws -> Datatype {
    try type.commit()
    return type
}

func cases() throws -> [Case] {
    let pair = try committed(Datatype.structure(blockLengths: [1, 1], byteDisplacements: [0, 8], types: [.int32, .double]))
    let blocks4K = try committed(Datatype.vector(count: 256, blockLength: 512, stride: 1024, of: .double))
    let blocks4KWide = try committed(Datatype.vector(count: 256, blockLength: 512, stride: 1536, of: .double))
    let contiguousMiB = try committed(Datatype.contiguous(131_072, of: .double))
    let subarray = try committed(Datatype.subarray(sizes: [40, 50, 60], subsizes: [20, 30, 40], starts: [5, 10, 15], of: .double))
    let subarrayFortran = try committed(Datatype.subarray(sizes: [45, 35, 25], subsizes: [40, 30, 20], starts: [3, 0, 5], order: .columnMajor, of: .double))
    let twoSided = try Datatype.hindexed(blockLengths: [1, 1], byteDisplacements: [-8, 8], of: .int64)
    let resized = try committed(twoSided.resized(lowerBound: -16, extent: 40))
    let smallVector = try committed(Datatype.vector(count: 100, blockLength: 8, stride: 16, of: .double))
    let tinyBlocks = try committed(Datatype.vector(count: 16_384, blockLength: 1, stride: 3, of: .double))
    return [
        Case(name: "vector of 4 KiB blocks to a wider vector (1 MiB, rendezvous)", sent: blocks4K, sentCount: 1, received: blocks4KWide, receivedCount: 1),
        Case(name: "vector to contiguous (1 MiB)", sent: blocks4K, sentCount: 1, received: contiguousMiB, receivedCount: 1),
        Case(name: "contiguous to vector (1 MiB)", sent: contiguousMiB, sentCount: 1, received: blocks4K, receivedCount: 1, sentSpreadOut: false),
        Case(name: "structures with gaps, eager", sent: try committed(.vector(count: 50, blockLength: 2, stride: 3, of: pair)), sentCount: 1,
             received: pair, receivedCount: 100),
        Case(name: "structures with gaps, rendezvous", sent: try committed(.vector(count: 3000, blockLength: 2, stride: 3, of: pair)), sentCount: 1,
             received: try committed(.vector(count: 2000, blockLength: 3, stride: 5, of: pair)), receivedCount: 1),
        Case(name: "subarray of a 3-D array to one in Fortran order", sent: subarray, sentCount: 1, received: subarrayFortran, receivedCount: 1),
        Case(name: "subarray to contiguous doubles", sent: subarray, sentCount: 1, received: .double, receivedCount: 24_000),
        Case(name: "resized, negative lower bound, eager", sent: resized, sentCount: 3, received: resized, receivedCount: 3),
        Case(name: "resized, negative lower bound, rendezvous", sent: resized, sentCount: 3000, received: .int64, receivedCount: 6000),
        Case(name: "8-byte blocks both sides (16384 ranges)", sent: tinyBlocks, sentCount: 1, received: tinyBlocks, receivedCount: 1),
        Case(name: "truncated into a vector, rendezvous", sent: .double, sentCount: 4096, received: smallVector, receivedCount: 1, truncates: true, sentSpreadOut: false),
        Case(name: "truncated into a vector, eager", sent: .double, sentCount: 1000, received: smallVector, receivedCount: 1, truncates: true, sentSpreadOut: false),
    ]
}

func senderByte(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 13 &+ 5) }
let sentinel: UInt8 = 0xEE

/// The receiver's buffer as it must be: the sender's elements packed,
/// unpacked into a buffer of sentinels through the receiver's type.
func expectedReceiverBytes(_ test: Case) throws -> [UInt8] {
    let source = ElementBuffer(test.sent, count: test.sentCount, fill: senderByte)
    let sentBytes = try test.sent.packSize(count: test.sentCount)
    var packed = [UInt8](repeating: 0, count: sentBytes)
    var position = 0
    try packed.withUnsafeMutableBytes { try test.sent.pack(source.address, count: test.sentCount, into: $0, position: &position) }
    let target = ElementBuffer(test.received, count: test.receivedCount) { _ in sentinel }
    let capacity = try test.received.packSize(count: test.receivedCount)
    position = 0
    try packed.withUnsafeBytes {
        try test.received.unpack(from: UnsafeRawBufferPointer(rebasing: $0[..<min(capacity, sentBytes)]), position: &position,
                                 into: target.address, count: test.truncates ? 1 : test.receivedCount)
    }
    return target.bytes
}

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "layouts"

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    let rank = mpi.rank
    func say(_ text: String) { print("rank \(rank): \(text)") }
    let all = try cases()

    switch mode {
    case "layouts", "self":
        let toSelf = mode == "self"
        let sender = toSelf ? rank : 0
        let receiver = toSelf ? rank : 1
        guard toSelf || rank <= 1 else { break }
        var figures: [String] = []
        for (tag, test) in all.enumerated() {
            let bytes = try test.sent.packSize(count: test.sentCount)
            let eager = bytes <= mpi.eagerLimit
            var request: Request?
            var target: ElementBuffer?
            let beforeReceive = mpi.pointToPointStatistics
            if rank == receiver {
                let buffer = ElementBuffer(test.received, count: test.receivedCount) { _ in sentinel }
                target = buffer
                request = try mpi.startReceive(into: buffer.address, count: test.receivedCount, datatype: test.received, from: MessageSource(sender), tag: MessageTag(tag))
            }
            if rank == sender {
                let source = ElementBuffer(test.sent, count: test.sentCount, fill: senderByte)
                let before = mpi.pointToPointStatistics
                try mpi.send(source.address, count: test.sentCount, datatype: test.sent, to: receiver, tag: tag)
                let copied = mpi.pointToPointStatistics.copiedBytes - before.copiedBytes
                // Eager: into the bounce slot; rendezvous: packed into
                // registered memory only when the elements are spread out.
                if !toSelf {
                    let expected = eager || test.sentSpreadOut ? bytes : 0
                    check(copied == expected, "rank 0: \(test.name): the send copied \(copied) bytes, not \(expected)")
                }
                figures.append("\(test.name): sent \(bytes) B, copied \(copied)")
            }
            if rank == receiver, let request, let target {
                var status = MessageStatus(source: sender, tag: tag, count: try test.received.packSize(count: test.receivedCount))
                var failure: MPIError?
                do { status = try mpi.wait(request) } catch { failure = error }
                if test.truncates {
                    check(failure?.kind == .truncated, "rank \(rank): \(test.name): \(failure.map(\.message) ?? "no truncation reported")")
                } else if let failure {
                    throw failure
                }
                let expected = try expectedReceiverBytes(test)
                let got = target.bytes
                if got != expected {
                    let first = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }!.offset
                    fail("rank \(rank): \(test.name): byte \(first) of the receive buffer is \(got[first]), not \(expected[first])")
                }
                check(status.source == sender && status.tag == tag, "rank \(rank): \(test.name): status \(status)")
                if !test.truncates {
                    check(status.count(of: test.received) == test.receivedCount, "rank \(rank): \(test.name): count \(String(describing: status.count(of: test.received)))")
                    check(status.elements(of: test.received) == test.receivedCount * test.received.basicElementCount,
                          "rank \(rank): \(test.name): elements \(String(describing: status.elements(of: test.received)))")
                }
                let copied = mpi.pointToPointStatistics.copiedBytes - beforeReceive.copiedBytes
                if !toSelf {
                    let delivered = min(bytes, try test.received.packSize(count: test.receivedCount))
                    // Eager: out of the slot; rendezvous: the READ scatters.
                    let expected = eager ? delivered : 0
                    check(copied == expected, "rank 1: \(test.name): the receive copied \(copied) bytes, not \(expected)")
                }
                figures.append("\(test.name): received, copied \(copied)")
            }
            if !toSelf {
                // In step, so that each case's counters are its own.
                if rank == 1 { try mpi.send([UInt8](), to: 0, tag: 1000 + tag) } else { _ = try mpi.receive(UInt8.self, count: 0, from: 1, tag: MessageTag(1000 + tag)) }
            }
        }
        for line in figures { say(line) }
        say("\(mode) ok, \(all.count) cases")

    case "misuse":
        let fresh = try Datatype.vector(count: 2, blockLength: 1, stride: 2, of: .int32)
        var value = [Int32](repeating: 0, count: 4)
        func refusal(_ body: () throws(MPIError) -> Void) -> MPIError? {
            do { try body() } catch { return error }
            return nil
        }
        let peer = (rank + 1) % mpi.size
        let uncommitted = value.withUnsafeBytes { bytes in refusal { () throws(MPIError) in try mpi.send(bytes.baseAddress, count: 1, datatype: fresh, to: peer, tag: 1) } }
        check(uncommitted?.kind == .invalidDatatype && uncommitted!.message.contains("not committed"), "uncommitted: \(String(describing: uncommitted))")
        try fresh.commit()
        try fresh.free()
        let freed = value.withUnsafeMutableBytes { bytes in refusal { () throws(MPIError) in _ = try mpi.startReceive(into: bytes.baseAddress, count: 1, datatype: fresh, from: .any, tag: .any) } }
        check(freed?.kind == .invalidDatatype && freed!.message.contains("freed"), "freed: \(String(describing: freed))")
        let null = refusal { () throws(MPIError) in try mpi.send(nil, count: 3, datatype: .double, to: peer, tag: 1) }
        check(null?.kind == .invalidBuffer, "null buffer: \(String(describing: null))")
        let negative = refusal { () throws(MPIError) in try mpi.send(nil, count: -1, datatype: .double, to: peer, tag: 1) }
        check(negative?.kind == .invalidArgument, "negative count: \(String(describing: negative))")
        // Nothing was sent: the connection still carries a message.
        try mpi.send([Int32(rank)], to: peer, tag: 2)
        let (back, _) = try mpi.receive(Int32.self, count: 1, from: MessageSource((rank + mpi.size - 1) % mpi.size), tag: 2)
        check(back == [Int32((rank + mpi.size - 1) % mpi.size)], "after the refusals: \(back)")
        say("misuse ok: \(uncommitted!.message); \(freed!.message); \(null!.message)")

    default:
        fail("unknown mode \(mode)")
    }
    try mpi.finalize()
} catch let error as MPIError {
    fail("rank error: \(error.message)")
} catch {
    fail("\(error)")
}
