import Glibc
import PMI

/// The ranks of one job on this host: their processes, their PMI service
/// and their output. mpirun has one for the ranks it starts itself, and
/// each proxy one for its host's. The owner runs the event loop, reaps
/// children and decides what the events mean for the job.
final class RankGroup {
    /// What starts one rank.
    struct Launch {
        var rank: Int
        var program: String
        var arguments: [String]
        /// `NAME=value` strings, PMI's variables included by `start`.
        var environment: [String]
        var workingDirectory: String?
        var input: RankSpawner.Input
    }

    enum Event {
        case ended(rank: Int, RankEnd)
        case pmi(PMIServerEvent)
    }

    private(set) var processes: [Int: pid_t] = [:]
    private(set) var ends: [Int: RankEnd] = [:]
    /// Write ends of ranks' standard input pipes.
    private var inputs: [Int: Int32] = [:]
    private var outputs: [OutputForwarder] = []
    private let server: PMIServer
    let ranks: [Int]

    /// Starts every rank of `launches`; a rank that cannot start stops the
    /// ones started before it.
    init(_ launches: [Launch], size: Int, context: PMIServerContext, output: @escaping (Int, Bool, ArraySlice<UInt8>) -> Void) throws(LaunchError) {
        var serverRanks: [(rank: Int, descriptor: Int32)] = []
        ranks = launches.map(\.rank)
        for (localRank, launch) in launches.enumerated() {
            // The ranks on this host, as Hydra says it: a rank that knows it
            // shares the cores with more ranks than there are waits politely.
            let environment = launch.environment + [
                "PMI_FD=\(RankSpawner.pmiDescriptor)", "PMI_RANK=\(launch.rank)", "PMI_SIZE=\(size)",
                "MPI_LOCALNRANKS=\(launches.count)", "MPI_LOCALRANKID=\(localRank)",
            ]
            let started: RankSpawner.Started
            do {
                started = try RankSpawner.start(
                    program: launch.program, arguments: launch.arguments, environment: environment,
                    workingDirectory: launch.workingDirectory, input: launch.input)
            } catch {
                for processID in processes.values where false { RankSpawner.signal(processID, SIGKILL) }
                for descriptor in serverRanks.map(\.descriptor) { Glibc.close(descriptor) }
                throw LaunchError("rank \(launch.rank): \(error.message)")
            }
            processes[launch.rank] = started.processID
            if let descriptor = started.standardInput { inputs[launch.rank] = descriptor }
            serverRanks.append((launch.rank, started.pmi))
            outputs.append(OutputForwarder(descriptor: started.standardOutput, rank: launch.rank, isError: false, sink: output))
            outputs.append(OutputForwarder(descriptor: started.standardError, rank: launch.rank, isError: true, sink: output))
        }
        server = PMIServer(context: context, ranks: serverRanks)
    }

    var allEnded: Bool { ends.count == processes.count }
    var outputsClosed: Bool { outputs.allSatisfy(\.closed) }

    var pollDescriptors: [pollfd] {
        var descriptors = outputs.filter { !$0.closed }.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
        if !allEnded { descriptors += server.pollDescriptors }
        return descriptors
    }

    /// Handles a descriptor `poll` reported, if it is the group's.
    func handle(descriptor: Int32, revents: Int16) -> [Event]? {
        if let output = outputs.first(where: { $0.descriptor == descriptor && !$0.closed }) {
            output.forward()
            return []
        }
        guard server.pollDescriptors.contains(where: { $0.fd == descriptor }) else { return nil }
        return server.handle(descriptor: descriptor, revents: revents).map { .pmi($0) }
    }

    /// A child the owner reaped; the event if it was one of the group's.
    func reaped(_ processID: pid_t, _ end: RankEnd) -> Event? {
        guard let rank = processes.first(where: { $0.value == processID })?.key else { return nil }
        ends[rank] = end
        return .ended(rank: rank, end)
    }

    /// Passes what is left in the ranks' pipes (the job is ending).
    func drainOutputs() {
        for output in outputs where !output.closed { output.forward() }
    }

    func signalRunning(_ number: Int32) {
        for (rank, processID) in processes where ends[rank] == nil { RankSpawner.signal(processID, number) }
    }

    /// Every host's ranks are in the fence.
    func completeFence(with values: [String: String]) { server.completeFence(with: values) }

    /// Ranks still running, with what PMI knows of each.
    func unfinished() -> [(rank: Int, processID: pid_t, state: String, reportsOnSignal: Bool)] {
        processes.filter { ends[$0.key] == nil }.sorted { $0.key < $1.key }.map { rank, processID in
            (rank, processID, server.state(of: rank), server.keysPut[rank]?.contains(JobRunner.diagnosticsKeyPrefix + String(rank)) == true)
        }
    }

    /// Passes input to a rank that reads it through a pipe; a rank that
    /// stopped reading loses the rest.
    func write(input: [UInt8], to rank: Int) {
        guard let descriptor = inputs[rank] else { return }
        var offset = 0
        while offset < input.count {
            let written = input.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written > 0 { offset += written } else if errno != EINTR { return }
        }
    }

    /// The end of a rank's input.
    func endInput(of rank: Int) {
        if let descriptor = inputs.removeValue(forKey: rank) { Glibc.close(descriptor) }
    }

    func close() {
        server.closeAll()
        for descriptor in inputs.values { Glibc.close(descriptor) }
        inputs.removeAll()
    }
}
