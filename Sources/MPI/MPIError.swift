import FabricCore
import PMI

/// An MPI operation that could not be done: a value that says what and
/// why, with a kind code and tests match (the classes of MPI's errors
/// that this layer reports so far).
public struct MPIError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// The launcher's bootstrap failed or is unusable.
        case bootstrap(PMIError.Kind)
        /// The fabric refused or failed (device, connection, transfer).
        case fabric(FabricError.Kind)
        /// A rank outside the job or the communicator.
        case invalidRank
        /// A tag outside 0...MessageTag.upperBound (or `.any` where a send needs one).
        case invalidTag
        /// A request that is not in progress (completed, or never started here).
        case invalidRequest
        /// A count, size or setting that cannot be.
        case invalidArgument
        /// A datatype that is not committed, is freed, or cannot be built
        /// (MPI_ERR_TYPE).
        case invalidDatatype
        /// A buffer that cannot serve: a buffered send without room in the
        /// attached buffer, or a null address with a nonzero count (MPI_ERR_BUFFER).
        case invalidBuffer
        /// A communicator without the topology the call needs, or a
        /// topology that cannot be (MPI_ERR_TOPOLOGY, MPI_ERR_DIMS).
        case invalidTopology
        /// A window that is not one of this runtime's, or is freed (MPI_ERR_WIN).
        case invalidWindow
        /// A one-sided access outside the target's window (MPI_ERR_RMA_RANGE).
        case outsideWindow
        /// A one-sided call outside the epoch it needs, or a lock or epoch
        /// call that does not pair (MPI_ERR_RMA_SYNC).
        case windowSynchronization
        /// A message longer than the receive buffer (MPI_ERR_TRUNCATE).
        case truncated
        /// A message longer than what this operation carries.
        case messageTooLong
        /// Ranks of one job chose different fabric backends.
        case mismatchedBackends
        /// The runtime is finalized, or not in a state for this call.
        case invalidState
        /// A peer's connection failed or it sent what this layer cannot read.
        case peerFailed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    init(_ error: PMIError) { self.init(.bootstrap(error.kind), error.message) }
    init(_ error: FabricError, while doing: String) { self.init(.fabric(error.kind), "\(doing): \(error.message)") }

    public var description: String { message }
}
