import CFabricShims
import FabricCore

/// Tells whether this process is a fork() child of the process that made an
/// object. Both backends' objects belong to the process that created them: a
/// child shares the parent's sockets or queue pairs and must not use them.
/// The fork counter is a C global (CFabricShims) that a pthread_atfork
/// handler increments in the child: read by an inline function, the check
/// every poll makes is one load and a compare, not a call.
/// Public behind an SPI, not `package`: the backends must inline the check
/// into their posting and polling paths, and this toolchain does not
/// inline `package` declarations across modules (measured: an out-of-line
/// call, about 70 instructions per 8 B round trip). Users do not see it:
/// only an `@_spi(FabricInternals) import` does.
@_spi(FabricInternals) public struct ForkDetection: Sendable {
    /// The generation the object was made in.
    public let creationGeneration: UInt64

    /// Records the current process as the owner.
    public init() {
        fabric_fork_counter_install()
        creationGeneration = fabric_fork_generation()
    }

    /// True in a child process created after `init`.
    @inlinable
    public var isForkedChild: Bool {
        fabric_fork_generation() != creationGeneration
    }

    /// Throws the error every object gives when used in a forked child.
    @inlinable
    public func checkNotForked() throws(FabricError) {
        if isForkedChild {
            throw FabricError(.invalidState, "this object belongs to the parent of a fork(); a child process must open its own device")
        }
    }
}
