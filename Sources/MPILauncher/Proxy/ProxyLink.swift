import Crypto
import FabricSupport
import Glibc

/// mpirun's end of one remote host: the remote shell running `mpirun
/// --proxy` there, and the messages both ways. The link proves the proxy
/// knows the job secret before it trusts a word of it.
final class ProxyLink {
    enum Phase: Equatable { case proving, running, done, failed }

    let host: String
    let processID: pid_t
    private let writer: ProxyChannelWriter
    let reader: ProxyChannelReader
    let errors: Int32
    private var errorText: [UInt8] = []
    private(set) var phase = Phase.proving
    private let expectedProof: String
    /// Puts of this host's ranks since the last fence.
    var pendingValues: [String: String] = [:]
    var inFence = false
    var shellEnded: RankEnd?
    /// When the channel closed before the proxy said it was done.
    var channelClosedAt: ContinuousClock.Instant?
    let provingDeadline: ContinuousClock.Instant

    init(host: String, shell: [String], proxyCommand: String, secret: String, environment: [String]) throws(LaunchError) {
        self.host = host
        let started = try RankSpawner.startRemoteShell(shell + [host, proxyCommand], environment: environment)
        processID = started.processID
        writer = ProxyChannelWriter(descriptor: started.input)
        reader = ProxyChannelReader(descriptor: started.output)
        errors = started.errors
        let nonce = JobSecret.generate()
        expectedProof = Self.proof(secret: secret, nonce: nonce)
        provingDeadline = .now + .seconds(30)
        // The secret travels on the remote shell's channel only: never on
        // a command line, never in a process list.
        send(.secret(secret))
        send(.hello(version: ProxyMessage.version, nonce: nonce))
    }

    deinit {
        close(writer.descriptor)
        close(reader.descriptor)
        close(errors)
    }

    static func proof(secret: String, nonce: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array("fabric-proxy-\(ProxyMessage.version):\(nonce)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return code.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    @discardableResult
    func send(_ message: ProxyMessage) -> Bool {
        guard phase != .done && phase != .failed else { return false }
        return writer.send(message)
    }

    /// Messages that arrived; the proof is checked here and not returned.
    func receive() throws(LaunchError) -> [ProxyMessage] {
        var messages: [ProxyMessage] = []
        for message in try reader.read() {
            if phase == .proving {
                guard case .proof(let value) = message else {
                    throw LaunchError("host \(host): the proxy's first word was not a proof of the job secret")
                }
                guard ConstantTime.equal(Array(value.utf8), Array(expectedProof.utf8)) else {
                    throw LaunchError("host \(host): the proxy could not prove it knows the job secret")
                }
                phase = .running
                continue
            }
            if message == .done { phase = .done }
            messages.append(message)
        }
        return messages
    }

    /// What the remote shell printed on its standard error (ssh's own
    /// messages: host unreachable, authentication refused).
    func readErrors() -> String {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(errors, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            errorText += chunk[..<count]
        }
        return String(decoding: errorText.suffix(2000), as: UTF8.self).trimmingCharacters(in: " \n\r")
    }

    func markFailed() { phase = .failed }
}

extension String {
    func trimmingCharacters(in characters: String) -> String {
        let set = Set(characters)
        let start = firstIndex(where: { !set.contains($0) }) ?? endIndex
        let end = lastIndex(where: { !set.contains($0) }).map { index(after: $0) } ?? start
        return start < end ? String(self[start..<end]) : ""
    }
}
