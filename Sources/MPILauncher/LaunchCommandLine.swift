/// mpirun's command line, with the flags Open MPI and MPICH users type.
///
/// MPI launchers' flags do not fit a general argument parser: long names
/// with one dash (`-np`, `-genv`), options with two values (`-genv NAME
/// VALUE`), programs whose own flags follow theirs, and several programs
/// on one line separated by `:`. The grammar is a table here instead:
/// every flag, its spellings, and what it takes. A flag of either
/// launcher that this mpirun does not implement is refused by name, never
/// ignored.
public enum LaunchCommandLine {
    /// Environment variables that name a host file when the command line
    /// gives no hosts (the Kubernetes MPI operator sets them).
    public static let hostFileVariables = ["OMPI_MCA_orte_default_hostfile", "HYDRA_HOST_FILE"]
    /// Names the remote shell when no flag does.
    public static let remoteShellVariables = ["FABRIC_MPIRUN_RSH", "OMPI_MCA_plm_rsh_agent", "HYDRA_LAUNCHER_EXEC"]

    enum Flag: CaseIterable {
        case count, host, hostFile, ranksPerHost, export, globalEnvironment, environment, workingDirectory
        case tagOutput, prependRank, timeout, oversubscribe, remoteShell, help, version

        var spellings: [String] {
            switch self {
            case .count: return ["-n", "-np", "--n", "--np", "-c"]
            case .host: return ["--host", "-host", "-H", "-hosts", "--hosts"]
            case .hostFile: return ["--hostfile", "-hostfile", "-f", "-machinefile", "--machinefile", "-machine", "--default-hostfile"]
            case .ranksPerHost: return ["-ppn", "--ppn", "-npernode", "--npernode", "-N"]
            case .export: return ["-x"]
            case .globalEnvironment: return ["-genv", "--genv"]
            case .environment: return ["-env", "--env"]
            case .workingDirectory: return ["-wdir", "--wdir", "-wd", "--wd", "-cwd"]
            case .tagOutput: return ["--tag-output", "-tag-output"]
            case .prependRank: return ["-l", "-prepend-rank", "--prepend-rank"]
            case .timeout: return ["--timeout", "-timeout"]
            case .oversubscribe: return ["--oversubscribe", "-oversubscribe"]
            case .remoteShell: return ["--launcher-exec", "-launcher-exec", "--rsh-agent", "-rsh-agent"]
            case .help: return ["-h", "--help", "-help"]
            case .version: return ["-V", "--version", "-version"]
            }
        }

        /// How many values follow the flag.
        var valueCount: Int {
            switch self {
            case .tagOutput, .prependRank, .oversubscribe, .help, .version: return 0
            case .globalEnvironment, .environment: return 2
            default: return 1
            }
        }
    }

    /// Flags of Open MPI or MPICH this mpirun does not implement, with
    /// what to do instead.
    static let refused: [String: String] = [
        "--map-by": "process placement is by host slots, -ppn and --host only",
        "-map-by": "process placement is by host slots, -ppn and --host only",
        "--rank-by": "ranks are numbered in host-list order",
        "-rank-by": "ranks are numbered in host-list order",
        "--bind-to": "this mpirun does not bind ranks to cores",
        "-bind-to": "this mpirun does not bind ranks to cores",
        "-binding": "this mpirun does not bind ranks to cores",
        "--report-bindings": "this mpirun does not bind ranks to cores",
        "--cpus-per-proc": "this mpirun does not bind ranks to cores",
        "--cpus-per-rank": "this mpirun does not bind ranks to cores",
        "--mca": "there are no MCA parameters; the library's settings are environment variables (mpiinfo lists them)",
        "-mca": "there are no MCA parameters; the library's settings are environment variables (mpiinfo lists them)",
        "-gmca": "there are no MCA parameters; the library's settings are environment variables (mpiinfo lists them)",
        "--prefix": "the ranks' programs are found through PATH or by full path",
        "-launcher": "remote hosts are reached with ssh; --launcher-exec names another command",
        "-bootstrap": "remote hosts are reached with ssh; --launcher-exec names another command",
        "-rmk": "jobs take their hosts from --host or a host file; under Slurm use srun",
        "-genvlist": "use -x NAME for each variable",
        "-genvnone": "local ranks inherit mpirun's environment",
        "-envlist": "use -x NAME for each variable",
        "--preload-binary": "copy the program to the hosts first",
        "-pmi-port": "ranks reach this mpirun's PMI server on inherited descriptors",
        "--enable-recovery": "a failing rank ends the job",
    ]

