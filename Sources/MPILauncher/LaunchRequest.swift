/// What a user asked mpirun for, read from its command line: one or more
/// programs (MPMD: `prog1 : prog2`), where they run, and how.
public struct LaunchRequest: Equatable, Sendable {
    /// One program of the command line and its ranks.
    public struct Application: Equatable, Sendable {
        /// Ranks of this program; nil when the command line gave no `-n`
        /// (then the host list's slots decide).
        public var count: Int?
        public var program: String
        public var arguments: [String]
        /// Variables this program's ranks get (MPICH's `-env`).
        public var environment: [EnvironmentSetting]
        public var workingDirectory: String?

        public init(count: Int? = nil, program: String, arguments: [String] = [], environment: [EnvironmentSetting] = [], workingDirectory: String? = nil) {
            self.count = count
            self.program = program
            self.arguments = arguments
            self.environment = environment
            self.workingDirectory = workingDirectory
        }
    }

    /// A variable for the ranks: a value, or the launcher's own value of
    /// that name (Open MPI's `-x NAME`).
    public enum EnvironmentSetting: Equatable, Sendable {
        case set(name: String, value: String)
        case copy(name: String)
    }

    /// Where the host list came from, for messages.
    public enum HostSource: Equatable, Sendable {
        /// No host list: every rank on this host, as many as asked.
        case local
        case commandLine([HostSlots])
        case file(path: String, [HostSlots])
    }

    public var applications: [Application] = []
    public var hosts: HostSource = .local
    /// Ranks per host (MPICH's `-ppn`, Open MPI's `--npernode`).
    public var ranksPerHost: Int?
    public var oversubscribe = false
    /// Variables for every rank (`-x`, `-genv`).
    public var environment: [EnvironmentSetting] = []
    public var workingDirectory: String?
    /// Prefix each output line with `[job,rank]<stdout>:` (Open MPI's form).
    public var tagOutput = false
    /// Prefix each output line with `[rank] ` (MPICH's `-l`).
    public var prependRank = false
    public var timeout: Duration?
    /// The command that reaches another host (ssh by default).
    public var remoteShell: [String]?

    public init() {}
}

/// A host and how many ranks it takes.
public struct HostSlots: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var slots: Int

    public init(host: String, slots: Int) {
        self.host = host
        self.slots = slots
    }

    public var description: String { "\(host):\(slots)" }
}

/// A command line or host file mpirun cannot run: the message names what.
public struct LaunchError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
