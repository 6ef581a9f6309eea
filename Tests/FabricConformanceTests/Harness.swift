import Dispatch
import Fabric
import Foundation
import Glibc
import Testing

/// The backends the suite runs on here: tcp always; verbs when the
/// environment names the address of an RDMA device to test on
/// (FABRIC_TEST_VERBS_ADDRESS; scripts/test-verbs.sh sets it inside its VM).
/// FABRIC_TEST_BACKENDS ("tcp", "verbs" or "tcp,verbs") narrows the list.
enum ConformanceBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case tcp
    case verbs
    var testDescription: String { rawValue }

    static var available: [ConformanceBackend] {
        let present: [ConformanceBackend] = VerbsOpener.address == nil ? [.tcp] : [.tcp, .verbs]
        guard let wanted = ProcessInfo.processInfo.environment["FABRIC_TEST_BACKENDS"], !wanted.isEmpty else { return present }
        let names = Set(wanted.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        return present.filter { names.contains($0.rawValue) }
    }

    /// The backend's opener; test bodies are generic over it.
    var opener: any BackendOpener {
        switch self {
        case .tcp: return TCPOpener()
        case .verbs: return VerbsOpener()
        }
    }
}

/// Opens devices of one backend and says what the suite may expect of it.
protocol BackendOpener: Sendable {
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
    func open() throws -> Device { try open(secret: testSecret) }

    /// Whether a failed completion names `detail`, where the backend names
    /// causes at all.
    func hasDetail(_ completion: Completion, _ detail: CompletionDetail) -> Bool {
        !reportsDetail || completion.detail == detail
    }

    /// The statuses the backend gives a request whose local memory it may
    /// not use: local protection error; rxe says local queue pair
    /// operation error instead (docs/verbs-backend.md).
    var localProtectionStatuses: Set<CompletionStatus> {
        reportsDetail ? [.localProtectionError] : [.localProtectionError, .localQueuePairOperationError]
    }
}

struct TCPOpener: BackendOpener {
    func open(secret: [UInt8]) throws -> TCPDevice { try TCPDevice(secret: secret) }
    var host: String { "127.0.0.1" }
    var hostIPv6: String? { "::1" }
    var interface: String { "lo" }
    var reportsDetail: Bool { true }
}

struct VerbsOpener: BackendOpener {
    /// The address of the RDMA device's network interface, from the
    /// environment.
    static var address: String? {
        let value = ProcessInfo.processInfo.environment["FABRIC_TEST_VERBS_ADDRESS"]
        return value?.isEmpty == false ? value : nil
    }
    func open(secret: [UInt8]) throws -> VerbsDevice {
        try VerbsDevice(name: ProcessInfo.processInfo.environment["FABRIC_TEST_VERBS_DEVICE"], secret: secret)
    }
    var host: String { Self.address ?? "127.0.0.1" }
    var hostIPv6: String? { nil }
    var interface: String { ProcessInfo.processInfo.environment["FABRIC_TEST_VERBS_INTERFACE"] ?? "lo" }
    var reportsDetail: Bool { false }
}

let testSecret = Array("conformance-suite-secret-0123456789".utf8)

/// scripts/sanitize.sh says which sanitizer the tests run under; the few
/// tests a sanitizer cannot host are disabled there, and say why.
let underThreadSanitizer = ProcessInfo.processInfo.environment["FABRIC_TEST_SANITIZER"] == "thread"


/// Page-aligned memory owned by a test.
final class Buffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(_ count: Int, fill: UInt8 = 0) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 4096)
        pointer.initializeMemory(as: UInt8.self, repeating: fill, count: max(count, 1))
    }
    deinit { pointer.deallocate() }
    var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: count) }
    func fillPattern(seed: UInt8) {
        for i in 0..<count { pointer.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed)), toByteOffset: i, as: UInt8.self) }
    }
    func matchesPattern(seed: UInt8, count n: Int? = nil, offset: Int = 0) -> Bool {
        for i in 0..<(n ?? count) where pointer.load(fromByteOffset: offset + i, as: UInt8.self) != UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed)) {
            return false
        }
        return true
    }
    func word(_ offset: Int = 0) -> UInt64 { pointer.load(fromByteOffset: offset, as: UInt64.self) }
    func setWord(_ value: UInt64, _ offset: Int = 0) { pointer.storeBytes(of: value, toByteOffset: offset, as: UInt64.self) }
}

/// One side of a connection: its own device, domain, queues and memory.
final class Side<D: FabricDevice>: @unchecked Sendable {
    let device: D
    let domain: D.ProtectionDomain
    let sendCQ: D.CompletionQueue
    let receiveCQ: D.CompletionQueue
    var queuePair: D.QueuePair!
    /// Objects that must live as long as the side (memory that receives
    /// posted during set-up point into).
    var keepAlive: [AnyObject] = []

