import FabricCore
import Glibc

/// This process's resident memory, for the tests and runs that bound it.
/// A reading that cannot be made is an error, never 0: a bound checked
/// against 0 would pass whatever happened.
package enum ResidentMemory {
    /// Resident bytes, from /proc/self/statm (its second field, in pages).
    package static func bytes() throws(FabricError) -> Int {
        guard let file = fopen("/proc/self/statm", "r") else {
            throw FabricError(.system(errno: errno), "cannot read /proc/self/statm: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var size = 0
        var resident = 0
        guard readFirstTwo(file, &size, &resident), resident > 0 else {
            throw FabricError(.unavailable, "/proc/self/statm does not give a resident size")
        }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Reads the first two numbers of the file.
    private static func readFirstTwo(_ file: UnsafeMutablePointer<FILE>, _ first: inout Int, _ second: inout Int) -> Bool {
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), file) != nil else { return false }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = text.split(separator: " ")
        guard fields.count > 1, let a = Int(fields[0]), let b = Int(fields[1]) else { return false }
        first = a
        second = b
        return true
    }
}
