import Fabric
import Foundation
import Glibc

/// The server process: serves whatever the client asks, over the fabric and
/// over a raw TCP connection, until the client says quit.
func serve<D: FabricDevice>(device: D, control: ControlChannel, host: String, capacity: Int) throws {
    let side = try FabricSide(device: device, capacity: capacity)
    let listener = try device.listen(on: Endpoint(host: host, port: 0), backlog: 4)
    let (rawListener, rawPort) = try PlainSocket.listen(host: host, port: 0)
    try control.send("ports \(listener.endpoint.port) \(rawPort) \(capacity)")
    // The groups of queue pairs the client's plan runs over (--queue-pairs
    // above one), connected after the first queue pair and in this order.
    var groupSizes: [Int] = []
    for word in try control.expect("groups") {
        guard let size = Int(word), size > 1, PerfPlan.queuePairRange.contains(size) else { throw PerfError("bad groups line: '\(word)'") }
        groupSizes.append(size)
    }
    guard let request = try listener.next(timeout: .seconds(60)) else { throw PerfError("the client did not connect") }
    side.queuePair = try request.accept(side.setup, privateData: []) { (qp) throws(FabricError) in
        for _ in 0..<side.receiveDepth {
            _ = try qp.postReceive(side.receiveRequest)
        }
    }
    var groups: [Int: QueuePairGroup<D>] = [:]
    for size in groupSizes {
        let group = try QueuePairGroup(side: side, size: size)
        try group.accept(from: listener, receiveDepth: side.receiveDepth)
        groups[size] = group
    }
    let rawFD = try PlainSocket.accept(rawListener)
    for size in groupSizes { try groups[size]!.acceptRaw(from: rawListener) }
    close(rawListener)
    defer { close(rawFD) }
    let remote = side.receiveRegion.remote()
    try control.send("memory \(remote.address) \(remote.key.rawValue)")
    let words = try control.expect("memory")
    side.peer = RemoteMemory(address: UInt64(words[0])!, key: RemoteKey(rawValue: UInt32(words[1])!))
    let server = FabricServer(side: side, control: control)
    while true {
        let words = try control.receive().split(separator: " ").map(String.init)
        if words.first == "idle", words.count == 2, let milliseconds = Int(words[1]) {
            try control.send("ready")
            let cpu = try idleCPU(side: side, milliseconds: milliseconds)
            try control.send("done \(cpu)")
            continue
        }
        // run TEST SIZE COUNT MODE fabric|raw PAIRS; COUNT is per queue pair.
        guard words.first == "run", words.count == 7, let test = PerfTest(rawValue: words[1]),
              let size = Int(words[2]), let count = Int(words[3]), let pairs = Int(words[6]) else {
            if words.first == "quit" { return }
            throw PerfError("unexpected control line: \(words.joined(separator: " "))")
        }
        let group = groups[pairs]
        guard pairs == 1 || group != nil else { throw PerfError("no group of \(pairs) queue pairs was set up") }
        let busyPoll = words[4] == "poll"
        side.busyPoll = busyPoll
        // "done ALLOCATIONS CALLS": the loop's heap allocations and socket
        // calls ("-": not counted), for the client's per-message figures.
        if words[5] == "fabric" {
            try control.send("ready")
            let cost: LoopCost
            if let group {
                cost = try server.run(test, countPerPair: count, over: group)
            } else {
                cost = try server.run(test, size: size, count: count)
            }
            if test != .latencySend && test != .latencyWrite {
                _ = try control.expect("stop")
            }
            try control.send("done \(cost.allocations) \(cost.socketCalls.map(String.init) ?? "-")")
        } else if let group {
            var streams = RawStreams(descriptors: group.rawDescriptors, buffer: side.receiveBuffer, busyPoll: busyPoll)
            try control.send("ready")
            streams.sink(size: test.effectiveSize(size), countPerStream: count)
            try control.send("done 0 \(streams.calls)")
        } else {
            var raw = RawTCP(fd: rawFD, buffer: side.receiveBuffer, capacity: capacity, busyPoll: busyPoll)
            try control.send("ready")
            if test.isLatency {
                let (request, response) = rawShape(test, size: size)
                raw.echo(request: request, response: response, iterations: count + max(10, count / 10))
            } else {
                raw.sink(size: test.effectiveSize(size), count: count)
            }
            try control.send("done 0 \(raw.calls)")
        }
    }
}

