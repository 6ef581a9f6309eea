import Glibc
import PMI

/// Runs a job whose ranks all live on this host: starts them, serves them
/// PMI, forwards their output, and ends the job as a whole: when a rank
/// fails, is killed or aborts, when mpirun is interrupted, or when the
/// timeout passes. Its exit status is the first failing rank's.
public final class JobRunner {
    /// What one rank is and how it ended.
    struct RankRecord {
        let rank: Int
        let processID: pid_t
        var end: RankEnd?
    }

    /// Why the job is ending early, first cause first.
    struct Failure {
        let status: Int32
        let message: String
    }

    /// A rank that put this key can report what it waits for on SIGUSR1
    /// (the MPI runtime puts it); other programs are never sent SIGUSR1.
    public static let diagnosticsKeyPrefix = "fabric-diagnostics-"
    /// After the first SIGTERM (or forwarded interrupt), ranks have this
    /// long before SIGKILL.
    static let terminationGrace: Duration = .seconds(1)

    private let request: LaunchRequest
    private let plan: JobPlan
    private let environment: [String: String]
    private let log: (String) -> Void
    private var ranks: [RankRecord] = []
    private var outputs: [OutputForwarder] = []
    private var server: PMIServer?
    private var failure: Failure?
    private var killAt: ContinuousClock.Instant?
    private var killed = false
    private var timeoutAt: ContinuousClock.Instant?
    private var timeoutReportedAt: ContinuousClock.Instant?
    /// A PMI-2 abort waiting for its rank's exit status.
    private var pendingAbort: (rank: Int, message: String, until: ContinuousClock.Instant)?

    /// `log` prints mpirun's own messages (to standard error).
    public init(request: LaunchRequest, plan: JobPlan, environment: [String: String], log: @escaping (String) -> Void) {
        self.request = request
        self.plan = plan
        self.environment = environment
        self.log = log
    }

    /// Runs the job to its end; returns mpirun's exit status.
    public func run() -> Int32 {
        do {
            return try runJob()
        } catch {
            log("mpirun: \(error.message)")
            terminateAll(SIGKILL)
            return 1
        }
    }

    private func runJob() throws(LaunchError) -> Int32 {
        for application in request.applications where !RankSpawner.findProgram(application.program, path: environment["PATH"]) {
            throw LaunchError("cannot start '\(application.program)': no such program\(application.program.contains("/") ? " (or it is not executable)" : " on PATH")")
        }
        let signals = try LauncherSignals.openDescriptor()
        defer { close(signals) }
        let secret = JobSecretSource.fresh()
        let jobName = "fabric-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var serverRanks: [(rank: Int, descriptor: Int32)] = []
        for planned in plan.ranks {
            let application = request.applications[planned.application]
            let started: RankSpawner.Started
            do {
                started = try RankSpawner.start(
                    program: application.program, arguments: application.arguments,
                    environment: rankEnvironment(planned, application: application, secret: secret),
                    workingDirectory: application.workingDirectory ?? request.workingDirectory,
                    inheritStandardInput: planned.rank == 0)
            } catch {
                throw LaunchError("rank \(planned.rank): \(error.message)")
            }
            ranks.append(RankRecord(rank: planned.rank, processID: started.processID))
            serverRanks.append((planned.rank, started.pmi))
            let tag: OutputForwarder.Tag = request.tagOutput ? .openMPI : request.prependRank ? .mpich : .none
            outputs.append(OutputForwarder(descriptor: started.standardOutput, rank: planned.rank, isError: false, tag: tag))
            outputs.append(OutputForwarder(descriptor: started.standardError, rank: planned.rank, isError: true, tag: tag))
        }
        let context = PMIServerContext(
            keyValueSpace: jobName, size: plan.size, applicationNumbers: plan.ranks.map(\.application), processMapping: plan.processMapping)
        let server = PMIServer(context: context, ranks: serverRanks)
        self.server = server
        if let timeout = request.timeout { timeoutAt = .now + timeout }
        defer { server.closeAll() }

        var outputsDrainedBy: ContinuousClock.Instant?
        while true {
            let allEnded = ranks.allSatisfy { $0.end != nil }
            if allEnded {
                // Output the ranks left in their pipes; a descendant that
                // keeps a pipe open does not hold the job past a second.
                if outputsDrainedBy == nil { outputsDrainedBy = .now + .seconds(1) }
                if outputs.allSatisfy(\.closed) || ContinuousClock.now >= outputsDrainedBy! { break }
            }
            var descriptors = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            descriptors += outputs.filter { !$0.closed }.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            if !allEnded { descriptors += server.pollDescriptors }
            let ready = poll(&descriptors, nfds_t(descriptors.count), pollTimeout(until: outputsDrainedBy))
            if ready < 0 && errno != EINTR { throw LaunchError("poll failed: \(String(cString: strerror(errno)))") }
            for entry in descriptors where entry.revents != 0 {
                if entry.fd == signals {
                    for number in LauncherSignals.drain(signals) { handleSignal(number) }
                } else if let output = outputs.first(where: { $0.descriptor == entry.fd && !$0.closed }) {
                    output.forward()
                } else {
                    for event in server.handle(descriptor: entry.fd, revents: entry.revents) { handle(event) }
                }
            }
            checkClocks()
        }
        for output in outputs where !output.closed { output.forward() }
        return failure?.status ?? 0
    }

