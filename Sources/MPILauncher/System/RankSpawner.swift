import CLauncherShims
import Glibc

/// Starts one rank: its program with the PMI socket, output pipes and
/// environment it needs, in a process group of its own (so that signals
/// reach whatever it starts, and the terminal's Ctrl-C reaches mpirun,
/// which forwards it). The launcher's system calls for processes are here.
enum RankSpawner {
    /// The descriptor number a rank finds its PMI socket at (`PMI_FD`).
    static let pmiDescriptor: Int32 = 3

    /// What a rank reads as its standard input.
    enum Input {
        /// mpirun's own (rank 0 on mpirun's host).
        case inherited
        /// Nothing: /dev/null.
        case none
        /// A pipe whose write end the launcher keeps (rank 0 on a proxy's
        /// host: what mpirun reads comes down the channel).
        case pipe
    }

    struct Started {
        let processID: pid_t
        /// The write end of the rank's standard input, for `.pipe`.
        let standardInput: Int32?
        /// The launcher's end of the rank's PMI socket.
        let pmi: Int32
        let standardOutput: Int32
        let standardError: Int32
    }

    static func start(
        program: String, arguments: [String], environment: [String], workingDirectory: String?, input: Input
    ) throws(LaunchError) -> Started {
        var pmi: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pmi) == 0 else {
            throw LaunchError("cannot make a PMI socket for \(program): \(String(cString: strerror(errno)))")
        }
        var output: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        guard launcher_pipe(&output) == 0, launcher_pipe(&errors) == 0 else {
            let code = errno
            for descriptor in pmi + output + errors where descriptor >= 0 { close(descriptor) }
            throw LaunchError("cannot make output pipes for \(program): \(String(cString: strerror(code)))")
        }
        var inputPipe: [Int32] = [-1, -1]
        if case .pipe = input, launcher_pipe(&inputPipe) != 0 {
            let code = errno
            for descriptor in pmi + output + errors { close(descriptor) }
            throw LaunchError("cannot make an input pipe for \(program): \(String(cString: strerror(code)))")
        }
        defer {
            close(pmi[1])
            close(output[1])
            close(errors[1])
            if inputPipe[0] >= 0 { close(inputPipe[0]) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        switch input {
        case .inherited: break
        case .none: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .pipe: posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
        }
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        posix_spawn_file_actions_adddup2(&actions, pmi[1], pmiDescriptor)
        // Nothing else of the launcher's reaches the rank.
        launcher_spawn_close_from(&actions, pmiDescriptor + 1)
        if let workingDirectory { launcher_spawn_change_directory(&actions, workingDirectory) }

        var attributes = posix_spawnattr_t()
        prepareAttributes(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var processID: pid_t = 0
        let status = posix_spawnp(&processID, program, &actions, &attributes, argv, envp)
        guard status == 0 else {
            close(pmi[0])
            close(output[0])
            close(errors[0])
            if inputPipe[1] >= 0 { close(inputPipe[1]) }
            throw LaunchError("cannot start '\(program)': \(String(cString: strerror(status)))")
        }
        return Started(
            processID: processID, standardInput: inputPipe[1] >= 0 ? inputPipe[1] : nil, pmi: pmi[0],
            standardOutput: output[0], standardError: errors[0])
    }

    /// A remote shell to another host (ssh HOST COMMAND), its standard
    /// input, output and error piped to mpirun, in a process group of its
    /// own so that the terminal's Ctrl-C does not reach it directly.
    struct RemoteShell {
        let processID: pid_t
        let input: Int32
        let output: Int32
        let errors: Int32
    }

    static func startRemoteShell(_ command: [String], environment: [String]) throws(LaunchError) -> RemoteShell {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        guard launcher_pipe(&input) == 0, launcher_pipe(&output) == 0, launcher_pipe(&errors) == 0 else {
            let code = errno
            for descriptor in input + output + errors where descriptor >= 0 { close(descriptor) }
            throw LaunchError("cannot make pipes for '\(command.joined(separator: " "))': \(String(cString: strerror(code)))")
        }
        defer {
            close(input[0])
            close(output[1])
            close(errors[1])
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        launcher_spawn_close_from(&actions, 3)
        var attributes = posix_spawnattr_t()
        prepareAttributes(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var processID: pid_t = 0
        let status = posix_spawnp(&processID, command[0], &actions, &attributes, argv, envp)
        guard status == 0 else {
            close(input[1])
            close(output[0])
            close(errors[0])
            throw LaunchError("cannot start the remote shell '\(command[0])': \(String(cString: strerror(status)))")
        }
        for descriptor in [output[0], errors[0]] {
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        }
        return RemoteShell(processID: processID, input: input[1], output: output[0], errors: errors[0])
    }

    /// What every child of the launcher starts with: the signals the
    /// launcher reads through a descriptor are blocked in it, so the child
    /// gets none blocked and default handlers; and a process group of its
    /// own, so that the terminal's Ctrl-C reaches mpirun, which passes it
    /// on, and a signal to the group reaches whatever the child starts.
    private static func prepareAttributes(_ attributes: inout posix_spawnattr_t) {
        posix_spawnattr_init(&attributes)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = LauncherSignals.set
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
    }

    /// This program's own path, for starting it as a proxy elsewhere.
    static func ownExecutable() -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { readlink("/proc/self/exe", $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : CommandLine.arguments[0]
    }

    /// Signals a rank's process group.
    static func signal(_ processID: pid_t, _ number: Int32) {
        _ = kill(-processID, number)
    }

    /// Reaps every rank that ended, without waiting.
    static func reap() -> [(pid_t, RankEnd)] {
        var ended: [(pid_t, RankEnd)] = []
        while true {
            var status: Int32 = 0
            let processID = waitpid(-1, &status, WNOHANG)
            guard processID > 0 else { break }
            // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out: Swift does
            // not import the macros.
            let signal = status & 0x7f
            if signal == 0 {
                ended.append((processID, .exited((status >> 8) & 0xff)))
            } else if signal != 0x7f {
                ended.append((processID, .killed(signal)))
            }
        }
        return ended
    }

    /// Whether `program` can be started: a path that is executable, or a
    /// name found on PATH.
    static func findProgram(_ program: String, path: String?) -> Bool {
        if program.contains("/") { return access(program, X_OK) == 0 }
        for directory in (path ?? "/usr/bin:/bin").split(separator: ":") {
            if access("\(directory)/\(program)", X_OK) == 0 { return true }
        }
        return false
    }
}

/// How a rank's process ended.
public enum RankEnd: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case killed(Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exited with status \(code)"
        case .killed(let number): return "was killed by signal \(number) (\(LauncherSignals.name(number)))"
        }
    }

    /// The job's exit status if this rank is the first to fail.
    public var jobStatus: Int32 {
        switch self {
        case .exited(let code): return code
        case .killed(let number): return 128 + number
        }
    }
}
