/// A process started alone: rank 0 of a job of one, with a key-value
/// space of its own.
public final class SingletonClient: BootstrapClient {
    public let rank = 0
    public let size = 1
    public let protocolName = "singleton (no launcher)"
    private var values: [String: String] = [:]

    public init() {}

    public func put(key: String, value: String) throws(PMIError) { values[key] = value }
    public func fence() throws(PMIError) {}

    public func get(key: String) throws(PMIError) -> String {
        guard let value = values[key] else {
            throw PMIError(.keyNotFound, "no rank put the key '\(key)' (a singleton job of one rank)")
        }
        return value
    }

    public func abort(exitCode: Int32, message: String) {}
    public func finalize() throws(PMIError) {}
}
