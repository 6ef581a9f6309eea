import FabricSupport
import PMI

/// The secret every rank's fabric device proves it knows: the launcher's
/// `FABRIC_JOB_SECRET` when it set one (our mpirun always does); otherwise
/// rank 0 draws one and publishes it in the job's key-value space before
/// the first fence, and the others read it after. Never the per-user key
/// file: without a shared home directory it differs between hosts.
enum JobSecretExchange {
    static let key = "fabric-job-secret"

    /// The secret, and whether getting it took a fence.
    static func obtain(bootstrap: any BootstrapClient, environment: [String: String]) throws(MPIError) -> (secret: [UInt8], fenced: Bool) {
        if let given = environment[JobSecret.environmentVariable] {
            guard given.utf8.count >= 16 else {
                throw MPIError(.bootstrap(.badEnvironment), "\(JobSecret.environmentVariable) is set but shorter than 16 characters")
            }
            return (Array(given.utf8), false)
        }
        if bootstrap.size == 1 { return (Array(JobSecret.generate().utf8), false) }
        do {
            if bootstrap.rank == 0 { try bootstrap.put(key: key, value: JobSecret.generate()) }
            try bootstrap.fence()
            let value = try bootstrap.get(key: key)
            guard value.utf8.count >= 32 else {
                throw MPIError(.bootstrap(.unexpectedReply), "the job secret rank 0 published is \(value.utf8.count) characters, not a secret")
            }
            return (Array(value.utf8), true)
        } catch let error as PMIError {
            throw MPIError(error)
        } catch let error as MPIError {
            throw error
        } catch {
            throw MPIError(.bootstrap(.unexpectedReply), "\(error)")
        }
    }

}