/// Request and response sizes of the raw exchange that stands for a test.
func rawShape(_ test: PerfTest, size: Int) -> (Int, Int) {
    switch test {
    case .latencySend, .latencyWrite: return (size, size)
    case .latencyRead, .latencyReadPassive: return (8, size)
    case .latencyWriteCompletion: return (size, 8)
    default: return (8, 8)
    }
}

/// One cell of the plan.
struct MeasurementKey: Hashable {
    var test: PerfTest
    var size: Int
    var mode: String
    var load: PerfPlan.Load
    var raw: Bool
}

/// The client process: connects, runs the plan with interleaved
/// repetitions, and returns every measurement.
func drive<D: FabricDevice>(device: D, control: ControlChannel, host: String, plan: PerfPlan, capacity: Int, progress: (String) -> Void) throws -> [Measurement] {
    let side = try FabricSide(device: device, capacity: capacity)
    let ports = try control.expect("ports")
    guard ports.count == 3, let fabricPort = UInt16(ports[0]), let rawPort = UInt16(ports[1]), let serverCapacity = Int(ports[2]) else {
        throw PerfError("bad ports line")
    }
    guard serverCapacity >= capacity else { throw PerfError("the server's buffers (\(serverCapacity) B) are smaller than the largest size asked") }
    try control.send((["groups"] + plan.groupSizes.map(String.init)).joined(separator: " "))
    let fabricEndpoint = Endpoint(host: host, port: fabricPort)
    let (queuePair, _) = try device.connect(to: fabricEndpoint, side.setup, options: ConnectOptions()) { (qp) throws(FabricError) in
        for _ in 0..<side.receiveDepth {
            _ = try qp.postReceive(side.receiveRequest)
        }
    }
    side.queuePair = queuePair
    // In the order the server accepts them: the first queue pair, then the
    // groups'; the first raw connection, then the groups'.
    var groups: [Int: QueuePairGroup<D>] = [:]
    for size in plan.groupSizes {
        let group = try QueuePairGroup(side: side, size: size)
        try group.connect(device, to: fabricEndpoint)
        groups[size] = group
    }
    let rawFD = try PlainSocket.connect(host: host, port: rawPort)
    defer { close(rawFD) }
    for size in plan.groupSizes { try groups[size]!.connectRaw(host: host, port: rawPort) }
    let memory = try control.expect("memory")
    side.peer = RemoteMemory(address: UInt64(memory[0])!, key: RemoteKey(rawValue: UInt32(memory[1])!))
    let remote = side.receiveRegion.remote()
    try control.send("memory \(remote.address) \(remote.key.rawValue)")

    let client = FabricClient(side: side)
    /// One repetition of the fabric's side of a cell, `count` per queue pair.
    func measureFabric(_ test: PerfTest, size: Int, count: Int, pairs: Int, postList: Int) throws -> (RepetitionResult, LoopCost) {
        if let group = groups[pairs] {
            let (value, cost) = try client.bandwidth(test, size: test.effectiveSize(size), countPerPair: count, over: group, postList: postList)
            return (.figures(Samples([value])), cost)
        }
        if test.isLatency {
            let (timings, cost) = try client.latency(test, size: size, iterations: count)
            return (.timings(timings), cost)
        }
        let (value, cost) = try client.bandwidth(test, size: test.effectiveSize(size), count: count, postList: postList)
        return (.figures(Samples([value])), cost)
    }
    /// One repetition of the raw reference's side, and its send/recv calls.
    func measureRaw(_ test: PerfTest, size: Int, count: Int, pairs: Int, busyPoll: Bool) -> (RepetitionResult, Int) {
        let effective = test.effectiveSize(size)
        if let group = groups[pairs] {
            var streams = RawStreams(descriptors: group.rawDescriptors, buffer: side.sendBuffer, busyPoll: busyPoll)
            let seconds = streams.stream(size: effective, countPerStream: count)
            let messages = Double(count * pairs)
            let figure = test.isRate ? messages / seconds / 1e6 : messages * Double(effective) / seconds / 1e6
            return (.figures(Samples([figure])), streams.calls)
        }
        var rawTCP = RawTCP(fd: rawFD, buffer: side.sendBuffer, capacity: capacity, busyPoll: busyPoll)
        if test.isLatency {
            let (request, response) = rawShape(test, size: size)
            let roundTrips = rawTCP.pingPong(request: request, response: response, iterations: count, warmup: max(10, count / 10))
            return (.timings(test.metric == "one-way" ? roundTrips.halved() : roundTrips), rawTCP.calls)
        }
        let megabytes = rawTCP.stream(size: effective, count: count)
        return (.figures(Samples([test.isRate ? megabytes / Double(effective) : megabytes])), rawTCP.calls)
    }

    var results: [MeasurementKey: [RepetitionResult]] = [:]
    var allocations: [MeasurementKey: (UInt64, Int)] = [:]
    var calls: [MeasurementKey: CallTally] = [:]
    for repetition in 0..<plan.repetitions {
        for test in plan.tests {
            for size in plan.sizes(for: test) {
                for mode in plan.modes {
                    // A WRITE completes nothing at its target: there is no
                    // completion to sleep on, so lat-write runs busy-polling only.
                    if test == .latencyWrite && mode == "block" { continue }
                    for load in plan.loads(for: test) {
                        let (pairs, postList) = (load.queuePairs, load.postList)
                        let count = test.countPerPair(for: size, scale: plan.scale, pairs: pairs)
                        // Allocations are counted after a latency loop's
                        // warm-up; socket calls around the whole loop.
                        let operations = test.isLatency ? count : count * pairs
                        let messages = test.isLatency ? count + max(10, count / 10) : count * pairs
                        var order = plan.raw ? [false, true] : [false]
                        if repetition % 2 == 1 { order.reverse() }
                        for raw in order {
                            let key = MeasurementKey(test: test, size: size, mode: mode, load: load, raw: raw)
                            try control.send("run \(test.rawValue) \(size) \(count) \(mode) \(raw ? "raw" : "fabric") \(pairs)")
                            _ = try control.expect("ready")
                            side.busyPoll = mode == "poll"
                            let result: RepetitionResult
                            let clientCost: LoopCost
                            if raw {
                                let rawCalls: Int
                                (result, rawCalls) = measureRaw(test, size: size, count: count, pairs: pairs, busyPoll: side.busyPoll)
                                clientCost = LoopCost(allocations: 0, socketCalls: rawCalls)
                            } else {
                                (result, clientCost) = try measureFabric(test, size: size, count: count, pairs: pairs, postList: postList)
                            }
                            if !raw && test != .latencySend && test != .latencyWrite {
                                try control.send("stop")
                            }
                            let done = try control.expect("done")
                            let serverAllocations = UInt64(done.first ?? "0") ?? 0
                            let serverCalls = done.count > 1 ? Int(done[1]) : nil
                            results[key, default: []].append(result)
                            let previous = allocations[key] ?? (0, 0)
                            allocations[key] = (previous.0 + clientCost.allocations + serverAllocations, previous.1 + operations)
                            calls[key, default: CallTally()].add(client: clientCost.socketCalls, server: serverCalls, messages: messages)
                        }
                    }
                }
            }
        }
        progress("repetition \(repetition + 1) of \(plan.repetitions) done")
    }
    // Idle: both processes sleep on their completion queue with a connected
    // queue pair and nothing moving; CPU time used, as a share of one core.
    var idle: [Measurement] = []
    if plan.modes.contains("block") {
        var clientSamples = Samples()
        var serverSamples = Samples()
        for _ in 0..<3 {
            try control.send("idle 1000")
            _ = try control.expect("ready")
            clientSamples.append(try idleCPU(side: side, milliseconds: 1000))
            serverSamples.append(Double(try control.expect("done").first ?? "") ?? .nan)
        }
        idle.append(Measurement(test: "idle-cpu", backend: "\(device.backendName) client", mode: "block", size: 0, unit: "%", metric: "cpu", perRepetition: [.figures(clientSamples)], allocationsPerOperation: nil))
        idle.append(Measurement(test: "idle-cpu", backend: "\(device.backendName) server", mode: "block", size: 0, unit: "%", metric: "cpu", perRepetition: [.figures(serverSamples)], allocationsPerOperation: nil))
    }
    try control.send("quit")

    var measurements: [Measurement] = []
    for test in plan.tests {
        for size in plan.sizes(for: test) {
            for mode in plan.modes {
                for load in plan.loads(for: test) {
                    let fabricKey = MeasurementKey(test: test, size: size, mode: mode, load: load, raw: false)
                    guard let fabricSamples = results[fabricKey] else { continue }
                    let (allocated, operations) = allocations[fabricKey] ?? (0, 1)
                    var fabric = Measurement(
                        test: test.rawValue, backend: device.backendName, mode: mode, size: size, unit: test.unit,
                        metric: test.metric, perRepetition: fabricSamples,
                        allocationsPerOperation: Double(allocated) / Double(max(operations, 1)))
                    fabric.note(queuePairs: load.queuePairs, calls: calls[fabricKey])
                    fabric.postList = load.postList
                    let rawKey = MeasurementKey(test: test, size: size, mode: mode, load: load, raw: true)
                    if let rawSamples = results[rawKey] {
                        var raw = Measurement(
                            test: test.rawValue, backend: "raw-tcp", mode: mode, size: size, unit: test.unit,
                            metric: test.metric, perRepetition: rawSamples, allocationsPerOperation: nil)
                        raw.note(queuePairs: load.queuePairs, calls: calls[rawKey])
                        fabric.ratioToRaw = fabric.median / raw.median
                        fabric.link = linkFigures(device, fabric, raw)
                        measurements.append(fabric)
                        measurements.append(raw)
                    } else {
                        fabric.link = linkFigures(device, fabric, nil)
                        measurements.append(fabric)
                    }
                }
            }
        }
    }
    return measurements + idle
}

