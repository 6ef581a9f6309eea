import FabricSupport
import Glibc
import PMI

/// Runs a job: starts the ranks of this host itself and those of other
/// hosts through a proxy on each (reached with the remote shell), serves
/// PMI (a fence completes when every host's ranks are in), forwards the
/// ranks' output, and ends the job as a whole: when a rank fails, is
/// killed or aborts, when mpirun is interrupted, or when the timeout
/// passes. Its exit status is the first failing rank's.
public final class JobRunner {
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
    /// Where the proxy is on other hosts (default: this program's path).
    public static let remoteCommandVariable = "FABRIC_MPIRUN_REMOTE"

    private let request: LaunchRequest
    private let plan: JobPlan
    private let environment: [String: String]
    private let localHosts: Set<Int>
    private let log: (String) -> Void
    private let writer: OutputWriter
    private var group: RankGroup?
    private var proxies: [ProxyLink] = []
    private var rankEnds: [Int: RankEnd] = [:]
    private var failure: Failure?
    private var killAt: ContinuousClock.Instant?
    private var killed = false
    private var timeoutAt: ContinuousClock.Instant?
    private var timeoutReportedAt: ContinuousClock.Instant?
    /// A PMI-2 abort waiting for its rank's exit status.
    private var pendingAbort: (rank: Int, message: String, until: ContinuousClock.Instant)?
    private var localFenceValues: [String: String]?
    /// The proxy whose host runs rank 0: mpirun's standard input goes there.
    private var inputProxy: ProxyLink?

    /// `localHosts`: the plan's hosts that are this machine. `log` prints
    /// mpirun's own messages (to standard error).
    public init(request: LaunchRequest, plan: JobPlan, localHosts: Set<Int>, environment: [String: String], log: @escaping (String) -> Void) {
        self.request = request
        self.plan = plan
        self.localHosts = localHosts
        self.environment = environment
        self.log = log
        writer = OutputWriter(tag: request.tagOutput ? .openMPI : request.prependRank ? .mpich : .none)
    }

    /// Runs the job to its end; returns mpirun's exit status.
    public func run() -> Int32 {
        do {
            return try runJob()
        } catch {
            log("mpirun: \(error.message)")
            group?.signalRunning(SIGKILL)
            for proxy in proxies { RankSpawner.signal(proxy.processID, SIGKILL) }
            _ = RankSpawner.reap()
            return 1
        }
    }

