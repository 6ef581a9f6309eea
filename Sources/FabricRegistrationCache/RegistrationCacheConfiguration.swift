import FabricCore
import FabricSupport
import Glibc

/// How a registration cache behaves: its cap on registered bytes, its
/// number of entries, and the switches tests and users need. From the
/// environment by default (the info tool lists the variables):
/// - `FABRIC_REGISTRATION_CAP`: bytes the cache may keep registered
///   (accepts K, M, G suffixes), at most the default;
/// - `FABRIC_REGCACHE=off`: no caching, every transfer registers its buffer;
/// - `FABRIC_REGCACHE_ENTRIES`: the most entries kept (default 1024);
/// - `FABRIC_REGCACHE_INVALIDATION=off`: ignore the memory monitor's events.
///   Wrong on purpose: it exists so that a test can show the stale data a
///   cache without invalidation sends on a card.
public struct RegistrationCacheConfiguration: Sendable, Equatable {
    /// Bytes registered through the cache (cached and per-operation) never
    /// exceed this.
    public var capacityBytes: Int
    /// Where the cap came from, for error messages and the info tool.
    public var capacitySource: String
    public var maxEntries: Int
    public var caching: Bool
    public var invalidation: Bool

    public init(capacityBytes: Int, capacitySource: String, maxEntries: Int = 1024, caching: Bool = true, invalidation: Bool = true) {
        self.capacityBytes = capacityBytes
        self.capacitySource = capacitySource
        self.maxEntries = maxEntries
        self.caching = caching
        self.invalidation = invalidation
    }

    /// The share of physical memory the cap defaults to where nothing else
    /// bounds it: registered memory on a card is pinned and cannot be
    /// swapped, so a process must not pin most of the machine.
    public static let physicalMemoryShare = (numerator: 1, denominator: 2)

    /// The default cap for a device with this memory model:
    /// - pinned (verbs): RLIMIT_MEMLOCK, which the kernel enforces anyway;
    ///   half of physical memory when it is unlimited or the process holds
    ///   CAP_IPC_LOCK (then the kernel does not bound it);
    /// - followsCurrentMapping (the software NIC pins nothing): half of
    ///   physical memory.
    public static func defaultCapacity(for model: DeviceCapabilities.MemoryModel) -> (bytes: Int, source: String) {
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        let share = physical / physicalMemoryShare.denominator * physicalMemoryShare.numerator
        let shareSource = "half of physical memory (\(physical) bytes)"
        guard model == .pinned else { return (share, shareSource + "; the device pins nothing") }
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max, !holdsIPCLock() else {
            return (share, shareSource + "; RLIMIT_MEMLOCK does not bound this process")
        }
        return (Int(clamping: limit.rlim_cur), "RLIMIT_MEMLOCK (ulimit -l) of \(limit.rlim_cur) bytes")
    }

    /// The configuration for a device with this memory model, with the
    /// environment's overrides; a malformed variable is an error naming it.
    public static func fromEnvironment(for model: DeviceCapabilities.MemoryModel) throws(FabricError) -> Self {
        let (defaultBytes, defaultSource) = defaultCapacity(for: model)
        var configuration = Self(capacityBytes: defaultBytes, capacitySource: defaultSource)
        if let text = variable("FABRIC_REGISTRATION_CAP") {
            guard let bytes = ByteCount.parse(text), bytes > 0 else {
                throw FabricError(.invalidArgument, "FABRIC_REGISTRATION_CAP=\(text) is not a byte count (such as 64M or 1073741824)")
            }
            if bytes < defaultBytes {
                configuration.capacityBytes = bytes
                configuration.capacitySource = "FABRIC_REGISTRATION_CAP=\(text)"
            }
        }
        if let text = variable("FABRIC_REGCACHE_ENTRIES") {
            guard let entries = Int(text), entries > 0 else {
                throw FabricError(.invalidArgument, "FABRIC_REGCACHE_ENTRIES=\(text) is not a positive number")
            }
            configuration.maxEntries = entries
        }
        configuration.caching = try switchValue("FABRIC_REGCACHE")
        configuration.invalidation = try switchValue("FABRIC_REGCACHE_INVALIDATION")
        return configuration
    }

    private static func variable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    private static func switchValue(_ name: String) throws(FabricError) -> Bool {
        switch variable(name) {
        case nil, "on", "1": return true
        case "off", "0": return false
        case let text?: throw FabricError(.invalidArgument, "\(name)=\(text) is neither on nor off")
        }
    }

    /// Whether the process holds CAP_IPC_LOCK (its effective set, from
    /// /proc/self/status: no libcap needed).
    private static func holdsIPCLock() -> Bool {
        guard let line = SystemFiles.lines("/proc/self/status")?.first(where: { $0.hasPrefix("CapEff:") }),
            let mask = UInt64(String(line.dropFirst("CapEff:".count).filter(\.isHexDigit)), radix: 16)
        else { return false }
        let capIPCLock: UInt64 = 14
        return mask & (1 << capIPCLock) != 0
    }
}
