import Crypto
import FabricSupport
import Glibc
import PMI

/// `mpirun --proxy`: what mpirun starts on another host through the
/// remote shell. It reads the job secret and the job from its standard
/// input, proves the secret, starts its host's ranks, serves them PMI on
/// inherited descriptors, and reports everything upward on its standard
/// output; fences go up and come back complete. If mpirun goes away (its
/// end of the channel closes), the proxy ends its ranks and exits.
enum ProxyMain {
    static func run(environment: [String: String]) -> Int32 {
        // Reads from mpirun never block: the loop polls first.
        _ = fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK)
        let up = ProxyChannelWriter(descriptor: 1)
        let down = ProxyChannelReader(descriptor: 0)
        do {
            return try serve(up: up, down: down, environment: environment)
        } catch {
            up.send(.problem(error.message))
            return 1
        }
    }

    private static func serve(up: ProxyChannelWriter, down: ProxyChannelReader, environment: [String: String]) throws(LaunchError) -> Int32 {
        // Set-up: secret, hello, the job, start. Blocking reads with a
        // deadline: a proxy nobody talks to does not linger.
        let deadline = ContinuousClock.now + .seconds(30)
        var pending: [ProxyMessage] = []
        func next() throws(LaunchError) -> ProxyMessage {
            while pending.isEmpty {
                guard !down.ended else { throw LaunchError("mpirun closed the channel during set-up") }
                let left = deadline - .now
                guard left > .zero else { throw LaunchError("no job from mpirun within 30 s") }
                var entry = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
                _ = poll(&entry, 1, 1000)
                pending += try down.read()
            }
            return pending.removeFirst()
        }
        guard case .secret(let secret) = try next(), secret.utf8.count >= 16 else {
            throw LaunchError("the first message on the channel was not the job secret: a proxy is started by mpirun, not by hand")
        }
        guard case .hello(let version, let nonce) = try next() else { throw LaunchError("no hello from mpirun") }
        guard version == ProxyMessage.version else {
            throw LaunchError("mpirun speaks proxy protocol version \(version), this proxy \(ProxyMessage.version): install the same build on every host")
        }
        up.send(.proof(ProxyLink.proof(secret: secret, nonce: nonce)))
        var size = 0
        var context = PMIServerContext(keyValueSpace: "", size: 0, applicationNumbers: [], processMapping: "")
        var programs: [Int: (program: String, directory: String?)] = [:]
        var arguments: [Int: [String]] = [:]
        var jobVariables: [(String, String)] = []
        var programVariables: [Int: [(String, String)]] = [:]
        var ranks: [(rank: Int, application: Int)] = []
        setup: while true {
            switch try next() {
            case .job(let jobSize, let space, let mapping):
                size = jobSize
                context = PMIServerContext(keyValueSpace: space, size: jobSize, applicationNumbers: [], processMapping: mapping)
            case .application(let index, let program, let directory): programs[index] = (program, directory)
            case .argument(let application, let value): arguments[application, default: []].append(value)
            case .environment(let application?, let name, let value): programVariables[application, default: []].append((name, value))
            case .environment(nil, let name, let value): jobVariables.append((name, value))
            case .rank(let rank, let application): ranks.append((rank, application))
            case .start: break setup
            case let other: throw LaunchError("unexpected message during set-up: \(other.line)")
            }
        }
        guard size > 0, !ranks.isEmpty else { throw LaunchError("the job names no rank for this host") }
        // Every rank's application number, as far as this host knows them
        // (PMI asks only for a rank's own).
        var numbers = Array(repeating: 0, count: size)
        for (rank, application) in ranks where rank < size { numbers[rank] = application }
        context.applicationNumbers = numbers

        let signals = try LauncherSignals.openDescriptor()
        defer { close(signals) }
        var base = environment.filter { key, _ in !(key.hasPrefix("PMI_") || key.hasPrefix("PMIX_") || key.hasPrefix("SLURM_")) }
        base[JobSecret.environmentVariable] = secret
        for (name, value) in jobVariables { base[name] = value }
        var launches: [RankGroup.Launch] = []
        for (rank, application) in ranks {
            guard let program = programs[application] else { throw LaunchError("rank \(rank)'s program \(application) was not described") }
            guard RankSpawner.findProgram(program.program, path: base["PATH"]) else {
                throw LaunchError("cannot start '\(program.program)': no such program on this host")
            }
            var variables = base
            for (name, value) in programVariables[application] ?? [] { variables[name] = value }
            launches.append(RankGroup.Launch(
                rank: rank, program: program.program, arguments: arguments[application] ?? [],
                environment: variables.map { "\($0.key)=\($0.value)" }.sorted(), workingDirectory: program.directory,
                input: rank == 0 ? .pipe : .none))
        }
        let group = try RankGroup(launches, size: size, context: context) { rank, isError, data in
            up.send(.output(rank: rank, isError: isError, data: Array(data)))
        }
        defer { group.close() }
        up.send(.started)
        do {
            try run(group, up: up, down: down, signals: signals)
        } catch {
            // The proxy cannot go on (mpirun sent what it cannot read): its
            // ranks must not outlive it.
            group.signalRunning(SIGKILL)
            throw error
        }
        return 0
    }

    /// The proxy's event loop, until every rank of its host ended and its
    /// output was sent.
    private static func run(_ group: RankGroup, up: ProxyChannelWriter, down: ProxyChannelReader, signals: Int32) throws(LaunchError) {
        var fenceValues: [String: String] = [:]
        var orphanedAt: ContinuousClock.Instant?
        var drainedBy: ContinuousClock.Instant?
        while !(group.allEnded && group.outputsClosed) {
            // A descendant that keeps a rank's pipe open does not hold the
            // host past a second after its ranks ended.
            if group.allEnded {
                if drainedBy == nil { drainedBy = .now + .seconds(1) }
                if ContinuousClock.now >= drainedBy! { break }
            }
            var descriptors = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            if !down.ended { descriptors.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
            descriptors += group.pollDescriptors
            _ = poll(&descriptors, nfds_t(descriptors.count), orphanedAt == nil ? (group.allEnded ? 100 : -1) : 100)
            // The signals (first in the list) last: a rank's last PMI words
            // (an abort) were written before it exited, so they are read
            // before its end is reaped.
            for entry in descriptors.dropFirst() + descriptors.prefix(1) where entry.revents != 0 {
                if entry.fd == signals {
                    for number in LauncherSignals.drain(signals) {
                        switch number {
                        case SIGCHLD:
                            for (processID, end) in RankSpawner.reap() {
                                if case .ended(let rank, let end)? = group.reaped(processID, end) { up.send(.ended(rank: rank, end: end)) }
                            }
                        case SIGINT, SIGTERM, SIGHUP:
                            group.signalRunning(number)
                        default: break
                        }
                    }
                } else if entry.fd == 0 {
                    for message in try down.read() {
                        switch message {
                        case .value(let key, let value): fenceValues[key] = value
                        case .fenceDone:
                            group.completeFence(with: fenceValues)
                            fenceValues.removeAll()
                        case .signal(let number):
                            group.signalRunning(number)
                        case .input(let data): group.write(input: data, to: 0)
                        case .inputEnd: group.endInput(of: 0)
                        case .report:
                            for item in group.unfinished() {
                                up.send(.state(rank: item.rank, processID: item.processID, text: item.state))
                                if item.reportsOnSignal { _ = kill(item.processID, SIGUSR1) }
                            }
                        default: break
                        }
                    }
                    if down.ended && orphanedAt == nil {
                        // mpirun is gone: nobody will complete a fence or
                        // read the output. End the ranks.
                        orphanedAt = .now
                        group.signalRunning(SIGTERM)
                    }
                } else if let events = group.handle(descriptor: entry.fd, revents: entry.revents) {
                    for event in events {
                        guard case .pmi(let pmi) = event else { continue }
                        switch pmi {
                        case .fenceReady(let puts):
                            for (key, value) in puts { up.send(.value(key: key, value: value)) }
                            up.send(.fence)
                        case .abort(let rank, let code, let message): up.send(.abort(rank: rank, exitCode: code, message: message))
                        case .failed(let rank, let reason): up.send(.failed(rank: rank, reason: reason))
                        case .finalized: break
                        }
                    }
                }
            }
            if let orphanedAt, ContinuousClock.now - orphanedAt > .seconds(1) { group.signalRunning(SIGKILL) }
        }
        group.drainOutputs()
        up.send(.done)
    }
}