    private func runJob() throws(LaunchError) -> Int32 {
        let localRanks = plan.ranks.filter { localHosts.contains($0.host) }
        for application in Set(localRanks.map(\.application)).sorted().map({ request.applications[$0] })
        where !RankSpawner.findProgram(application.program, path: environment["PATH"]) {
            throw LaunchError("cannot start '\(application.program)': no such program\(application.program.contains("/") ? " (or it is not executable)" : " on PATH")")
        }
        let signals = try LauncherSignals.openDescriptor()
        defer { close(signals) }
        // A fresh secret per job: local ranks get it in their environment
        // (readable by the same user only), other hosts on the remote
        // shell's channel; never on a command line.
        let secret = JobSecret.generate()
        let context = PMIServerContext(
            keyValueSpace: "fabric-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", size: plan.size,
            applicationNumbers: plan.ranks.map(\.application), processMapping: plan.processMapping)
        let jobVariables = try resolvedVariables()

        // Other hosts first: their remote shells start while ours run.
        for host in plan.hosts.indices where !localHosts.contains(host) && !plan.ranks(on: host).isEmpty {
            try startProxy(host: host, secret: secret, context: context, variables: jobVariables)
        }
        if !localRanks.isEmpty {
            var base = environment.filter { key, _ in
                !(key.hasPrefix("PMI_") || key.hasPrefix("PMIX_") || key.hasPrefix("SLURM_") || key.hasPrefix("OMPI_COMM_WORLD") || key == "MPI_LOCALNRANKS")
            }
            base[JobSecret.environmentVariable] = secret
            for (name, value) in jobVariables { base[name] = value }
            let launches = localRanks.map { planned -> RankGroup.Launch in
                let application = request.applications[planned.application]
                var variables = base
                for case .set(let name, let value) in application.environment { variables[name] = value }
                return RankGroup.Launch(
                    rank: planned.rank, program: application.program, arguments: application.arguments,
                    environment: variables.map { "\($0.key)=\($0.value)" }.sorted(),
                    workingDirectory: application.workingDirectory ?? request.workingDirectory, input: planned.rank == 0 ? .inherited : .none)
            }
            let writer = self.writer
            group = try RankGroup(launches, size: plan.size, context: context) { rank, isError, data in
                writer.write(rank: rank, isError: isError, data)
            }
        }
        defer { group?.close() }
        if let timeout = request.timeout { timeoutAt = .now + timeout }

        var outputsDrainedBy: ContinuousClock.Instant?
        while true {
            let localDone = group?.allEnded ?? true
            let proxiesDone = proxies.allSatisfy { ($0.phase == .done || $0.phase == .failed) && $0.shellEnded != nil }
            if localDone && proxiesDone {
                // Output the ranks left in their pipes; a descendant that
                // keeps a pipe open does not hold the job past a second.
                if outputsDrainedBy == nil { outputsDrainedBy = .now + .seconds(1) }
                if group?.outputsClosed ?? true || ContinuousClock.now >= outputsDrainedBy! { break }
            }
            var descriptors = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            descriptors += group?.pollDescriptors ?? []
            for proxy in proxies where proxy.phase != .failed {
                if !proxy.reader.ended { descriptors.append(pollfd(fd: proxy.reader.descriptor, events: Int16(POLLIN), revents: 0)) }
            }
            if let inputProxy, inputProxy.phase == .running { descriptors.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&descriptors, nfds_t(descriptors.count), pollTimeout(until: outputsDrainedBy))
            if ready < 0 && errno != EINTR { throw LaunchError("poll failed: \(String(cString: strerror(errno)))") }
            // The signals (first in the list) last: a rank's last PMI words
            // (an abort) were written before it exited, so they are read
            // before its end is reaped.
            for entry in descriptors.dropFirst() + descriptors.prefix(1) where entry.revents != 0 {
                if entry.fd == signals {
                    for number in LauncherSignals.drain(signals) { handleSignal(number) }
                } else if entry.fd == 0 {
                    forwardInput()
                } else if let proxy = proxies.first(where: { $0.reader.descriptor == entry.fd }) {
                    handleReadable(proxy)
                } else if let events = group?.handle(descriptor: entry.fd, revents: entry.revents) {
                    for event in events { handleLocal(event) }
                }
            }
            checkClocks()
        }
        group?.drainOutputs()
        return failure?.status ?? 0
    }

    // MARK: - Other hosts

    private func startProxy(host: Int, secret: String, context: PMIServerContext, variables: [(String, String)]) throws(LaunchError) {
        let shell = request.remoteShell ?? ["ssh", "-o", "BatchMode=yes"]
        let remote = environment[Self.remoteCommandVariable] ?? RankSpawner.ownExecutable()
        let name = plan.hosts[host]
        let proxy = try ProxyLink(
            host: name, shell: shell, proxyCommand: "'\(remote)' --proxy", secret: secret,
            environment: environment.map { "\($0.key)=\($0.value)" })
        proxies.append(proxy)
        proxy.send(.job(size: plan.size, keyValueSpace: context.keyValueSpace, processMapping: context.processMapping))
        let ranks = plan.ranks(on: host)
        for index in Set(ranks.map(\.application)).sorted() {
            let application = request.applications[index]
            proxy.send(.application(index: index, program: application.program, workingDirectory: application.workingDirectory ?? request.workingDirectory))
            for argument in application.arguments { proxy.send(.argument(application: index, value: argument)) }
            for case .set(let name, let value) in application.environment { proxy.send(.environment(application: index, name: name, value: value)) }
        }
        for (name, value) in variables { proxy.send(.environment(application: nil, name: name, value: value)) }
        for planned in ranks { proxy.send(.rank(rank: planned.rank, application: planned.application)) }
        proxy.send(.start)
        if ranks.contains(where: { $0.rank == 0 }) { inputProxy = proxy }
    }

