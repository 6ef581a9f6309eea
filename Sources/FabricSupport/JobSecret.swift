import Crypto
import FabricCore
import Glibc

/// The secret both ends of a connection must know. A launcher sets a fresh
/// one per job in the environment, which always wins; tools started by hand
/// without it share a per-user key file, created on first use with mode 0600.
public enum JobSecret {
    public static let environmentVariable = "FABRIC_JOB_SECRET"

    /// Where the secret came from, for fabric-info.
    public enum Source: Equatable, Sendable, CustomStringConvertible {
        case environment
        case keyFile(String)
        /// Given by the program when it opened the device.
        case explicit
        public var description: String {
            switch self {
            case .environment: return "environment variable \(JobSecret.environmentVariable)"
            case .keyFile(let path): return "key file \(path)"
            case .explicit: return "given by the program"
            }
        }
    }

    /// A fresh secret: 32 random bytes from the system's generator, as 64
    /// lowercase hexadecimal digits (text, so that it fits an environment
    /// variable and a key file alike).
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format2: UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    public static var defaultKeyFilePath: String {
        let environment = ProcessEnvironment.variables()
        if let config = environment["XDG_CONFIG_HOME"], !config.isEmpty {
            return config + "/swift-fabric/job-secret"
        }
        let home = environment["HOME"] ?? "/tmp"
        return home + "/.config/swift-fabric/job-secret"
    }

    /// Loads the secret: the environment variable if set, else the key file
    /// (created if missing).
    public static func load(keyFilePath: String = defaultKeyFilePath) throws(FabricError) -> (key: SymmetricKey, source: Source) {
        if let value = ProcessEnvironment.variables()[environmentVariable] {
            guard value.utf8.count >= 16 else {
                throw FabricError(.invalidArgument, "\(environmentVariable) is set but shorter than 16 characters; use a long random value")
            }
            return (SymmetricKey(data: Array(value.utf8)), .environment)
        }
        return (try loadOrCreateKeyFile(keyFilePath), .keyFile(keyFilePath))
    }

    static func loadOrCreateKeyFile(_ path: String) throws(FabricError) -> SymmetricKey {
        if let directoryEnd = path.lastIndex(of: "/") {
            try makeDirectories(String(path[..<directoryEnd]))
        }
        // Create with O_EXCL so two processes starting together agree on
        // one file: the loser of the race reads the winner's.
        let created = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if created >= 0 {
            let bytes = Array((generate() + "\n").utf8)
            let written = bytes.withUnsafeBytes { write(created, $0.baseAddress, $0.count) }
            close(created)
            if written != bytes.count {
                unlink(path)
                throw FabricError(.system(errno: errno), "writing the key file \(path) failed")
            }
        } else if errno != EEXIST {
            throw systemError("creating the key file \(path)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw systemError("opening the key file \(path)") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw systemError("stat of the key file \(path)") }
        guard status.st_mode & 0o077 == 0 else {
            throw FabricError(.invalidArgument, "the key file \(path) is readable by others (mode \(String(status.st_mode & 0o777, radix: 8))); run chmod 600 on it")
        }
        guard status.st_uid == getuid() else {
            throw FabricError(.invalidArgument, "the key file \(path) belongs to another user")
        }
        var buffer = [UInt8](repeating: 0, count: 1024)
        var total = 0
        // Another process may still be writing a file it just created.
        for _ in 0..<100 {
            total = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            if total >= 64 { break }
            usleep(10_000)
        }
        let text = String(decoding: buffer.prefix(max(0, total)), as: UTF8.self).trimmingWhitespace()
        guard text.utf8.count >= 16 else {
            throw FabricError(.invalidArgument, "the key file \(path) holds fewer than 16 characters; delete it to make a new one")
        }
        return SymmetricKey(data: Array(text.utf8))
    }

    static func makeDirectories(_ path: String) throws(FabricError) {
        var prefix = ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw systemError("creating the directory \(prefix)")
            }
        }
    }
}

private func systemError(_ what: String, _ code: Int32 = errno) -> FabricError {
    FabricError(.system(errno: code), "\(what): \(String(cString: strerror(code)))")
}

extension String {
    fileprivate init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
    }

    fileprivate func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
