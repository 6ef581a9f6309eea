/// How a registration cache is set up, as a value to show: whether it
/// caches (and if not, why every transfer registers its buffer), its cap
/// and where the cap came from.
public struct RegistrationCacheState: Sendable, Equatable, CustomStringConvertible {
    public var caching: Bool
    public var uncachedReason: String?
    public var invalidation: Bool
    public var capacityBytes: Int
    public var capacitySource: String
    public var maxEntries: Int

    public init(_ cache: RegistrationCache) {
        caching = cache.watching
        uncachedReason = cache.uncachedReason
        invalidation = cache.configuration.invalidation
        capacityBytes = cache.configuration.capacityBytes
        capacitySource = cache.configuration.capacitySource
        maxEntries = cache.configuration.maxEntries
    }

    public var description: String {
        let mode = caching ? "caching, invalidated by the memory monitor" + (invalidation ? "" : " (INVALIDATION SWITCHED OFF)") : "registers per transfer: \(uncachedReason ?? "")"
        return "\(mode); cap \(capacityBytes) bytes from \(capacitySource); at most \(maxEntries) entries"
    }
}