    private func handleReadable(_ proxy: ProxyLink) {
        let messages: [ProxyMessage]
        do { messages = try proxy.receive() } catch {
            proxy.markFailed()
            fail(status: 1, error.message)
            return
        }
        for message in messages {
            switch message {
            case .started, .done: break
            case .output(let rank, let isError, let data): writer.write(rank: rank, isError: isError, data[...])
            case .value(let key, let value): proxy.pendingValues[key] = value
            case .fence:
                proxy.inFence = true
                completeFenceIfReady()
            case .abort(let rank, let code, let message): abort(rank: rank, code: code, message: message)
            case .ended(let rank, let end): rankEnded(rank, end)
            case .failed(let rank, let reason): rankFailed(rank, reason)
            case .state(let rank, let processID, let text):
                log("mpirun:   rank \(rank) on \(proxy.host) (pid \(processID)): \(text)")
            case .problem(let text):
                proxy.markFailed()
                fail(status: 1, "host \(proxy.host): \(text)")
            default: break
            }
        }
        if proxy.reader.ended && proxy.phase != .done && proxy.phase != .failed && proxy.channelClosedAt == nil {
            // The shell's exit status says more; it follows in a moment.
            proxy.channelClosedAt = .now
        }
    }

    /// One read of mpirun's standard input (poll said it would not block;
    /// the descriptor is shared with the shell, so it stays blocking), down
    /// to rank 0's proxy.
    private func forwardInput() {
        guard let proxy = inputProxy else { return }
        var chunk = [UInt8](repeating: 0, count: 16384)
        let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if count > 0 {
            proxy.send(.input(data: Array(chunk[..<count])))
        } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
            proxy.send(.inputEnd)
            inputProxy = nil
        }
    }

    /// Every host's ranks are in the fence: all their puts go to all.
    private func completeFenceIfReady() {
        let localReady = group == nil || localFenceValues != nil
        guard localReady, proxies.allSatisfy({ $0.inFence || $0.phase == .done }) else { return }
        var values = localFenceValues ?? [:]
        for proxy in proxies { values.merge(proxy.pendingValues) { $1 } }
        for proxy in proxies where proxy.inFence {
            for (key, value) in values { proxy.send(.value(key: key, value: value)) }
            proxy.send(.fenceDone)
            proxy.inFence = false
            proxy.pendingValues.removeAll()
        }
        if localFenceValues != nil {
            group?.completeFence(with: values)
            localFenceValues = nil
        }
    }

    // MARK: - Events

    private func handleSignal(_ number: Int32) {
        switch number {
        case SIGCHLD:
            for (processID, end) in RankSpawner.reap() {
                if case .ended(let rank, let end)? = group?.reaped(processID, end) {
                    rankEnded(rank, end)
                } else if let proxy = proxies.first(where: { $0.processID == processID }) {
                    proxy.shellEnded = end
                    // What the proxy said before it went (its `done`) may
                    // still wait in the channel.
                    if proxy.phase != .done && proxy.phase != .failed { handleReadable(proxy) }
                    if proxy.phase != .done && proxy.phase != .failed {
                        proxy.markFailed()
                        let said = proxy.readErrors()
                        fail(status: 1, "host \(proxy.host): the remote shell (\((request.remoteShell ?? ["ssh"]).joined(separator: " "))) \(end) before its ranks ended\(said.isEmpty ? "" : ": \(said)")")
                    }
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

    private func handleLocal(_ event: RankGroup.Event) {
        switch event {
        case .ended(let rank, let end): rankEnded(rank, end)
        case .pmi(.fenceReady(let puts)):
            localFenceValues = puts
            completeFenceIfReady()
        case .pmi(.abort(let rank, let code, let message)): abort(rank: rank, code: code, message: message)
        case .pmi(.finalized): break
        case .pmi(.failed(let rank, let reason)): rankFailed(rank, reason)
        }
    }

    private func rankEnded(_ rank: Int, _ end: RankEnd) {
        rankEnds[rank] = end
        if let abort = pendingAbort, abort.rank == rank {
            let code = end.jobStatus == 0 ? 1 : end.jobStatus
            pendingAbort = nil
            fail(status: code, "rank \(rank) on \(hostName(of: rank)) called abort with exit code \(code)\(abort.message.isEmpty ? "" : ": \(abort.message)")")
        } else if end != .exited(0) {
            fail(status: end.jobStatus, "rank \(rank) on \(hostName(of: rank)) \(end)")
        }
    }

    private func rankFailed(_ rank: Int, _ reason: String) {
        // An aborting rank leaves without finalizing: the abort says why.
        if pendingAbort?.rank == rank { return }
        fail(status: 1, "\(reason) (on \(hostName(of: rank)))")
    }

    private func abort(rank: Int, code: Int32?, message: String) {
        if let code {
            fail(status: code == 0 ? 1 : code, "rank \(rank) on \(hostName(of: rank)) called abort with exit code \(code)\(message.isEmpty ? "" : ": \(message)")")
        } else if failure == nil && pendingAbort == nil {
            // PMI-2 carries no exit code; the rank exits with it right
            // after asking. Wait a moment for that exit to learn it.
            pendingAbort = (rank, message, .now + .milliseconds(500))
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
        group?.signalRunning(number)
        for proxy in proxies { proxy.send(.signal(number)) }
        if number == SIGKILL {
            killed = true
            // A proxy that does not answer is ended with its shell.
            for proxy in proxies where proxy.shellEnded == nil && proxy.phase != .done { RankSpawner.signal(proxy.processID, SIGKILL) }
        } else if killAt == nil {
            killAt = .now + Self.terminationGrace
        }
    }

    private var anyRunning: Bool {
        !(group?.allEnded ?? true) || proxies.contains { $0.shellEnded == nil }
    }

    private func checkClocks() {
        let now = ContinuousClock.now
        if let abort = pendingAbort, now >= abort.until {
            pendingAbort = nil
            fail(status: 1, "rank \(abort.rank) on \(hostName(of: abort.rank)) called abort\(abort.message.isEmpty ? "" : ": \(abort.message)")")
        }
        if let killAt, now >= killAt, !killed, anyRunning {
            log("mpirun: ranks still running \(Self.terminationGrace) after being asked to end; killing")
            terminateAll(SIGKILL)
        }
        for proxy in proxies where proxy.phase != .done && proxy.phase != .failed {
            guard let closed = proxy.channelClosedAt, now >= closed + .seconds(1) else { continue }
            proxy.markFailed()
            let said = proxy.readErrors()
            fail(status: 1, "host \(proxy.host): the remote shell closed the channel before its ranks ended\(said.isEmpty ? "" : ": \(said)")")
        }
        for proxy in proxies where proxy.phase == .proving && now >= proxy.provingDeadline {
            proxy.markFailed()
            RankSpawner.signal(proxy.processID, SIGKILL)
            fail(status: 1, "host \(proxy.host): no proxy answered within 30 s (\(proxy.readErrors()))")
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
        let finished = rankEnds.count
        guard finished < plan.size else { return }
        log("mpirun: \(reason); \(plan.size - finished) of \(plan.size) rank\(plan.size == 1 ? "" : "s") not finished:")
        for item in group?.unfinished() ?? [] {
            log("mpirun:   rank \(item.rank) on \(hostName(of: item.rank)) (pid \(item.processID)): \(item.state)")
            if item.reportsOnSignal { _ = kill(item.processID, SIGUSR1) }
        }
        for proxy in proxies where proxy.phase == .running { proxy.send(.report) }
    }

    private func pollTimeout(until drained: ContinuousClock.Instant?) -> Int32 {
        var deadlines: [ContinuousClock.Instant] = []
        if let killAt, !killed { deadlines.append(killAt) }
        if let timeoutAt, timeoutReportedAt == nil { deadlines.append(timeoutAt) }
        if let reported = timeoutReportedAt { deadlines.append(reported + .seconds(1)) }
        if let drained { deadlines.append(drained) }
        if let abort = pendingAbort { deadlines.append(abort.until) }
        for proxy in proxies where proxy.phase == .proving { deadlines.append(proxy.provingDeadline) }
        for proxy in proxies where proxy.phase != .failed { if let closed = proxy.channelClosedAt { deadlines.append(closed + .seconds(1)) } }
        guard let next = deadlines.min() else { return -1 }
        let left = next - .now
        if left <= .zero { return 0 }
        return Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
    }

    // MARK: - Environment

    private func hostName(of rank: Int) -> String {
        plan.hosts[plan.ranks[rank].host]
    }

    /// The job-wide variables (`-x`, `-genv`) with `-x NAME`'s values
    /// taken from mpirun's environment.
    private func resolvedVariables() throws(LaunchError) -> [(String, String)] {
        var variables: [(String, String)] = []
        for setting in request.environment {
            switch setting {
            case .set(let name, let value): variables.append((name, value))
            case .copy(let name):
                guard let value = environment[name] else { throw LaunchError("-x \(name): mpirun's environment has no \(name)") }
                variables.append((name, value))
            }
        }
        return variables
    }
}
