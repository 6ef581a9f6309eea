// A rank for the window tests: windows allocated from the registered pool
// and created over the program's memory; puts and gets under fences,
// under locks and under post/start/complete/wait; accumulates, fetch-and-
// op and compare-and-swap from every rank at once, checked for atomicity
// (every fetched value seen exactly once); a target that computes without
// calling MPI while the others work on its memory (PassiveTarget.swift);
// bad input. Prints "rank R: windows ok ..."; a failed check prints what
// differed and exits 1.
import Glibc
import MPI
import RankCheck

do {
    let mpi = try MPIRuntime.initialize()
    mpi.errorHandler = .returnErrors
    let rank = mpi.rank
    let size = mpi.size
    let next = (rank + 1) % size
    let previous = (rank + size - 1) % size
    let count = 4096  // int64 per rank: 32 KiB, one put of it is above the eager limit

    // Allocated window: each rank puts its stamp into the next rank's
    // window under a fence, then gets the previous rank's back.
    let (window, base) = try mpi.allocateWindow(bytes: count * 8, displacementUnit: 8)
    let attributes = try mpi.attributes(of: window)
    check(attributes.size == count * 8 && attributes.displacementUnit == 8 && attributes.flavor == .allocated && attributes.base == base,
          "allocated window's attributes: \(attributes)")
    check(mpi.pointToPointStatistics.windowRegistrations == 2, "registrations of a window (memory and control block): \(mpi.pointToPointStatistics.windowRegistrations)")
    let mine = base!.bindMemory(to: Int64.self, capacity: count)
    for index in 0..<count { mine[index] = -1 }
    let stamp = (0..<count).map { Int64(rank * 1_000_000 + $0) }
    try mpi.fence(on: window)
    try mpi.put(stamp, count: count, datatype: .int64, to: next, displacement: 0, on: window)
    try mpi.fence(on: window)
    check((0..<count).allSatisfy { mine[$0] == Int64(previous * 1_000_000 + $0) }, "fence put: rank \(rank) holds \(mine[0]), \(mine[count - 1])")
    var fetched = [Int64](repeating: 0, count: count)
    try withPointer(to: &fetched) { (pointer) throws(MPIError) in
        try mpi.get(into: pointer, count: count, datatype: .int64, from: next, displacement: 0, on: window)
        try mpi.fence(on: window)
    }
    check(fetched == stamp, "fence get: rank \(rank) read back \(fetched[0]), \(fetched[count - 1]) from rank \(next)")

    // A spread-out origin (every other int64) into one range at displacement 10.
    let spaced = try Datatype.vector(count: 8, blockLength: 1, stride: 2, of: .int64)
    try spaced.commit()
    let source = (0..<16).map { Int64(rank * 100 + $0) }
    try mpi.put(source, count: 1, datatype: spaced, to: next, displacement: 10, targetCount: 8, targetDatatype: .int64, on: window)
    try mpi.fence(on: window)
    check((0..<8).allSatisfy { mine[10 + $0] == Int64(previous * 100 + 2 * $0) }, "a put from a vector type: \(Array(UnsafeBufferPointer(start: mine + 10, count: 8)))")
    // A spread-out target (every third int64 from displacement 200), and
    // a get from it into a spread-out origin (every other one).
    let everyThird = try Datatype.vector(count: 5, blockLength: 1, stride: 3, of: .int64)
    try everyThird.commit()
    let five = (0..<5).map { Int64(rank * 10 + $0) }  // (alive until the fence: the put reads it then)
    try mpi.put(five, count: 5, datatype: .int64, to: next, displacement: 200, targetCount: 1, targetDatatype: everyThird, on: window)
    try mpi.fence(on: window)
    check((0..<13).allSatisfy { mine[200 + $0] == ($0 % 3 == 0 ? Int64(previous * 10 + $0 / 3) : Int64(previous * 1_000_000 + 200 + $0)) },
          "a put into a vector type: \(Array(UnsafeBufferPointer(start: mine + 200, count: 13)))")
    let everyOther = try Datatype.vector(count: 5, blockLength: 1, stride: 2, of: .int64)
    try everyOther.commit()
    var spreadBack = [Int64](repeating: -7, count: 9)
    try withPointer(to: &spreadBack) { (pointer) throws(MPIError) in
        try mpi.get(into: pointer, count: 1, datatype: everyOther, from: previous, displacement: 200, targetCount: 1, targetDatatype: everyThird, on: window)
        try mpi.fence(on: window)
    }
    let twoBack = (previous + size - 1) % size
    check(spreadBack == (0..<9).map { $0 % 2 == 0 ? Int64(twoBack * 10 + $0 / 2) : -7 }, "a get from a vector type into one: \(spreadBack)")
    try everyThird.free()
    try everyOther.free()
    try mpi.fence(.noSucceed, on: window)

    // Created window over this program's memory, under locks.
    let own = UnsafeMutablePointer<Int64>.allocate(capacity: count)
    own.initialize(repeating: 0, count: count)
    let created = try mpi.createWindow(UnsafeMutableRawPointer(own), bytes: count * 8, displacementUnit: 8)
    try mpi.lock(.exclusive, target: next, on: created)
    try mpi.put(stamp, count: count, datatype: .int64, to: next, displacement: 0, on: created)
    try mpi.unlock(target: next, on: created)
    try mpi.barrier()
    check((0..<count).allSatisfy { own[$0] == Int64(previous * 1_000_000 + $0) }, "put under a lock: \(own[0])")
    try mpi.lock(.shared, target: previous, on: created)
    var back = [Int64](repeating: 0, count: 16)
    try withPointer(to: &back) { (pointer) throws(MPIError) in
        try mpi.get(into: pointer, count: 16, datatype: .int64, from: previous, displacement: count - 16, on: created)
        try mpi.flush(target: previous, on: created)
    }
    try mpi.unlock(target: previous, on: created)
    let expectedBack = (count - 16..<count).map { Int64(((previous + size - 1) % size) * 1_000_000 + $0) }
    check(back == expectedBack, "get under a shared lock: \(back.prefix(2))")
    try mpi.barrier()

    try checkAtomics(mpi, window: created, words: own)
    try checkPostStartCompleteWait(mpi, window: window, words: mine)
    try checkRequestBased(mpi, window: created, words: own)
    try checkBadInput(mpi, window: created)
    try mpi.free(created)
    own.deallocate()
    try mpi.free(window)
    try checkDynamicWindow(mpi)
    try checkSharedWindow(mpi)
    try checkPassiveTarget(mpi)
    try spaced.free()
    // Every window freed: every registration gone, so no key of theirs works.
    check(mpi.pointToPointStatistics.windowRegistrations == 0, "window registrations left after every window was freed: \(mpi.pointToPointStatistics.windowRegistrations)")
    print("rank \(rank): windows ok, \(size) ranks")
    try mpi.finalize()
} catch {
    fail("\(error)")
}

