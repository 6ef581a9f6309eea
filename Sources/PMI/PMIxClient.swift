import CPMIxLoader

/// PMIx, as Slurm's `srun --mpi=pmix` and Open MPI's launchers serve it.
/// PMIx defines a library interface rather than a wire format, so this
/// client opens OpenPMIx's `libpmix.so.2` when it is created (Debian's
/// `libpmix2`) instead of linking it: programs that never meet PMIx need
/// no libpmix installed.
///
/// Keys live in one space for the whole job, as in PMI-1 and PMI-2: a
/// fence collects every rank's values, and `get` finds a key whichever
/// rank put it, searching the collected values rank by rank (PMIx itself
/// files values by rank), so a get costs up to `size` local lookups.
public final class PMIxClient: BootstrapClient {
    /// What `init()` opens.
    public static let defaultLibrary = "libpmix.so.2"

    public let rank: Int
    public let size: Int
    public let protocolName: String
    /// The job's namespace, as the PMIx server names it.
    public let jobNamespace: String

    private let timeouts: BootstrapTimeouts
    private var finalized = false

    /// Loads `library` and connects to the local PMIx server named by the
    /// `PMIX_` variables. `expectedRank` is `PMIX_RANK`, checked against
    /// what the server says.
    public init(library: String = PMIxClient.defaultLibrary, expectedRank: Int? = nil, timeouts: BootstrapTimeouts = BootstrapTimeouts()) throws(PMIError) {
        try Self.load(library)
        self.timeouts = timeouts
        protocolName = "PMIx through \(library)"
        var givenRank: UInt32 = 0
        var name = [CChar](repeating: 0, count: Int(FABRIC_PMIX_NAMESPACE_CAPACITY))
        let status = fabric_pmix_init(&givenRank, &name)
        guard status == 0 else {
            throw PMIError(.connectionLost, "PMIx could not reach the launcher's PMIx server: \(Self.describe(status)). The server listens on the host's network; a rank inside another network namespace cannot reach it (start such ranks with srun --mpi=pmi2)")
        }
        jobNamespace = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var jobSize: UInt32 = 0
        let sized = fabric_pmix_job_size(jobNamespace, &jobSize)
        guard sized == 0 else {
            _ = fabric_pmix_finalize()
            throw PMIError(.unexpectedReply, "the PMIx server gives no job size (pmix.job.size) for \(jobNamespace): \(Self.describe(sized))")
        }
        guard givenRank < jobSize else {
            _ = fabric_pmix_finalize()
            throw PMIError(.unexpectedReply, "the PMIx server says this is rank \(givenRank) of a job of \(jobSize)")
        }
        if let expectedRank, expectedRank != Int(givenRank) {
            _ = fabric_pmix_finalize()
            throw PMIError(.unexpectedReply, "the PMIx server says this is rank \(givenRank), PMIX_RANK says \(expectedRank)")
        }
        rank = Int(givenRank)
        size = Int(jobSize)
    }

    public func put(key: String, value: String) throws(PMIError) {
        try Self.check(key: key)
        guard !value.utf8.contains(0) else { throw PMIError(.invalidArgument, "the value for '\(key)' contains a NUL byte, which a PMIx string cannot carry") }
        let status = fabric_pmix_put_string(key, value)
        guard status == 0 else { throw PMIError(.refused, "PMIx refused to put '\(key)': \(Self.describe(status))") }
    }

    /// Commits what was put, then waits for every rank, collecting all
    /// values so that later gets need not ask the server.
    public func fence() throws(PMIError) {
        let committed = fabric_pmix_commit()
        guard committed == 0 else { throw PMIError(.refused, "PMIx refused to commit: \(Self.describe(committed))") }
        let status = fabric_pmix_fence_all(jobNamespace, Self.seconds(timeouts.fence))
        guard status == 0 else {
            throw PMIError(status == FABRIC_PMIX_TIMEOUT ? .timedOut : .refused, "the PMIx fence failed: \(Self.describe(status))")
        }
    }

    public func get(key: String) throws(PMIError) -> String {
        try Self.check(key: key)
        // PMIx files a value under the rank that put it and has no lookup
        // across ranks: a get with PMIx's "undefined" rank finds nothing in
        // the collected data, and asked of Slurm's server it is refused as
        // rank -1 while the get waits. So look in each rank's collected
        // values, locally (the fence collected them all).
        var value: UnsafeMutablePointer<CChar>?
        var status = FABRIC_PMIX_NOT_FOUND
        for owner in 0..<size where status == FABRIC_PMIX_NOT_FOUND {
            status = fabric_pmix_get_string(jobNamespace, UInt32(owner), key, 1, Self.seconds(timeouts.request), &value)
        }
        switch status {
        case 0:
            guard let value else { throw PMIError(.unexpectedReply, "PMIx returned no value for '\(key)'") }
            defer { fabric_pmix_free_string(value) }
            return String(cString: value)
        case FABRIC_PMIX_NOT_FOUND:
            throw PMIError(.keyNotFound, "no rank put the key '\(key)' in the job's key-value space (\(protocolName): \(Self.describe(status)))")
        case FABRIC_PMIX_TIMEOUT:
            throw PMIError(.timedOut, "PMIx found no value for '\(key)' within \(timeouts.request)")
        default:
            throw PMIError(.refused, "PMIx could not get '\(key)': \(Self.describe(status))")
        }
    }

    public func abort(exitCode: Int32, message: String) {
        _ = fabric_pmix_abort(exitCode, String(message.prefix(1024)), jobNamespace)
    }

    public func finalize() throws(PMIError) {
        guard !finalized else { return }
        finalized = true
        let status = fabric_pmix_finalize()
        guard status == 0 else { throw PMIError(.refused, "PMIx refused to finalize: \(Self.describe(status))") }
    }

    /// Opens the library once per process; names the package when it is
    /// missing.
    static func load(_ library: String) throws(PMIError) {
        var reason = [CChar](repeating: 0, count: 512)
        guard fabric_pmix_load(library, &reason, reason.count) == 0 else {
            let why = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw PMIError(.badEnvironment, "the launcher asks for PMIx, but \(library) could not be loaded (\(why)); install OpenPMIx (Debian: apt-get install libpmix2), or start the job with PMI-2 instead (srun --mpi=pmi2, or mpiexec.hydra)")
        }
    }

    private static func check(key: String) throws(PMIError) {
        guard !key.isEmpty, key.utf8.count <= 511, !key.utf8.contains(0) else {
            throw PMIError(.invalidArgument, "'\(key)' is not a PMIx key (1 to 511 bytes, no NUL)")
        }
    }

    private static func describe(_ status: Int32) -> String {
        "\(String(cString: fabric_pmix_error_string(status))) (status \(status))"
    }

    /// Whole seconds, at least 1: PMIx reads 0 as "no limit".
    private static func seconds(_ duration: Duration) -> Int32 {
        Int32(clamping: max(1, duration.components.seconds + (duration.components.attoseconds > 0 ? 1 : 0)))
    }
}