    init(_ device: D, cqCapacity: Int = 4096) throws {
        self.device = device
        domain = try device.allocateProtectionDomain()
        sendCQ = try device.createCompletionQueue(capacity: cqCapacity)
        receiveCQ = try device.createCompletionQueue(capacity: cqCapacity)
    }

    func setup(limits: QueuePairLimits = QueuePairLimits(), retry: RetryPolicy = RetryPolicy(), shared: D.SharedReceiveQueue? = nil) -> QueuePairSetup<D> {
        QueuePairSetup(protectionDomain: domain, sendCompletionQueue: sendCQ, receiveCompletionQueue: receiveCQ, sharedReceiveQueue: shared, limits: limits, retry: retry)
    }

    func register(_ buffer: Buffer, _ access: MemoryAccess = .all) throws -> D.MemoryRegion {
        try device.registerMemory(buffer.pointer, length: buffer.count, access: access, in: domain)
    }

    /// Polls `queue` until a completion arrives (fails the test after 20 s).
    func next(_ queue: D.CompletionQueue, timeout: Duration = .seconds(20)) throws -> Completion {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let completion = queue.poll() { return completion }
        }
        throw TestFailure("no completion within \(timeout)")
    }

    func nextSend() throws -> Completion { try next(sendCQ) }
    func nextReceive() throws -> Completion { try next(receiveCQ) }

    /// Checks that nothing completes for a little while.
    func nothingCompletes(_ queue: D.CompletionQueue, for duration: Duration = .milliseconds(50)) -> Completion? {
        let clock = ContinuousClock()
        let deadline = clock.now + duration
        while clock.now < deadline {
            if let completion = queue.poll() { return completion }
        }
        return nil
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Two sides connected over loopback. `prepareServer` runs on the server's
/// queue pair before the connection completes (post receives there).
struct Connection<D: FabricDevice> {
    let client: Side<D>
    let server: Side<D>
}

func connect<D: FabricDevice>(
    client clientDevice: D, server serverDevice: D,
    host: String,
    clientSetup: ((Side<D>) -> QueuePairSetup<D>)? = nil,
    serverSetup: ((Side<D>) -> QueuePairSetup<D>)? = nil,
    prepareServer: @escaping @Sendable (D.QueuePair) throws -> Void = { _ in },
    prepareClient: (D.QueuePair) throws -> Void = { _ in }
) throws -> Connection<D> {
    let client = try Side(clientDevice)
    let server = try Side(serverDevice)
    let listener = try serverDevice.listen(on: Endpoint(host: host, port: 0), backlog: 16)
    defer { listener.close() }
    let setupForServer = serverSetup?(server) ?? server.setup()
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var serverError: Error?
    nonisolated(unsafe) let serverSide = server
    nonisolated(unsafe) let setupCopy = setupForServer
    DispatchQueue.global().async {
        do {
            guard let request = try listener.next(timeout: .seconds(20)) else { throw TestFailure("no connection request") }
            serverSide.queuePair = try request.accept(setupCopy, privateData: []) { (qp) throws(FabricError) in
                do { try prepareServer(qp) } catch let error as FabricError { throw error } catch { throw FabricError(.invalidState, "\(error)") }
            }
        } catch {
            serverError = error
        }
        done.signal()
    }
    let (queuePair, _) = try clientDevice.connect(
        to: listener.endpoint, clientSetup?(client) ?? client.setup(), options: ConnectOptions(timeout: .seconds(20))
    ) { (qp) throws(FabricError) in
        do { try prepareClient(qp) } catch let error as FabricError { throw error } catch { throw FabricError(.invalidState, "\(error)") }
    }
    client.queuePair = queuePair
    done.wait()
    if let serverError { throw serverError }
    return Connection(client: client, server: server)
}

/// Opens two devices of `backend` and connects them.
func connectedPair<Backend: BackendOpener>(
    _ backend: Backend, host: String? = nil,
    limits: QueuePairLimits = QueuePairLimits(), retry: RetryPolicy = RetryPolicy(),
    prepareServer: @escaping @Sendable (Backend.Device.QueuePair) throws -> Void = { _ in }
) throws -> Connection<Backend.Device> {
    try connect(
        client: backend.open(), server: backend.open(), host: host ?? backend.host,
        clientSetup: { $0.setup(limits: limits, retry: retry) },
        serverSetup: { $0.setup(limits: limits, retry: retry) },
        prepareServer: prepareServer)
}
