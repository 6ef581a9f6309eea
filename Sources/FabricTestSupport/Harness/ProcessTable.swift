import Glibc

/// The machine's live processes, read from /proc, for the tests that
/// check that a job left nothing running (network namespaces share the
/// process table, so this sees every test host's processes too).
public enum ProcessTable {
    /// Processes (not zombies, not this one) whose name is `name` (the
    /// kernel keeps its first 15 bytes) or whose command line contains
    /// `text`, after giving processes that were just killed up to `seconds`
    /// to go.
    public static func live(named name: String? = nil, commandLineContaining text: String? = nil, within seconds: Int = 1) -> [Int32] {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        deadline.tv_sec += seconds
        while true {
            let found = scan(name: name, text: text)
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            if found.isEmpty || now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec) {
                return found
            }
            usleep(20_000)
        }
    }

    private static func scan(name: String?, text: String?) -> [Int32] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var found: [Int32] = []
        while let entry = readdir(directory) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let processID = Int32(entryName), processID != getpid() else { continue }
            guard let status = read("/proc/\(processID)/status"), !status.contains("State:\tZ") else { continue }
            if let name, status.contains("Name:\t\(name.prefix(15))\n") {
                found.append(processID)
            } else if let text, let commandLine = read("/proc/\(processID)/cmdline"), commandLine.contains(text) {
                found.append(processID)
            }
        }
        return found
    }

    private static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let count = fread(&chunk, 1, chunk.count, file), count > 0 { bytes += chunk[..<count] }
        // Command lines separate their words with NUL bytes.
        return String(decoding: bytes.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
    }
}