    static let lookup: [String: Flag] = {
        var table: [String: Flag] = [:]
        for flag in Flag.allCases {
            for spelling in flag.spellings { table[spelling] = flag }
        }
        return table
    }()

    /// What the command line asked for. `readFile` reads a host file;
    /// `environment` is mpirun's own (for `-x NAME` and the host-file
    /// variables).
    public static func parse(
        _ arguments: [String], environment: [String: String], readFile: (String) throws(LaunchError) -> String
    ) throws(LaunchError) -> Outcome {
        var request = LaunchRequest()
        var hostsGiven = false
        var remaining = arguments[...]
        var segmentIndex = 0
        while true {
            var application = LaunchRequest.Application(program: "")
            var countGiven = false
            while let word = remaining.first, word != ":" {
                guard word.hasPrefix("-") && word.count > 1 else { break }
                remaining = remaining.dropFirst()
                // `--flag=value` as well as `--flag value`.
                var name = word
                var inlineValue: String?
                if word.hasPrefix("--"), let equals = word.firstIndex(of: "=") {
                    name = String(word[..<equals])
                    inlineValue = String(word[word.index(after: equals)...])
                }
                if let why = refused[name] {
                    throw LaunchError("\(name) is not implemented by this mpirun: \(why)")
                }
                guard let flag = lookup[name] else {
                    throw LaunchError("unknown option '\(name)' (mpirun --help lists the options)")
                }
                var values: [String] = []
                if let inlineValue {
                    guard flag.valueCount == 1 else { throw LaunchError("\(name) does not take '=value'") }
                    values = [inlineValue]
                } else {
                    for position in 0..<flag.valueCount {
                        guard let value = remaining.first, value != ":" else {
                            throw LaunchError("\(name) needs \(flag.valueCount == 1 ? "a value" : "\(flag.valueCount) values") (\(position) given)")
                        }
                        values.append(value)
                        remaining = remaining.dropFirst()
                    }
                }
                switch flag {
                case .help: return .help
                case .version: return .version
                case .count:
                    guard let count = Int(values[0]), count >= 1 else {
                        throw LaunchError("\(name) '\(values[0])': the number of ranks must be a whole number of at least 1")
                    }
                    guard !countGiven else { throw LaunchError("\(name) is given twice for one program") }
                    application.count = count
                    countGiven = true
                case .host:
                    guard !hostsGiven else { throw LaunchError("\(name): the hosts are already given; give one host list") }
                    request.hosts = .commandLine(try HostList.parse(commandLine: values[0]))
                    hostsGiven = true
                case .hostFile:
                    guard !hostsGiven else { throw LaunchError("\(name): the hosts are already given; give one host list") }
                    request.hosts = .file(path: values[0], try HostList.parse(file: readFile(values[0]), path: values[0]))
                    hostsGiven = true
                case .ranksPerHost:
                    guard let count = Int(values[0]), count >= 1 else {
                        throw LaunchError("\(name) '\(values[0])': ranks per host must be a whole number of at least 1")
                    }
                    request.ranksPerHost = count
                case .export:
                    request.environment.append(try exported(values[0], flag: name))
                case .globalEnvironment:
                    try checkVariableName(values[0], flag: name)
                    request.environment.append(.set(name: values[0], value: values[1]))
                case .environment:
                    try checkVariableName(values[0], flag: name)
                    application.environment.append(.set(name: values[0], value: values[1]))
                case .workingDirectory:
                    if segmentIndex == 0 { request.workingDirectory = values[0] } else { application.workingDirectory = values[0] }
                case .tagOutput: request.tagOutput = true
                case .prependRank: request.prependRank = true
                case .timeout:
                    guard let seconds = Double(values[0]), seconds > 0, seconds.isFinite else {
                        throw LaunchError("\(name) '\(values[0])': a timeout is a number of seconds above 0")
                    }
                    request.timeout = .milliseconds(Int64(seconds * 1000))
                case .oversubscribe: request.oversubscribe = true
                case .remoteShell:
                    let words = values[0].split(separator: " ").map(String.init)
                    guard !words.isEmpty else { throw LaunchError("\(name) needs a command") }
                    request.remoteShell = words
                }
            }
            guard let program = remaining.first, program != ":" else {
                throw LaunchError(segmentIndex == 0 ? "no program to run (mpirun [options] PROGRAM [ARGUMENTS])" : "no program after ':' (each ':' starts another program)")
            }
            remaining = remaining.dropFirst()
            application.program = program
            while let word = remaining.first, word != ":" {
                application.arguments.append(word)
                remaining = remaining.dropFirst()
            }
            request.applications.append(application)
            guard remaining.first == ":" else { break }
            remaining = remaining.dropFirst()
            segmentIndex += 1
        }
        if !hostsGiven {
            for variable in hostFileVariables {
                if let path = environment[variable], !path.isEmpty {
                    request.hosts = .file(path: path, try HostList.parse(file: readFile(path), path: path))
                    break
                }
            }
        }
        if request.remoteShell == nil {
            for variable in remoteShellVariables {
                if let command = environment[variable], !command.isEmpty {
                    request.remoteShell = command.split(separator: " ").map(String.init)
                    break
                }
            }
        }
        if request.timeout == nil, let text = environment["MPIEXEC_TIMEOUT"], !text.isEmpty {
            guard let seconds = Double(text), seconds > 0, seconds.isFinite else {
                throw LaunchError("MPIEXEC_TIMEOUT='\(text)': a timeout is a number of seconds above 0")
            }
            request.timeout = .milliseconds(Int64(seconds * 1000))
        }
        return .run(request)
    }