/// Every rank at once on rank 0's words 0 to 5 of `window`: fetch-and-add
/// (every old value seen once across ranks), int64 sum accumulates, double
/// sums and int32 maxima (the locked mechanism), compare-and-swap
/// increments, replace; blocking and under lock-all.
func checkAtomics(_ mpi: MPIRuntime, window: Window, words: UnsafeMutablePointer<Int64>) throws(MPIError) {
    let rank = mpi.rank, size = mpi.size
    let rounds = 200
    if rank == 0 { for index in 0..<16 { words[index] = 0 } }
    try mpi.barrier()
    try mpi.lockAll(on: window)
    var olds: [Int64] = []
    var one: Int64 = 1, old: Int64 = 0
    var half = Double(0.5), third: Int32 = 0
    for round in 0..<rounds {
        try mpi.fetchAndOp(&one, result: &old, datatype: .int64, target: 0, displacement: 0, operation: .sum, on: window)
        try mpi.flush(target: 0, on: window)
        olds.append(old)
        var add = Int64(rank + 1)
        try mpi.accumulate(&add, count: 1, datatype: .int64, to: 0, displacement: 1, operation: .sum, on: window)
        try mpi.accumulate(&half, count: 1, datatype: .double, to: 0, displacement: 2, operation: .sum, on: window)
        third = Int32(rank * rounds + round)
        try mpi.accumulate(&third, count: 1, datatype: .int32, to: 0, displacement: 3, operation: .reduce(.maximum), on: window)
        // An increment by compare-and-swap: retried until it holds.
        var seen: Int64 = 0
        var zero: Int64 = 0
        try mpi.fetchAndOp(&zero, result: &seen, datatype: .int64, target: 0, displacement: 4, operation: .noOperation, on: window)
        try mpi.flush(target: 0, on: window)
        while true {
            var wanted = seen + 1, expected = seen, got: Int64 = 0
            try mpi.compareAndSwap(&wanted, compare: &expected, result: &got, datatype: .int64, target: 0, displacement: 4, on: window)
            try mpi.flush(target: 0, on: window)
            if got == seen { break }
            seen = got
        }
    }
    var replacement = Int64(rank + 7)
    try mpi.accumulate(&replacement, count: 1, datatype: .int64, to: 0, displacement: 5, operation: .replace, on: window)
    try mpi.unlockAll(on: window)
    try mpi.barrier()
    // Every fetched counter value was seen by exactly one fetch.
    let gathered = try mpi.gather(olds, count: rounds, root: 0)
    if rank == 0 {
        let all = gathered.sorted()
        check(all == (0..<Int64(size * rounds)).map { $0 }, "fetch-and-add saw \(all.count) values, not each of 0..<\(size * rounds) once")
        check(words[0] == Int64(size * rounds), "fetch-and-add total \(words[0])")
        check(words[1] == Int64(rounds * size * (size + 1) / 2), "int64 sum accumulates: \(words[1])")
        let doubles = UnsafeMutableRawPointer(words + 2).load(as: Double.self)
        check(doubles == Double(size * rounds) * 0.5, "double sum accumulates (locked): \(doubles)")
        let maximum = UnsafeMutableRawPointer(words + 3).load(as: Int32.self)
        check(maximum == Int32((size - 1) * rounds + rounds - 1), "int32 max accumulates (locked): \(maximum)")
        check(words[4] == Int64(size * rounds), "compare-and-swap increments: \(words[4])")
        check((7..<7 + Int64(size)).contains(words[5]), "replace: \(words[5])")
    }
    try mpi.barrier()
}

