import FabricCore
import Glibc

/// Moves a handshake's messages over a non-blocking socket: what a side's
/// handshake value leaves in its outbox goes out as the socket takes it,
/// and incoming bytes gather until the value's next message is whole
/// (never more: frames may follow the last message at once).
struct HandshakeIO {
    private var gathered: [UInt8] = []

    /// Writes what the socket takes of `outbox` and removes it; true when
    /// the outbox is empty.
    static func flush(_ fd: Int32, _ outbox: inout [UInt8]) throws(FabricError) -> Bool {
        while !outbox.isEmpty {
            let result = outbox.withUnsafeMutableBytes { SystemCalls.write(fd, $0.baseAddress, $0.count) }
            switch result {
            case .transferred(let count):
                guard count > 0 else { return false }
                outbox.removeFirst(count)
            case .wouldBlock, .endOfStream: return false
            case .failed(let code): throw SystemCalls.error("writing the handshake", code)
            }
        }
        return true
    }

    /// Reads toward a message of `wanted` bytes; the message once whole,
    /// nil while more must arrive. The peer closing first is an error.
    mutating func read(_ fd: Int32, wanted: Int) throws(FabricError) -> [UInt8]? {
        guard wanted > 0 else { return [] }
        while gathered.count < wanted {
            let missing = wanted - gathered.count
            var chunk = [UInt8](repeating: 0, count: missing)
            let result = chunk.withUnsafeMutableBytes { SystemCalls.read(fd, $0.baseAddress!, missing) }
            switch result {
            case .transferred(let count): gathered += chunk.prefix(count)
            case .wouldBlock: return nil
            case .endOfStream: throw FabricError(.connectionFailed, "the peer closed the connection during the handshake")
            case .failed(let code): throw SystemCalls.error("reading the handshake", code)
            }
        }
        defer { gathered.removeAll(keepingCapacity: true) }
        return gathered
    }
}
