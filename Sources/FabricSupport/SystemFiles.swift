import Glibc

/// Small text files of the kernel (/proc, /sys), read line by line with
/// stdio: no Foundation, and the same decoding everywhere.
package enum SystemFiles {
    /// The file's lines without their newlines, or nil when it cannot be
    /// opened (errno says why). Lines longer than `lineLimit` bytes come in
    /// pieces; the files read here have short lines.
    package static func lines(_ path: String, lineLimit: Int = 512) -> [String]? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: lineLimit)
        var lines: [String] = []
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            lines.append(String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return lines
    }
}