extension Measurement {
    /// Adds how many queue pairs the test ran over and its calls per message.
    fileprivate mutating func note(queuePairs: Int, calls: CallTally?) {
        self.queuePairs = queuePairs
        callsPerMessageClient = calls?.clientPerMessage
        callsPerMessageServer = calls?.serverPerMessage
    }
}

/// Sleeps in the completion queue's wait for `milliseconds` and returns the
/// process's CPU time in that span as a percentage of one core.
func idleCPU<D: FabricDevice>(side: FabricSide<D>, milliseconds: Int) throws -> Double {
    func cpuMicroseconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
    }
    let start = now()
    let before = cpuMicroseconds()
    let end = start + UInt64(milliseconds) * 1_000_000
    while now() < end {
        _ = try side.cq.wait(timeout: .nanoseconds(Int64(end - now())))
        _ = side.cq.poll(into: side.completions)
    }
    let elapsed = Double(now() - start) / 1000
    return (cpuMicroseconds() - before) / elapsed * 100
}

/// The measurement beside the emulated link's settings, if the link is shaped.
private func linkFigures<D: FabricDevice>(_ device: D, _ measurement: Measurement, _ raw: Measurement?) -> LinkFigures? {
    guard let link = (device as? TCPDevice)?.link, link.isShaped else { return nil }
    return LinkFigures(link: link, measurement: measurement, raw: raw)
}