    public enum Outcome: Equatable, Sendable {
        case run(LaunchRequest)
        case help
        case version
    }

    private static func exported(_ text: String, flag: String) throws(LaunchError) -> LaunchRequest.EnvironmentSetting {
        if let equals = text.firstIndex(of: "=") {
            let name = String(text[..<equals])
            try checkVariableName(name, flag: flag)
            return .set(name: name, value: String(text[text.index(after: equals)...]))
        }
        try checkVariableName(text, flag: flag)
        return .copy(name: text)
    }

    private static func checkVariableName(_ name: String, flag: String) throws(LaunchError) {
        guard let first = name.first, first == "_" || first.isLetter,
            name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) })
        else {
            throw LaunchError("\(flag) '\(name)': not an environment variable name")
        }
    }

    public static let usage = """
        usage: mpirun [options] PROGRAM [ARGUMENTS] [: [options] PROGRAM [ARGUMENTS]]...

          -n, -np N               ranks of this program
          --host, -H, -hosts L    hosts: h1:2,h2:2 or h1,h1,h2
          --hostfile, -f, -machinefile FILE
                                  one host per line: host:N or host slots=N
                                  (default: $OMPI_MCA_orte_default_hostfile or $HYDRA_HOST_FILE)
          -ppn, --npernode N      ranks per host
          --oversubscribe         more ranks than a host file's slots
          -x NAME[=VALUE]         a variable for every rank (NAME alone: mpirun's value)
          -genv NAME VALUE        a variable for every rank
          -env NAME VALUE         a variable for this program's ranks
          -wdir DIR               the ranks' working directory
          --tag-output            prefix output lines with [1,RANK]<stdout>:
          -l, -prepend-rank       prefix output lines with [RANK]
          --timeout SECONDS       end the job after this long, naming the ranks still running
                                  (also $MPIEXEC_TIMEOUT)
          --launcher-exec CMD     the command that reaches other hosts (default ssh;
                                  also $FABRIC_MPIRUN_RSH, $OMPI_MCA_plm_rsh_agent, $HYDRA_LAUNCHER_EXEC)
          -h, --help              this text
          -V, --version           the version

        Rank 0 reads mpirun's standard input. Ctrl-C or SIGTERM ends every rank;
        SIGUSR1 makes every rank say what it waits for.
        """
}
