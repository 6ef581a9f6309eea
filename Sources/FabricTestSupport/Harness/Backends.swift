import Fabric
import Glibc

/// The backends a suite runs on here: tcp always; verbs when the
/// environment names the address of an RDMA device to test on
/// (FABRIC_TEST_VERBS_ADDRESS; scripts/test-verbs.sh sets it inside its VM).
/// FABRIC_TEST_BACKENDS ("tcp", "verbs" or "tcp,verbs") narrows the list.
/// Parameterised tests take `available` as their arguments.
public enum ConformanceBackend: String, CaseIterable, Sendable {
    case tcp
    case verbs

    /// The backends present here, narrowed by FABRIC_TEST_BACKENDS.
    public static var available: [ConformanceBackend] {
        let present: [ConformanceBackend] = VerbsOpener.address == nil ? [.tcp] : [.tcp, .verbs]
        return present.filter { requested.contains($0.rawValue) }
    }

    /// The names FABRIC_TEST_BACKENDS asks for (every backend's when unset).
    public static var requested: Set<String> {
        guard let wanted = environmentValue("FABRIC_TEST_BACKENDS") else { return Set(allCases.map(\.rawValue)) }
        return Set(wanted.split(separator: ",").map { String($0).trimmingCharacters(in: " ") }.filter { !$0.isEmpty })
    }

    /// Why the environment's request cannot be met: a name that is no
    /// backend, or a backend asked for that is not present here (nil: it
    /// can). A suite checks this, so that a narrowed run never passes by
    /// running nothing.
    public static var unmetRequest: String? {
        guard environmentValue("FABRIC_TEST_BACKENDS") != nil else { return nil }
        let unknown = requested.subtracting(allCases.map(\.rawValue))
        if !unknown.isEmpty {
            return "FABRIC_TEST_BACKENDS names \(unknown.sorted().joined(separator: ", ")), not a backend; use tcp, verbs or tcp,verbs"
        }
        if requested.contains(ConformanceBackend.verbs.rawValue) && VerbsOpener.address == nil {
            return "FABRIC_TEST_BACKENDS asks for verbs, but FABRIC_TEST_VERBS_ADDRESS names no RDMA device's address to test on"
        }
        if available.isEmpty { return "FABRIC_TEST_BACKENDS leaves no backend to run on" }
        return nil
    }

    /// The backend's opener; test bodies are generic over it.
    public var opener: any BackendOpener {
        switch self {
        case .tcp: return TCPOpener()
        case .verbs: return VerbsOpener()
        }
    }
}

/// Opens devices of one backend and says what a suite may expect of it.
public protocol BackendOpener: Sendable {
    associatedtype Device: FabricDevice
    /// A fresh device. Each side of a pair gets its own, like two hosts.
    func open(secret: [UInt8]) throws -> Device
    /// The IPv4 address both sides use.
    var host: String { get }
    /// An IPv6 address to test on, if the backend's network has one.
    var hostIPv6: String? { get }
    /// The local interface whose address `host` is.
    var interface: String { get }
    /// Whether failed completions name their cause in `detail` (the
    /// software NIC does; a card reports only the status).
    var reportsDetail: Bool { get }
}

extension BackendOpener {
    /// A fresh device with the suites' job secret.
    public func open() throws -> Device { try open(secret: testSecret) }

    /// Whether a failed completion names `detail`, where the backend names
    /// causes at all.
    public func hasDetail(_ completion: Completion, _ detail: CompletionDetail) -> Bool {
        !reportsDetail || completion.detail == detail
    }

    /// The statuses the backend gives a request whose local memory it may
    /// not use: local protection error; rxe says local queue pair
    /// operation error instead (docs/verbs-backend.md).
    public var localProtectionStatuses: Set<CompletionStatus> {
        reportsDetail ? [.localProtectionError] : [.localProtectionError, .localQueuePairOperationError]
    }
}

/// The software NIC on loopback.
public struct TCPOpener: BackendOpener {
    public init() {}
    public func open(secret: [UInt8]) throws -> TCPDevice { try TCPDevice(secret: secret) }
    public var host: String { "127.0.0.1" }
    public var hostIPv6: String? { "::1" }
    public var interface: String { "lo" }
    public var reportsDetail: Bool { true }
}

/// The RDMA device the environment names.
public struct VerbsOpener: BackendOpener {
    public init() {}
    /// The address of the RDMA device's network interface, from the
    /// environment.
    public static var address: String? { environmentValue("FABRIC_TEST_VERBS_ADDRESS") }
    public func open(secret: [UInt8]) throws -> VerbsDevice {
        try VerbsDevice(name: environmentValue("FABRIC_TEST_VERBS_DEVICE"), secret: secret)
    }
    public var host: String { Self.address ?? "127.0.0.1" }
    public var hostIPv6: String? { nil }
    public var interface: String { environmentValue("FABRIC_TEST_VERBS_INTERFACE") ?? "lo" }
    public var reportsDetail: Bool { false }
}

/// The job secret every device the suites open shares (and the peer
/// processes they start get in FABRIC_JOB_SECRET).
public let testSecret = Array("conformance-suite-secret-0123456789".utf8)

/// scripts/sanitize.sh says which sanitizer the tests run under; the few
/// tests a sanitizer cannot host are disabled there, and say why.
public let underThreadSanitizer = environmentValue("FABRIC_TEST_SANITIZER") == "thread"

/// A variable of this process's environment; nil when unset or empty.
public func environmentValue(_ name: String) -> String? {
    guard let value = getenv(name).map({ String(cString: $0) }), !value.isEmpty else { return nil }
    return value
}

extension String {
    fileprivate func trimmingCharacters(in characters: String) -> String {
        String(drop { characters.contains($0) }.reversed().drop { characters.contains($0) }.reversed())
    }
}
