// UNSAFE AREA: set-up-time file work (device profiles, counter files).
// Opening, reading and writing go through swift-system's FileDescriptor,
// which retries EINTR and reports Errno values; rename, unlink, mkdir, lstat
// and directory listing, which it does not offer, through Glibc. Nothing
// here runs on the data path.
import Glibc
import SystemPackage

enum Files {
    enum ReadFailure: Error {
        case system(Errno)
        case tooLarge(limit: Int)
    }

    /// The whole file at `path`, refused past `limit` bytes.
    static func read(_ path: String, limit: Int) -> Result<[UInt8], ReadFailure> {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            return .failure(.system(error as? Errno ?? .ioError))
        }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
            } catch {
                return .failure(.system(error as? Errno ?? .ioError))
            }
            if count == 0 { return .success(bytes) }
            bytes += chunk[0..<count]
            if bytes.count > limit { return .failure(.tooLarge(limit: limit)) }
        }
    }

    enum ReplaceOutcome { case replaced, notCreated, notWritten }

    /// Writes `bytes` to `temporary` and renames it to `final`, so that a
    /// reader sees the old file or the new one, never a part. The temporary
    /// file is always one this call created (any leftover is removed first;
    /// exclusive creation, links not followed, mode 0600), never something
    /// planted in its place. Paths are C strings so that a periodic writer
    /// allocates nothing.
    static func replace(_ final: UnsafePointer<CChar>, through temporary: UnsafePointer<CChar>, with bytes: UnsafeRawBufferPointer) -> ReplaceOutcome {
        _ = unlink(temporary)
        guard let fd = try? FileDescriptor.open(
            temporary, .writeOnly, options: [.create, .exclusiveCreate, .noFollow, .closeOnExec], permissions: [.ownerReadWrite])
        else { return .notCreated }
        let written = (try? fd.writeAll(bytes)) == bytes.count
        try? fd.close()
        guard written else {
            _ = unlink(temporary)
            return .notWritten
        }
        _ = rename(temporary, final)
        return .replaced
    }

    static func remove(_ path: UnsafePointer<CChar>) {
        _ = unlink(path)
    }

    static func remove(_ path: String) {
        _ = unlink(path)
    }

    /// Makes `path` (mode 0700) if it is not there.
    static func makeDirectory(_ path: UnsafePointer<CChar>) {
        _ = mkdir(path, 0o700)
    }

    /// Whether `path` is a real directory (not a link to one), owned by this
    /// user and closed to everyone else.
    static func isPrivateDirectory(_ path: UnsafePointer<CChar>) -> Bool {
        var status = stat()
        guard lstat(path, &status) == 0 else { return false }
        return (status.st_mode & S_IFMT) == S_IFDIR && status.st_uid == getuid() && status.st_mode & 0o077 == 0
    }

    /// The names in a directory (without "." and ".."), or nil if it cannot
    /// be read.
    static func names(in directory: String) -> [String]? {
        guard let folder = opendir(directory) else { return nil }
        defer { closedir(folder) }
        var names: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