/// Request-based operations under a lock: a put, then (after its request
/// completed) a get of it back, an accumulate and a get-accumulate, each
/// waited for through its request; refused outside a lock.
func checkRequestBased(_ mpi: MPIRuntime, window: Window, words: UnsafeMutablePointer<Int64>) throws(MPIError) {
    let rank = mpi.rank, size = mpi.size
    let next = (rank + 1) % size, previous = (rank + size - 1) % size
    let values = (0..<64).map { Int64(rank * 77 + $0) }
    words[300] = 0
    words[301] = 0
    try mpi.barrier()
    try mpi.lock(.exclusive, target: next, on: window)
    _ = try mpi.wait(try mpi.startPut(values, count: 64, datatype: .int64, to: next, displacement: 200, on: window))
    var back = [Int64](repeating: 0, count: 64)
    var sum: Int64 = 5, before: Int64 = -1
    var fetchedBefore: Int64 = -1
    try withPointer(to: &back) { (pointer) throws(MPIError) in
        let requests = [try mpi.startGet(into: pointer, count: 64, datatype: .int64, from: next, displacement: 200, on: window),
                        try mpi.startAccumulate(&sum, count: 1, datatype: .int64, to: next, displacement: 300, operation: .sum, on: window),
                        try mpi.startGetAccumulate(&sum, count: 1, datatype: .int64, result: &before, to: next, displacement: 301, operation: .replace, on: window)]
        _ = try mpi.waitAll(requests)
    }
    try mpi.getAccumulate(nil, count: 1, datatype: .int64, result: &fetchedBefore, to: next, displacement: 300, operation: .noOperation, on: window)
    try mpi.unlock(target: next, on: window)
    check(back == values, "a request-based get of a request-based put: \(back.prefix(3))")
    check(fetchedBefore == 5, "a request-based accumulate then a fetch: \(fetchedBefore)")
    check(before == 0, "a request-based get-accumulate's old value: \(before)")
    try mpi.barrier()
    check(words[300] == 5 && words[301] == 5 && words[200] == Int64(previous * 77), "request-based operations landed: \(words[300]) \(words[301]) \(words[200])")
    do {
        _ = try mpi.startPut(values, count: 1, datatype: .int64, to: next, displacement: 0, on: window)
        fail("a request-based put outside a lock was accepted")
    } catch {
        check(error.kind == .windowSynchronization && error.message.contains("outside a lock"), "a request-based put outside a lock: \(error.message)")
    }
    try mpi.barrier()
}

