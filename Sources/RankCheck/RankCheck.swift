import Glibc

// What the test ranks (mpi-*-check) share: a failed check names what
// differed on standard error, prefixed with the program's name, and ends
// the rank with status 1, which the test's launcher reports.

/// Says `message` and ends the rank with status 1.
public func fail(_ message: String) -> Never {
    let program = CommandLine.arguments.first.map { $0.split(separator: "/").last.map(String.init) ?? $0 } ?? "rank"
    let line = Array("\(program): \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

/// Fails with `what` unless `condition` holds.
public func check(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fail(what()) }
}
