import CAllocationCounter
import Fabric
import Glibc

/// A work request's id over a group: the queue pair's index in the high
/// half, the request's sequence number on that queue pair in the low half,
/// so that one completion queue's completions are told apart by pair.
private func requestID(pair: Int, sequence: Int) -> UInt64 { UInt64(pair) << 32 | UInt64(sequence) }

extension FabricClient {
    /// The bandwidth and message-rate tests over a group of queue pairs, as
    /// osu_mbw_mr runs them: each queue pair keeps its own window of
    /// requests in flight, and this one thread posts to the pairs in turn
    /// and polls the group's one completion queue. Returns the total over
    /// the pairs (MB/s, or Mmsg/s for the rate test) and the loop's cost.
    func bandwidth(_ test: PerfTest, size: Int, countPerPair: Int, over group: QueuePairGroup<D>, postList: Int) throws -> (Double, LoopCost) {
        // The same window and signalling as one queue pair's loop, per pair.
        let shape = try BandwidthShape(test, size: size, peer: side.peer)
        let (window, every) = (shape.window, shape.every)
        var request = try side.request(shape.operation, size: size)
        let list = PostList(repeating: request, capacity: postList)
        defer { list.deallocate() }
        let queuePairs = group.queuePairs
        let queue = group.completionQueue
        let pairs = queuePairs.count
        // Made before the timed loop, which only writes into them.
        var posted = [Int](repeating: 0, count: pairs)
        var completed = [Int](repeating: 0, count: pairs)
        var finishedPairs = 0
        let callsBefore = side.socketCalls(of: queuePairs)
        let start = now()
        allocation_counter_enable(1)
        let allocationsBefore = allocation_counter_count()
        while finishedPairs < pairs {
            // One request (or one list) per pair with room in its window,
            // in turns, until no pair has room: the pairs' windows fill side
            // by side.
            var postedInTurn = true
            while postedInTurn {
                postedInTurn = false
                for pair in 0..<pairs where posted[pair] < countPerPair && posted[pair] - completed[pair] < window {
                    if postList > 1 {
                        let length = min(postList, countPerPair - posted[pair], window - (posted[pair] - completed[pair]))
                        for index in 0..<length {
                            let sequence = posted[pair] + index
                            list.set(
                                index, id: requestID(pair: pair, sequence: sequence),
                                signaled: sequence % every == every - 1 || sequence == countPerPair - 1)
                        }
                        let accepted = try queuePairs[pair].postSend(list.prefix(length))
                        posted[pair] += accepted
                        if accepted > 0 { postedInTurn = true }
                        continue
                    }
                    let sequence = posted[pair]
                    request.id = requestID(pair: pair, sequence: sequence)
                    if sequence % every == every - 1 || sequence == countPerPair - 1 {
                        request.flags.insert(.signaled)
                    } else {
                        request.flags.remove(.signaled)
                    }
                    // A full send queue: the pair waits for the poll below,
                    // which handles every completion (a poll inside the
                    // posting would drop those of the other pairs).
                    guard try queuePairs[pair].postSend(request) == .posted else { continue }
                    posted[pair] = sequence + 1
                    postedInTurn = true
                }
            }
            let n = try side.poll(queue)
            for i in 0..<n {
                // A signalled completion stands for its pair's unsignalled
                // requests before it (a queue pair completes in order).
                let id = side.completions[i].workRequestID
                let pair = Int(id >> 32)
                let through = Int(id & 0xFFFF_FFFF) + 1
                if through > completed[pair] {
                    completed[pair] = through
                    if through == countPerPair { finishedPairs += 1 }
                }
            }
        }
        let elapsed = Double(now() - start) / 1e9
        let allocations = allocation_counter_count() - allocationsBefore
        allocation_counter_enable(0)
        let cost = LoopCost(allocations: allocations, socketCalls: difference(side.socketCalls(of: queuePairs), callsBefore))
        let messages = countPerPair * pairs
        if test.isRate { return (Double(messages) / elapsed / 1e6, cost) }
        return (Double(size * messages) / elapsed / 1e6, cost)
    }
}

extension FabricServer {
    /// The server's half over a group: polls the group's completion queue,
    /// and for the send tests reposts each receive on the queue pair it
    /// completed on, until the client says stop (after its last completion,
    /// which needs our acknowledgement: we keep polling until then).
    func run(_ test: PerfTest, countPerPair: Int, over group: QueuePairGroup<D>) throws -> LoopCost {
        let receives = test == .bandwidthSend || test == .rateSend
        let queuePairs = group.queuePairs
        let queue = group.completionQueue
        let expected = receives ? countPerPair * queuePairs.count : 0
        let callsBefore = side.socketCalls(of: queuePairs)
        allocation_counter_enable(1)
        let before = allocation_counter_count()
        var received = 0
        var spins = 0
        while true {
            let n = try pollOrSleep(queue)
            if receives {
                for i in 0..<n where side.completions[i].opcode == .receive {
                    received += 1
                    let pair = Int(side.completions[i].workRequestID)
                    _ = try queuePairs[pair].postReceive(group.receiveRequests[pair])
                }
            }
            spins += 1
            // Blocking, each round may have slept: look at the control
            // channel every time; busy-polling, now and then.
            if received >= expected && (!side.busyPoll || spins % 64 == 0) && control.hasInput() { break }
        }
        let allocations = allocation_counter_count() - before
        allocation_counter_enable(0)
        return LoopCost(allocations: allocations, socketCalls: difference(side.socketCalls(of: queuePairs), callsBefore))
    }
}
