// UNSAFE AREA: posix_spawn with C strings, signals and waitpid.
import Glibc

/// Starting and ending the processes a test runs beside itself (the far
/// end of a connection, a command in another network namespace).
public enum PeerProcesses {
    /// The path of `name`, an executable of this package, built beside the
    /// test bundle (a test target that starts it depends on it).
    public static func executable(named name: String) -> String {
        let bundle = CommandLine.arguments[0]
        guard let slash = bundle.lastIndex(of: "/") else { return name }
        return String(bundle[...slash]) + name
    }

    /// Starts `path` with `arguments`, this process's environment less
    /// FABRIC_JOB_SECRET, plus `environment` ("NAME=value" entries).
    public static func spawn(_ path: String, _ arguments: [String], environment: [String]) throws -> pid_t {
        var inherited: [String] = []
        var entry = environ
        while let variable = entry.pointee {
            let text = String(cString: variable)
            if !text.hasPrefix("FABRIC_JOB_SECRET=") { inherited.append(text) }
            entry += 1
        }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = (inherited + environment).map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var processID: pid_t = 0
        let status = posix_spawn(&processID, path, nil, nil, argv, envp)
        guard status == 0 else { throw TestFailure("cannot start \(path): \(String(cString: strerror(status)))") }
        return processID
    }

    /// Kills `processID` (SIGKILL) and reaps it.
    public static func end(_ processID: pid_t) {
        kill(processID, SIGKILL)
        _ = waitForExit(processID)
    }

    /// Waits until `processID` ends; returns its wait status.
    @discardableResult
    public static func waitForExit(_ processID: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(processID, &status, 0) == -1 && errno == EINTR {}
        return status
    }
}