/// A dynamic window: each rank attaches 64 int64, the ranks exchange
/// addresses, then put, get and fetch-and-add at the next rank's address;
/// an access past the range is refused by name; after a detach and a new
/// attach elsewhere, the new range serves and the old address is refused.
func checkDynamicWindow(_ mpi: MPIRuntime) throws(MPIError) {
    let rank = mpi.rank, size = mpi.size
    let next = (rank + 1) % size, previous = (rank + size - 1) % size
    let window = try mpi.createDynamicWindow()
    check(try mpi.attributes(of: window).flavor == .dynamic, "a dynamic window's flavor")
    let first = UnsafeMutablePointer<Int64>.allocate(capacity: 64)
    first.initialize(repeating: 0, count: 64)
    try mpi.attach(first, bytes: 512, to: window)
    var addresses = try mpi.allgatherAddresses(Int(bitPattern: UInt(bitPattern: first)))
    try mpi.lockAll(on: window)
    let stamp = (0..<8).map { Int64(rank * 31 + $0) }
    try mpi.put(stamp, count: 8, datatype: .int64, to: next, displacement: addresses[next] + 64, on: window)
    var one: Int64 = 1, old: Int64 = -1
    try mpi.fetchAndOp(&one, result: &old, datatype: .int64, target: next, displacement: addresses[next], operation: .sum, on: window)
    try mpi.flush(target: next, on: window)
    var back = [Int64](repeating: 0, count: 8)
    try withPointer(to: &back) { (pointer) throws(MPIError) in
        try mpi.get(into: pointer, count: 8, datatype: .int64, from: next, displacement: addresses[next] + 64, on: window)
        try mpi.flush(target: next, on: window)
    }
    check(back == stamp && old == 0, "a dynamic window: read back \(back.prefix(2)), fetched \(old)")
    do {
        try mpi.put(stamp, count: 8, datatype: .int64, to: next, displacement: addresses[next] + 480, on: window)
        fail("a put past a dynamic window's attached range was accepted")
    } catch {
        check(error.kind == .outsideWindow && error.message.contains("no range attached there"), "a put past the attached range: \(error.message)")
    }
    try mpi.unlockAll(on: window)
    try mpi.barrier()
    check(first[0] == 1 && (0..<8).allSatisfy { first[8 + $0] == Int64(previous * 31 + $0) }, "a dynamic window's memory: \(first[0]), \(first[8])")
    // Detach; attach other memory; the old address is refused, the new one serves.
    let second = UnsafeMutablePointer<Int64>.allocate(capacity: 8)
    second.initialize(repeating: 0, count: 8)
    try mpi.detach(first, from: window)
    try mpi.attach(second, bytes: 64, to: window)
    let oldAddresses = addresses
    addresses = try mpi.allgatherAddresses(Int(bitPattern: UInt(bitPattern: second)))
    try mpi.lockAll(on: window)
    try mpi.put(stamp, count: 8, datatype: .int64, to: next, displacement: addresses[next], on: window)
    do {
        try mpi.put(stamp, count: 1, datatype: .int64, to: next, displacement: oldAddresses[next], on: window)
        fail("a put to a detached range was accepted")
    } catch {
        check(error.kind == .outsideWindow, "a put to a detached range: \(error.message)")
    }
    try mpi.unlockAll(on: window)
    try mpi.barrier()
    check((0..<8).allSatisfy { second[$0] == Int64(previous * 31 + $0) }, "the second attached range: \(second[0])")
    try mpi.detach(second, from: window)
    try mpi.free(window)
    first.deallocate()
    second.deallocate()
}

