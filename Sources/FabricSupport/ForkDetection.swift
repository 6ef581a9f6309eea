import FabricCore
import Glibc
import Synchronization

/// Tells whether this process is a fork() child of the process that made an
/// object. Both backends' objects belong to the process that created them: a
/// child shares the parent's sockets or queue pairs and must not use them.
public struct ForkDetection: Sendable {
    /// Counts forks this process went through (0 in the original process).
    /// Visible to the inlined check below, which every poll makes.
    @usableFromInline static let generation = Atomic<Int>(0)
    private static let installHandler: Void = {
        pthread_atfork(nil, nil, { ForkDetection.generation.wrappingAdd(1, ordering: .relaxed) })
    }()

    /// The generation the object was made in.
    public let creationGeneration: Int

    /// Records the current process as the owner.
    public init() {
        _ = Self.installHandler
        creationGeneration = Self.generation.load(ordering: .relaxed)
    }

    /// True in a child process created after `init`. Inlined into the
    /// backends (one load and a compare), not called: a busy-polling loop
    /// asks on every turn.
    @inlinable
    public var isForkedChild: Bool {
        Self.generation.load(ordering: .relaxed) != creationGeneration
    }

    /// Throws the error every object gives when used in a forked child.
    @inlinable
    public func checkNotForked() throws(FabricError) {
        if isForkedChild {
            throw FabricError(.invalidState, "this object belongs to the parent of a fork(); a child process must open its own device")
        }
    }
}
