import CFabricShims
import FabricCore

/// Tells whether this process is a fork() child of the process that made an
/// object. Both backends' objects belong to the process that created them: a
/// child shares the parent's sockets or queue pairs and must not use them.
/// The fork counter is a C global (CFabricShims) that a pthread_atfork
/// handler increments in the child: read by an inline function, the check
/// every poll makes is one load and a compare, not a call.
package struct ForkDetection: Sendable {
    /// The generation the object was made in.
    package let creationGeneration: UInt64

    /// Records the current process as the owner.
    package init() {
        fabric_fork_counter_install()
        creationGeneration = fabric_fork_generation()
    }

    /// True in a child process created after `init`.
    @inlinable
    package var isForkedChild: Bool {
        fabric_fork_generation() != creationGeneration
    }

    /// Throws the error every object gives when used in a forked child.
    @inlinable
    package func checkNotForked() throws(FabricError) {
        if isForkedChild {
            throw FabricError(.invalidState, "this object belongs to the parent of a fork(); a child process must open its own device")
        }
    }
}
