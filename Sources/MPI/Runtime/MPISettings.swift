import Fabric
import PMI

/// Every environment variable that tunes an MPI job, in one list: what
/// mpiinfo shows and docs/launchers.md describes.
public struct MPISetting: Sendable, Codable, Equatable {
    public var name: String
    public var meaning: String
    /// What applies when the variable is not set.
    public var unsetMeans: String
    /// Shown as "set" or "not set", never its value.
    public var isSecret: Bool
}

public enum MPISettings {
    public static let all: [MPISetting] = [
        MPISetting(name: Fabric.backendVariable, meaning: "the fabric backend every rank uses: tcp or verbs", unsetMeans: "verbs where an RDMA device is active, else tcp", isSecret: false),
        MPISetting(name: "FABRIC_JOB_SECRET", meaning: "the job secret every rank's device proves (mpirun sets a fresh one per job)", unsetMeans: "rank 0 draws one and passes it in the launcher's key-value space", isSecret: true),
        MPISetting(name: RankLogHandler.levelVariable, meaning: "the level of the runtime's rank-tagged log on standard error (trace, debug, info, notice, warning, error, critical)", unsetMeans: "warning", isSecret: false),
        MPISetting(name: BootstrapSelection.versionVariable, meaning: "the PMI version spoken over PMI_FD: 1 or 2", unsetMeans: "2", isSecret: false),
        MPISetting(name: "FABRIC_MPIRUN_RSH", meaning: "mpirun's command to reach another host (also OMPI_MCA_plm_rsh_agent, HYDRA_LAUNCHER_EXEC)", unsetMeans: "ssh -o BatchMode=yes", isSecret: false),
        MPISetting(name: "FABRIC_MPIRUN_REMOTE", meaning: "the path of mpirun on other hosts (started there as a proxy)", unsetMeans: "the same path as here", isSecret: false),
        MPISetting(name: "MPIEXEC_TIMEOUT", meaning: "mpirun's --timeout in seconds", unsetMeans: "no timeout", isSecret: false),
        MPISetting(name: "OMPI_MCA_orte_default_hostfile", meaning: "mpirun's host file when no host option is given (the Kubernetes MPI operator sets it)", unsetMeans: "HYDRA_HOST_FILE, else this host alone", isSecret: false),
        MPISetting(name: "HYDRA_HOST_FILE", meaning: "mpirun's host file when no host option is given", unsetMeans: "this host alone", isSecret: false),
        MPISetting(name: "FABRIC_TCP_PROFILE", meaning: "the card the tcp software NIC behaves like (fabric-info --profiles)", unsetMeans: "the software NIC's own profile", isSecret: false),
        MPISetting(name: "FABRIC_TCP_LINK", meaning: "link shaping of the tcp software NIC (latency, rate)", unsetMeans: "no shaping", isSecret: false),
        MPISetting(name: "FABRIC_TCP_FAULTS", meaning: "faults the tcp software NIC injects", unsetMeans: "none", isSecret: false),
        MPISetting(name: "FABRIC_TCP_SPIN_BELOW", meaning: "a blocked tcp waiter spins rather than sleeps for a timer due sooner than this (0: always sleep)", unsetMeans: "10us", isSecret: false),
    ] + PointToPointSettings.variables.map { variable in
        MPISetting(name: variable.name, meaning: variable.meaning, unsetMeans: variable.unsetMeans, isSecret: false)
    } + CollectiveSettings.variables.map { variable in
        MPISetting(name: variable.name, meaning: variable.meaning, unsetMeans: variable.unsetMeans, isSecret: false)
    } + [
        MPISetting(name: "FABRIC_REGISTRATION_CAP", meaning: "bytes the registration cache may keep registered (cached and in use); it can only lower the default", unsetMeans: "RLIMIT_MEMLOCK on verbs; half of physical memory on tcp, or where the memlock limit does not bind", isSecret: false),
        MPISetting(name: "FABRIC_REGCACHE", meaning: "on or off: off registers every rendezvous buffer for one transfer", unsetMeans: "on", isSecret: false),
        MPISetting(name: "FABRIC_REGCACHE_ENTRIES", meaning: "the most registrations the cache keeps", unsetMeans: "1024", isSecret: false),
        MPISetting(name: "FABRIC_REGCACHE_INVALIDATION", meaning: "off ignores the memory monitor (wrong on purpose: the test that shows stale data on a card uses it)", unsetMeans: "on", isSecret: false),
        MPISetting(name: "FABRIC_MEMORY_MONITOR", meaning: "off: no userfaultfd monitor, so nothing is cached (as where a kernel or container forbids userfaultfd)", unsetMeans: "the monitor runs where userfaultfd is allowed", isSecret: false),
    ]

    /// Each setting with its value in `environment` (a secret's shown as set).
    public static func current(_ environment: [String: String]) -> [(setting: MPISetting, value: String?)] {
        all.map { setting in
            let value = environment[setting.name]
            return (setting, setting.isSecret ? value.map { _ in "(set)" } : value)
        }
    }
}