/// A shared-memory window over the ranks of this host: parts of
/// different sizes (rank 1's empty), laid one after another; each rank
/// stores into its own part and loads every other part through
/// `sharedQuery`; a put into the next rank's part shows there too.
func checkSharedWindow(_ mpi: MPIRuntime) throws(MPIError) {
    guard let node = try mpi.split(mpi.world, type: .sharedMemory, key: 0) else { fail("split by type gave no communicator") }
    let rank = node.rank, size = node.size
    let counts = (0..<size).map { $0 == 1 ? 0 : 8 * ($0 + 1) }
    let (window, base) = try mpi.allocateSharedWindow(bytes: counts[rank] * 8, displacementUnit: 8, on: node)
    check(try mpi.attributes(of: window).flavor == .shared && (base == nil) == (counts[rank] == 0), "a shared window's base and flavor")
    if let base {
        let mine = base.assumingMemoryBound(to: Int64.self)
        for index in 0..<counts[rank] { mine[index] = Int64(rank * 1000 + index) }
    }
    try mpi.synchronize(window)
    try mpi.barrier(node)
    var expectedOffset = 0
    for other in 0..<size {
        let (otherBase, bytes, unit) = try mpi.sharedQuery(window, rank: other)
        check(bytes == counts[other] * 8 && unit == 8, "shared query of rank \(other): \(bytes) bytes, unit \(unit)")
        if let otherBase {
            if let base {
                let myOffset = counts[..<rank].reduce(0, +) * 8
                check(otherBase == base - myOffset + expectedOffset, "rank \(other)'s part is not where the parts are laid one after another")
            }
            let values = otherBase.assumingMemoryBound(to: Int64.self)
            check((0..<counts[other]).allSatisfy { values[$0] == Int64(other * 1000 + $0) }, "rank \(other)'s part as rank \(rank) loads it: \(values[0])")
        }
        expectedOffset += counts[other] * 8
    }
    check(try mpi.sharedQuery(window, rank: nil).base == (try mpi.sharedQuery(window, rank: 0).base), "a shared query of no rank gives the first part")
    try mpi.barrier(node)  // (every rank has read the parts before any put changes one)
    // A put into the next non-empty part (rank 1's is empty) shows in
    // that rank's loads.
    func targetOf(_ writer: Int) -> Int {
        var chosen = (writer + 1) % size
        while counts[chosen] == 0 { chosen = (chosen + 1) % size }
        return chosen
    }
    let target = targetOf(rank)
    do {
        try mpi.lock(.shared, target: target, on: window)
        var value = Int64(-rank - 1)
        try mpi.put(&value, count: 1, datatype: .int64, to: target, displacement: 0, on: window)
        try mpi.unlock(target: target, on: window)
    }
    try mpi.barrier(node)
    try mpi.synchronize(window)
    let writers = (0..<size).filter { targetOf($0) == rank }
    if let base, !writers.isEmpty {
        let first = base.load(as: Int64.self)
        check(writers.contains { Int64(-$0 - 1) == first }, "a put into a shared part: \(first), writers \(writers)")
    }
    try mpi.free(window)
    try mpi.free(node)
}

/// Post/start/complete/wait on a ring: each rank exposes its memory to
/// the previous rank and accesses the next one's.
func checkPostStartCompleteWait(_ mpi: MPIRuntime, window: Window, words: UnsafeMutablePointer<Int64>) throws(MPIError) {
    let rank = mpi.rank, size = mpi.size
    let next = (rank + 1) % size, previous = (rank + size - 1) % size
    try mpi.post(to: try mpi.world.group.including([previous]), on: window)
    try mpi.start(to: try mpi.world.group.including([next]), on: window)
    var value = Int64(rank + 5000)
    try mpi.put(&value, count: 1, datatype: .int64, to: next, displacement: 100, on: window)
    try mpi.complete(on: window)
    try mpi.waitForOrigins(on: window)
    check(words[100] == Int64(previous + 5000), "post/start/complete/wait put: \(words[100])")
}

