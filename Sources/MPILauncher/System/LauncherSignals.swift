import CLauncherShims
import Glibc

/// The signals the launcher handles, read from a descriptor (signalfd)
/// in its event loop rather than in handlers: the end of a rank
/// (SIGCHLD), the user's interrupt and termination (forwarded to every
/// rank), SIGUSR1 (every rank says what it waits for).
enum LauncherSignals {
    static let handled: [Int32] = [SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGPIPE]

    static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in handled { sigaddset(&set, number) }
        return set
    }

    /// Blocks the handled signals and returns a descriptor that reads
    /// them. SIGPIPE is blocked and never read: a rank's closed pipe shows
    /// as a failed write instead.
    static func openDescriptor() throws(LaunchError) -> Int32 {
        var blocked = set
        guard pthread_sigmask(SIG_BLOCK, &blocked, nil) == 0 else {
            throw LaunchError("cannot block signals: \(String(cString: strerror(errno)))")
        }
        var read = blocked
        sigdelset(&read, SIGPIPE)
        let descriptor = launcher_signal_descriptor(&read)
        guard descriptor >= 0 else { throw LaunchError("cannot read signals through a descriptor: \(String(cString: strerror(errno)))") }
        return descriptor
    }

    /// The signals that arrived.
    static func drain(_ descriptor: Int32) -> [Int32] {
        var numbers: [Int32] = []
        while case let number = launcher_read_signal(descriptor), number != 0 { numbers.append(number) }
        return numbers
    }

    static func name(_ number: Int32) -> String {
        switch number {
        case SIGHUP: return "SIGHUP"
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGILL: return "SIGILL"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGFPE: return "SIGFPE"
        case SIGKILL: return "SIGKILL"
        case SIGUSR1: return "SIGUSR1"
        case SIGSEGV: return "SIGSEGV"
        case SIGUSR2: return "SIGUSR2"
        case SIGPIPE: return "SIGPIPE"
        case SIGALRM: return "SIGALRM"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(number)"
        }
    }
}
