/// Chooses how this process learns its rank and reaches the job's
/// key-value space, from the environment its launcher gave it:
///
/// | environment | client |
/// |---|---|
/// | `PMIX_NAMESPACE` and `PMIX_RANK` (Slurm `--mpi=pmix`, Open MPI's launchers) | PMIx through `libpmix.so.2` |
/// | `PMI_FD` (Hydra, Slurm `--mpi=pmi2`, Flux) | PMI-2 on that descriptor; PMI-1 when `FABRIC_PMI_VERSION=1` |
/// | `PMI_PORT` and `PMI_ID` (Hydra `-pmi-port`) | PMI-1 over TCP |
/// | none of these | a singleton, unless the environment says the job has more tasks |
///
/// A process whose environment says the job has several tasks but offers
/// no usable bootstrap refuses to start as a singleton: N separate one-rank
/// jobs that each think they are the whole are worse than an error.
public enum BootstrapSelection {
    /// `1` or `2`: which PMI version to speak over `PMI_FD` (default 2).
    public static let versionVariable = "FABRIC_PMI_VERSION"

    /// What the environment asks for, before anything is contacted.
    public enum Choice: Equatable, Sendable, CustomStringConvertible {
        case pmix(namespace: String, rank: Int)
        case pmi2(descriptor: Int32, rank: Int, jobID: String?)
        case pmi1(descriptor: Int32, rank: Int, size: Int)
        case pmi1Port(host: String, port: UInt16, identifier: String)
        case singleton

        public var description: String {
            switch self {
            case .pmix(let namespace, let rank): return "PMIx (namespace \(namespace), rank \(rank))"
            case .pmi2(let descriptor, let rank, _): return "PMI-2 over PMI_FD=\(descriptor) (rank \(rank))"
            case .pmi1(let descriptor, let rank, let size): return "PMI-1 over PMI_FD=\(descriptor) (rank \(rank) of \(size))"
            case .pmi1Port(let host, let port, _): return "PMI-1 over PMI_PORT=\(host):\(port)"
            case .singleton: return "singleton (no launcher)"
            }
        }
    }

    /// Reads the environment; names the variable that is wrong.
    public static func choose(from environment: [String: String]) throws(PMIError) -> Choice {
        if let namespace = environment["PMIX_NAMESPACE"], !namespace.isEmpty {
            let rank = try integer("PMIX_RANK", in: environment, atLeast: 0)
            return .pmix(namespace: namespace, rank: rank)
        }
        if let text = environment["PMI_FD"] {
            guard let descriptor = Int32(text), descriptor >= 0 else {
                throw PMIError(.badEnvironment, "PMI_FD='\(text)' is not a file descriptor number")
            }
            let rank = try integer("PMI_RANK", in: environment, atLeast: 0)
            switch environment[versionVariable] ?? "2" {
            case "2":
                return .pmi2(descriptor: descriptor, rank: rank, jobID: environment["PMI_JOBID"])
            case "1":
                let size = try integer("PMI_SIZE", in: environment, atLeast: 1)
                guard rank < size else { throw PMIError(.badEnvironment, "PMI_RANK=\(rank) is not below PMI_SIZE=\(size)") }
                return .pmi1(descriptor: descriptor, rank: rank, size: size)
            case let other:
                throw PMIError(.badEnvironment, "\(versionVariable)='\(other)': expected 1 or 2")
            }
        }
        if let text = environment["PMI_PORT"] {
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port != 0 else {
                throw PMIError(.badEnvironment, "PMI_PORT='\(text)' is not host:port")
            }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard let identifier = environment["PMI_ID"], !identifier.isEmpty else {
                throw PMIError(.badEnvironment, "PMI_PORT is set but PMI_ID is not: the PMI server cannot tell which rank this is")
            }
            return .pmi1Port(host: host, port: port, identifier: identifier)
        }
        for variable in ["PMI_SIZE", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"] {
            if let text = environment[variable], let count = Int(text), count > 1 {
                throw PMIError(.badEnvironment, "\(variable)=\(count) says this job has \(count) tasks, but the environment offers no bootstrap this library speaks (no PMI_FD, PMI_PORT or PMIX_NAMESPACE); refusing to run as one of \(count) separate singletons. Under Slurm use srun --mpi=pmi2 or --mpi=pmix")
            }
        }
        return .singleton
    }

    /// Contacts what `choice` names.
    public static func connect(_ choice: Choice, timeouts: BootstrapTimeouts = BootstrapTimeouts()) throws(PMIError) -> any BootstrapClient {
        switch choice {
        case .pmix(_, let rank):
            return try PMIxClient(expectedRank: rank, timeouts: timeouts)
        case .pmi2(let descriptor, let rank, let jobID):
            return try PMI2Client(descriptor: descriptor, rank: rank, jobID: jobID, timeouts: timeouts)
        case .pmi1(let descriptor, let rank, let size):
            return try PMI1Client(descriptor: descriptor, rank: rank, size: size, timeouts: timeouts)
        case .pmi1Port(let host, let port, let identifier):
            return try PMI1Client(host: host, port: port, identifier: identifier, timeouts: timeouts)
        case .singleton:
            return SingletonClient()
        }
    }

    private static func integer(_ name: String, in environment: [String: String], atLeast minimum: Int) throws(PMIError) -> Int {
        guard let text = environment[name] else { throw PMIError(.badEnvironment, "\(name) is not set (the launcher's other variables are)") }
        guard let value = Int(text), value >= minimum else {
            throw PMIError(.badEnvironment, "\(name)='\(text)' is not a number of at least \(minimum)")
        }
        return value
    }
}