/// Bad input is refused by name, and the connection to the target keeps
/// working: point-to-point messages pass after an out-of-window put.
func checkBadInput(_ mpi: MPIRuntime, window: Window) throws(MPIError) {
    let size = mpi.size, next = (mpi.rank + 1) % size, previous = (mpi.rank + size - 1) % size
    func expectError(_ what: String, _ kind: MPIError.Kind, containing text: String, _ body: () throws(MPIError) -> Void) {
        do {
            try body()
            fail("\(what) was accepted")
        } catch {
            check(error.kind == kind && error.message.contains(text), "\(what): \(error.kind) \(error.message)")
        }
    }
    var value: Int64 = 1
    expectError("a put outside any epoch", .windowSynchronization, containing: "outside an access epoch") { () throws(MPIError) in
        try mpi.put(&value, count: 1, datatype: .int64, to: next, displacement: 0, on: window)
    }
    expectError("an unlock without a lock", .windowSynchronization, containing: "has not locked") { () throws(MPIError) in
        try mpi.unlock(target: next, on: window)
    }
    try mpi.lock(.shared, target: next, on: window)
    expectError("a lock taken twice", .windowSynchronization, containing: "locked already") { () throws(MPIError) in
        try mpi.lock(.shared, target: next, on: window)
    }
    expectError("a put past the window's end", .outsideWindow, containing: "outside rank \(next)'s part") { () throws(MPIError) in
        try mpi.put(&value, count: 2, datatype: .int64, to: next, displacement: 4095, on: window)
    }
    expectError("a get at a negative displacement", .outsideWindow, containing: "displacement -1") { () throws(MPIError) in
        try mpi.get(into: &value, count: 1, datatype: .int64, from: next, displacement: -1, on: window)
    }
    expectError("a put to rank \(size)", .invalidRank, containing: "rank \(size)") { () throws(MPIError) in
        try mpi.put(&value, count: 1, datatype: .int64, to: size, displacement: 0, on: window)
    }
    expectError("an accumulate with a user operation", .invalidArgument, containing: "user operation") { () throws(MPIError) in
        try mpi.accumulate(&value, count: 1, datatype: .int64, to: next, displacement: 0, operation: .reduce(.user(commutative: true) { _, _, _, _ in }), on: window)
    }
    try mpi.unlock(target: next, on: window)
    // The connections still carry messages.
    try mpi.send([Int64(mpi.rank)], to: next, tag: 9)
    let (got, _) = try mpi.receive(Int64.self, count: 1, from: MessageSource(previous), tag: 9)
    check(got == [Int64(previous)], "a message after the refused accesses: \(got)")
    expectError("a put of 2 int64 into 3 int32", .invalidDatatype, containing: "the counts or datatypes differ") { () throws(MPIError) in
        var two: (Int64, Int64) = (1, 2)
        try mpi.lockAll(on: window)
        defer { try? mpi.unlockAll(on: window) }
        try mpi.put(&two, count: 2, datatype: .int64, to: next, displacement: 0, targetCount: 3, targetDatatype: .int32, on: window)
    }
    // Memory that cannot be registered (rank 0 gives an unmapped page):
    // every rank refuses the window, rank 0 saying why.
    do {
        let page = mmap(nil, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        munmap(page, 4096)
        var own = [Int64](repeating: 0, count: 512)
        try withPointer(to: &own) { (pointer) throws(MPIError) in
            _ = try mpi.createWindow(mpi.rank == 0 ? page : pointer, bytes: 4096)
        }
        fail("a window over unmapped memory was made")
    } catch {
        let expected = mpi.rank == 0 ? "registering 4096 bytes of window memory" : "rank 0 could not register its memory"
        check(error.message.contains(expected), "a window over unmapped memory: \(error.kind) \(error.message)")
    }
    let (gone, _) = try mpi.allocateWindow(bytes: 8)
    try mpi.free(gone)
    expectError("a fence on a freed window", .invalidWindow, containing: "is freed") { () throws(MPIError) in try mpi.fence(on: gone) }
}

extension MPIRuntime {
    /// Every rank's address, by rank.
    func allgatherAddresses(_ address: Int) throws(MPIError) -> [Int] {
        var all = [Int](repeating: 0, count: size)
        var mine = address
        try withPointer(to: &all) { (output) throws(MPIError) in
            try allgather(&mine, count: 1, datatype: .int64, into: output, receiveCount: 1, receiveDatatype: .int64)
        }
        return all
    }

    /// Every rank's `values` (`count` each) on `root`, in rank order.
    func gather(_ values: [Int64], count: Int, root: Int) throws(MPIError) -> [Int64] {
        var all = [Int64](repeating: 0, count: rank == root ? count * size : 0)
        try withPointer(to: &all) { (output) throws(MPIError) in
            try gather(values, count: count, datatype: .int64, into: output, receiveCount: count, receiveDatatype: .int64, root: root)
        }
        return all
    }
}

/// Runs `body` with the address of `array`'s elements, which stays put
/// for the call (a get lands there at the flush inside `body`).
func withPointer<T>(to array: inout [T], _ body: (UnsafeMutableRawPointer?) throws(MPIError) -> Void) throws(MPIError) {
    var failure: MPIError?
    array.withUnsafeMutableBytes { bytes in
        do throws(MPIError) { try body(bytes.baseAddress) } catch { failure = error }
    }
    if let failure { throw failure }
}