    // MARK: - Events

    private func handleSignal(_ number: Int32) {
        switch number {
        case SIGCHLD:
            for (processID, end) in RankSpawner.reap() {
                guard let index = ranks.firstIndex(where: { $0.processID == processID }) else { continue }
                ranks[index].end = end
                if let abort = pendingAbort, abort.rank == ranks[index].rank {
                    let code = end.jobStatus == 0 ? 1 : end.jobStatus
                    pendingAbort = nil
                    fail(status: code, "rank \(abort.rank) on \(hostName(of: abort.rank)) called abort with exit code \(code)\(abort.message.isEmpty ? "" : ": \(abort.message)")")
                } else if end != .exited(0) {
                    fail(status: end.jobStatus, "rank \(ranks[index].rank) on \(hostName(of: ranks[index].rank)) \(end)")
                }
            }
        case SIGINT, SIGTERM, SIGHUP:
            if failure == nil {
                failure = Failure(status: 128 + number, message: "mpirun received \(LauncherSignals.name(number))")
                log("mpirun: received \(LauncherSignals.name(number)); passing it to every rank and ending the job")
            }
            terminateAll(number)
        case SIGUSR1:
            reportUnfinished(reason: "SIGUSR1")
        default:
            break
        }
    }

    private func handle(_ event: PMIServerEvent) {
        switch event {
        case .fenceReady(let puts):
            // One host: every rank of the job is here.
            server?.completeFence(with: puts)
        case .abort(let rank, let code?, let message):
            fail(status: code == 0 ? 1 : code, "rank \(rank) on \(hostName(of: rank)) called abort with exit code \(code)\(message.isEmpty ? "" : ": \(message)")")
        case .abort(let rank, nil, let message):
            // PMI-2 carries no exit code; the rank exits with it right
            // after asking. Wait a moment for that exit to learn it.
            guard failure == nil, pendingAbort == nil else { return }
            pendingAbort = (rank, message, .now + .milliseconds(500))
        case .finalized:
            break
        case .failed(let rank, let reason):
            // An aborting rank leaves without finalizing: the abort says why.
            if pendingAbort?.rank == rank { return }
            fail(status: 1, "\(reason) (on \(hostName(of: rank)))")
        }
    }

    private func fail(status: Int32, _ message: String) {
        guard failure == nil else { return }
        failure = Failure(status: status, message: message)
        log("mpirun: \(message); ending the job")
        terminateAll(SIGTERM)
    }

    /// Sends `number` to every rank still running, and arms the SIGKILL
    /// that follows if they do not go.
    private func terminateAll(_ number: Int32) {
        for record in ranks where record.end == nil { RankSpawner.signal(record.processID, number) }
        if number == SIGKILL {
            killed = true
        } else if killAt == nil {
            killAt = .now + Self.terminationGrace
        }
    }

