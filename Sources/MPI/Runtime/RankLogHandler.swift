import Glibc
import Logging

/// The runtime's log lines when the program configured none: to standard
/// error, each tagged with the rank (`[rank 3] warning: ...`), from the
/// level `FABRIC_LOG_LEVEL` names (trace, debug, info, notice, warning,
/// error, critical; warning by default). A program that passes its own
/// Logger to `MPIRuntime.initialize` gets its own handler instead; the
/// runtime never bootstraps the logging system for the process.
struct RankLogHandler: LogHandler {
    static let levelVariable = "FABRIC_LOG_LEVEL"

    let rank: Int
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func logger(rank: Int, environment: [String: String]) -> Logger {
        let level = environment[levelVariable].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .warning
        return Logger(label: "mpi") { _ in RankLogHandler(rank: rank, logLevel: level) }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let details = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let line = Array("[rank \(rank)] \(event.level): \(event.message)\(details)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
