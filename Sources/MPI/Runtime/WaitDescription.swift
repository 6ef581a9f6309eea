import Synchronization

/// What the application's thread is waiting for inside MPI, kept so that a
/// rank asked (SIGUSR1, or mpirun's `--timeout`) can say it: the step
/// (a message from rank 2) and the operation it belongs to (the finalize
/// barrier), either of which may be absent.
final class WaitDescription: Sendable {
    private struct State {
        var step: String?
        var operation: String?
    }

    private let state = Mutex(State())

    func set(_ step: String) { state.withLock { $0.step = step } }
    /// Sets `step` unless a more specific one is set; true if it did.
    func setUnlessSet(_ step: String) -> Bool {
        state.withLock { state in
            guard state.step == nil else { return false }
            state.step = step
            return true
        }
    }
    func clear() { state.withLock { $0.step = nil } }
    func begin(_ operation: String) { state.withLock { $0.operation = operation } }
    func end() { state.withLock { $0.operation = nil } }

    var current: String? {
        state.withLock { state in
            switch (state.step, state.operation) {
            case (let step?, let operation?): return "\(step), in \(operation)"
            case (let step?, nil): return step
            case (nil, let operation?): return operation
            case (nil, nil): return nil
            }
        }
    }
}