    private func checkClocks() {
        let now = ContinuousClock.now
        if let abort = pendingAbort, now >= abort.until {
            pendingAbort = nil
            fail(status: 1, "rank \(abort.rank) on \(hostName(of: abort.rank)) called abort\(abort.message.isEmpty ? "" : ": \(abort.message)")")
        }
        if let killAt, now >= killAt, !killed, ranks.contains(where: { $0.end == nil }) {
            let left = ranks.filter { $0.end == nil }.map { String($0.rank) }
            log("mpirun: rank\(left.count == 1 ? "" : "s") \(left.joined(separator: ", ")) still running \(Self.terminationGrace) after being asked to end; killing")
            terminateAll(SIGKILL)
        }
        if let timeoutAt, now >= timeoutAt, timeoutReportedAt == nil, failure == nil {
            timeoutReportedAt = now
            reportUnfinished(reason: "the timeout of \(request.timeout!) passed")
        }
        // The ranks had a second to say what they wait for.
        if let reported = timeoutReportedAt, now >= reported + .seconds(1), failure == nil {
            failure = Failure(status: 124, message: "timeout")
            log("mpirun: ending the job after its timeout (exit status 124)")
            terminateAll(SIGTERM)
        }
    }

    /// Names the ranks that have not finished and what PMI knows of them;
    /// asks those that can to say what they wait for.
    private func reportUnfinished(reason: String) {
        let running = ranks.filter { $0.end == nil }
        guard !running.isEmpty else { return }
        log("mpirun: \(reason); \(running.count) of \(ranks.count) rank\(ranks.count == 1 ? "" : "s") not finished:")
        for record in running {
            let state = server?.state(of: record.rank) ?? "running"
            log("mpirun:   rank \(record.rank) on \(hostName(of: record.rank)) (pid \(record.processID)): \(state)")
            if server?.keysPut[record.rank]?.contains(Self.diagnosticsKeyPrefix + String(record.rank)) == true {
                _ = kill(record.processID, SIGUSR1)
            }
        }
    }

    private func pollTimeout(until drained: ContinuousClock.Instant?) -> Int32 {
        var deadlines: [ContinuousClock.Instant] = []
        if let killAt, !killed { deadlines.append(killAt) }
        if let timeoutAt, timeoutReportedAt == nil { deadlines.append(timeoutAt) }
        if let reported = timeoutReportedAt { deadlines.append(reported + .seconds(1)) }
        if let drained { deadlines.append(drained) }
        if let abort = pendingAbort { deadlines.append(abort.until) }
        guard let next = deadlines.min() else { return -1 }
        let left = next - .now
        if left <= .zero { return 0 }
        return Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
    }

    // MARK: - Environment

    private func hostName(of rank: Int) -> String {
        plan.hosts[plan.ranks[rank].host]
    }

    /// mpirun's environment (less any launcher's variables from outside),
    /// the job's settings, and the PMI variables of this rank.
    private func rankEnvironment(_ planned: JobPlan.Rank, application: LaunchRequest.Application, secret: String) throws(LaunchError) -> [String] {
        var variables = environment.filter { key, _ in
            !(key.hasPrefix("PMI_") || key.hasPrefix("PMIX_") || key.hasPrefix("SLURM_") || key.hasPrefix("OMPI_COMM_WORLD") || key == "MPI_LOCALNRANKS")
        }
        for setting in request.environment + application.environment {
            switch setting {
            case .set(let name, let value): variables[name] = value
            case .copy(let name):
                guard let value = environment[name] else { throw LaunchError("-x \(name): mpirun's environment has no \(name)") }
                variables[name] = value
            }
        }
        variables["PMI_FD"] = String(RankSpawner.pmiDescriptor)
        variables["PMI_RANK"] = String(planned.rank)
        variables["PMI_SIZE"] = String(plan.size)
        variables[JobSecretSource.variable] = secret
        return variables.map { "\($0.key)=\($0.value)" }.sorted()
    }
}

/// The job secret mpirun makes for each job: it reaches the ranks in their
/// environment (readable by the same user only, never on a command line).
enum JobSecretSource {
    static let variable = "FABRIC_JOB_SECRET"

    static func fresh() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let digits = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
    }
}
