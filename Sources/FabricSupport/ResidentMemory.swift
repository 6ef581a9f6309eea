import FabricCore
import Glibc

/// This process's resident memory, for the tests and runs that bound it.
/// A reading that cannot be made is an error, never 0: a bound checked
/// against 0 would pass whatever happened.
package enum ResidentMemory {
    /// Resident bytes, from /proc/self/statm (its second field, in pages).
    package static func bytes() throws(FabricError) -> Int {
        guard let lines = SystemFiles.lines("/proc/self/statm") else {
            throw FabricError(.system(errno: errno), "cannot read /proc/self/statm: \(String(cString: strerror(errno)))")
        }
        let fields = lines.first?.split(separator: " ") ?? []
        guard fields.count > 1, let resident = Int(fields[1]), resident > 0 else {
            throw FabricError(.unavailable, "/proc/self/statm does not give a resident size")
        }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
