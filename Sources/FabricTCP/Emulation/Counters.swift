import CoreMetrics
import FabricCore
import FoundationEssentials
import Glibc
import Synchronization

/// A device's counters, like a card's port counters: totals over every queue
/// pair it ever had, and the live queue pairs one by one.
public struct DeviceCounters: Codable, Hashable, Sendable {
    public struct QueuePairEntry: Codable, Hashable, Sendable {
        public var number: UInt32
        public var counters: QueuePairStatistics
    }

    public var processID: Int32
    public var device: String
    public var profile: String
    /// When the snapshot was taken (milliseconds since 1970).
    public var takenAt: Int64
    public var totals: QueuePairStatistics
    public var queuePairs: [QueuePairEntry]
}

extension QueuePairStatistics {
    public static let zero = QueuePairStatistics(
        framesSent: 0, framesReceived: 0, packetsSent: 0, packetsReceived: 0, bytesSent: 0, bytesReceived: 0, receiverNotReadyNaksSent: 0,
        receiverNotReadyNaksReceived: 0, outOfSequenceDropped: 0, remoteAccessErrors: 0, retries: 0, faultsInjected: 0,
        sendCalls: 0, sendmsgCalls: 0, receiveCalls: 0)

    /// Every counter by name, in a fixed order (for tables and metrics).
    public var named: [(name: String, value: Int)] {
        [
            ("frames_sent", framesSent), ("frames_received", framesReceived),
            ("packets_sent", packetsSent), ("packets_received", packetsReceived),
            ("bytes_sent", bytesSent), ("bytes_received", bytesReceived),
            ("rnr_naks_sent", receiverNotReadyNaksSent), ("rnr_naks_received", receiverNotReadyNaksReceived),
            ("out_of_sequence", outOfSequenceDropped), ("remote_access_errors", remoteAccessErrors),
            ("retries", retries), ("faults_injected", faultsInjected),
            ("send_calls", sendCalls), ("sendmsg_calls", sendmsgCalls), ("receive_calls", receiveCalls),
        ]
    }

    mutating func add(_ other: QueuePairStatistics) {
        framesSent += other.framesSent
        framesReceived += other.framesReceived
        packetsSent += other.packetsSent
        packetsReceived += other.packetsReceived
        bytesSent += other.bytesSent
        bytesReceived += other.bytesReceived
        receiverNotReadyNaksSent += other.receiverNotReadyNaksSent
        receiverNotReadyNaksReceived += other.receiverNotReadyNaksReceived
        outOfSequenceDropped += other.outOfSequenceDropped
        remoteAccessErrors += other.remoteAccessErrors
        retries += other.retries
        faultsInjected += other.faultsInjected
        sendCalls += other.sendCalls
        sendmsgCalls += other.sendmsgCalls
        receiveCalls += other.receiveCalls
    }
}

/// Where running processes publish their devices' counters, one file per
/// device, rewritten by the device's progress thread at most once a second
/// when they changed, removed when the device closes; `fabric-info
/// --counters` reads them. Like a driver's counters in sysfs, but per user:
/// `$XDG_RUNTIME_DIR/swift-fabric/counters`, else
/// `/tmp/swift-fabric-<uid>/counters`, mode 0700.
public enum CounterFiles {
    public static var directory: String {
        let environment = ProcessEnvironment.variables()
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return runtime + "/swift-fabric/counters"
        }
        return "/tmp/swift-fabric-\(SystemCalls.userID)/counters"
    }

    private static let serial = Atomic<Int>(0)

    /// A fresh file name for a device of this process.
    static func makePath() -> String {
        "\(directory)/\(SystemCalls.processID)-\(serial.wrappingAdd(1, ordering: .relaxed).oldValue).json"
    }

    /// Every published snapshot of a running process of this user. Files
    /// of processes that are gone are skipped (and removed).
    public static func readAll() -> [DeviceCounters] {
        var result: [DeviceCounters] = []
        for name in Files.names(in: directory) ?? [] {
            guard name.hasSuffix(".json"), let dash = name.firstIndex(of: "-"), let pid = Int32(name[..<dash]) else { continue }
            let path = directory + "/" + name
            if SystemCalls.processIsGone(pid) {
                Files.remove(path)
                continue
            }
            guard let bytes = try? Files.read(path, limit: 64 << 20).get(), let counters = try? JSONDecoder().decode(DeviceCounters.self, from: Data(bytes)) else { continue }
            result.append(counters)
        }
        return result.sorted { ($0.processID, $0.device) < ($1.processID, $1.device) }
    }
}

/// Reports a device's counters to swift-metrics: each call adds what the
/// counters grew by since the last call to one `Counter` per counter name,
/// with the device as a dimension (`fabric_tcp_bytes_sent{device="tcp0"}`).
public final class CounterExporter: @unchecked Sendable {  // state behind `last`
    private let device: TCPDevice
    private let metrics: [String: CoreMetrics.Counter]
    private let last = Mutex<[String: Int]>([:])

    /// `factory`: the metrics backend (default: the one bootstrapped).
    public init(device: TCPDevice, factory: (any MetricsFactory)? = nil) {
        self.device = device
        let chosen = factory ?? MetricsSystem.factory
        var metrics: [String: CoreMetrics.Counter] = [:]
        for (name, _) in QueuePairStatistics.zero.named {
            metrics[name] = CoreMetrics.Counter(label: "fabric_tcp_\(name)", dimensions: [("device", device.name)], factory: chosen)
        }
        self.metrics = metrics
    }

    /// Adds the growth since the last export.
    public func export() {
        let totals = device.counters.totals
        last.withLock { previous in
            for (name, value) in totals.named {
                let grown = value - (previous[name] ?? 0)
                // Never lower the baseline: growth is reported once.
                if grown > 0 {
                    metrics[name]?.increment(by: grown)
                    previous[name] = value
                }
            }
        }
    }
}

/// Writes a device's counters to its file without allocating: the progress
/// thread publishes while benchmarks count every allocation in the process.
/// The JSON is formatted by hand into a buffer kept from one publication to
/// the next (it grows only when the device gains queue pairs).
final class CounterPublisher {
    private let path: [CChar]
    private let temporaryPath: [CChar]
    private let directories: [[CChar]]
    private let fixedFields: [UInt8]
    private var buffer: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    private var lastFingerprint: UInt64 = .max
    private var directoriesMade = false

    init(path: String, device: String, profile: String) {
        self.path = Array(path.utf8CString)
        temporaryPath = Array((path + ".tmp").utf8CString)
        var prefix = ""
        var directories: [[CChar]] = []
        let folder = path[..<(path.lastIndex(of: "/") ?? path.endIndex)]
        for component in folder.split(separator: "/") {
            prefix += "/" + component
            directories.append(Array(prefix.utf8CString))
        }
        self.directories = directories
        fixedFields = Array("\"processID\":\(SystemCalls.processID),\"device\":\(Self.quoted(device)),\"profile\":\(Self.quoted(profile)),".utf8)
        capacity = 4096
        buffer = .allocate(capacity: capacity)
    }

    deinit { buffer.deallocate() }

    /// Publishes if anything changed since the last time. `forEach` calls
    /// its argument for every live queue pair (number, counters).
    func publish(retired: QueuePairStatistics, forEach: ((UInt32, QueuePairStatistics) -> Void) -> Void) {
        var totals = retired
        var fingerprint: UInt64 = 0
        var queuePairs = 0
        forEach { number, counters in
            totals.add(counters)
            fingerprint = fingerprint &* 31 &+ UInt64(number)
            queuePairs += 1
        }
        fingerprint = fingerprint &* 31 &+ Self.sum(totals) &+ UInt64(queuePairs)
        guard fingerprint != lastFingerprint else { return }
        lastFingerprint = fingerprint
        let needed = 512 + fixedFields.count + queuePairs * 480
        if needed > capacity {
            buffer.deallocate()
            capacity = needed * 2
            buffer = .allocate(capacity: capacity)
        }
        count = 0
        append("{")
        fixedFields.withUnsafeBufferPointer { append($0) }
        append("\"takenAt\":")
        append(Int(SystemCalls.wallClockMilliseconds()))
        append(",\"totals\":")
        append(totals)
        append(",\"queuePairs\":[")
        var first = true
        forEach { number, counters in
            if !first { append(",") }
            first = false
            append("{\"number\":")
            append(Int(number))
            append(",\"counters\":")
            append(counters)
            append("}")
        }
        append("]}")
        write()
    }

    func remove() {
        path.withUnsafeBufferPointer { Files.remove($0.baseAddress!) }
    }

    private func write() {
        if !directoriesMade {
            guard makeDirectoriesSafely() else { return }
            directoriesMade = true
        }
        let outcome = temporaryPath.withUnsafeBufferPointer { temporary in
            path.withUnsafeBufferPointer { final in
                Files.replace(final.baseAddress!, through: temporary.baseAddress!, with: UnsafeRawBufferPointer(start: buffer, count: count))
            }
        }
        // Perhaps removed meanwhile: check them again next time.
        if outcome == .notCreated { directoriesMade = false }
    }

    /// Creates the directories (mode 0700) and checks the two that are the
    /// library's (`swift-fabric[-uid]` and `counters`): real directories, not
    /// links, owned by this user, closed to others. In /tmp another user
    /// could have made them first; then nothing is published. The system's
    /// parents (/tmp, /run/user/N) are not checked.
    private func makeDirectoriesSafely() -> Bool {
        for (depth, directory) in directories.enumerated() {
            let ok: Bool = directory.withUnsafeBufferPointer { name in
                Files.makeDirectory(name.baseAddress!)
                return depth < directories.count - 2 || Files.isPrivateDirectory(name.baseAddress!)
            }
            if !ok { return false }
        }
        return true
    }

    private static func sum(_ counters: QueuePairStatistics) -> UInt64 {
        var total: UInt64 = 0
        total &+= UInt64(counters.framesSent) &+ UInt64(counters.framesReceived)
        total &+= UInt64(counters.packetsSent) &+ UInt64(counters.packetsReceived)
        total &+= UInt64(counters.bytesSent) &+ UInt64(counters.bytesReceived)
        total &+= UInt64(counters.receiverNotReadyNaksSent) &+ UInt64(counters.receiverNotReadyNaksReceived)
        total &+= UInt64(counters.outOfSequenceDropped) &+ UInt64(counters.remoteAccessErrors)
        total &+= UInt64(counters.retries) &+ UInt64(counters.faultsInjected)
        total &+= UInt64(counters.sendCalls) &+ UInt64(counters.sendmsgCalls) &+ UInt64(counters.receiveCalls)
        return total
    }

    private func append(_ counters: QueuePairStatistics) {
        append("{\"framesSent\":"); append(counters.framesSent)
        append(",\"framesReceived\":"); append(counters.framesReceived)
        append(",\"packetsSent\":"); append(counters.packetsSent)
        append(",\"packetsReceived\":"); append(counters.packetsReceived)
        append(",\"bytesSent\":"); append(counters.bytesSent)
        append(",\"bytesReceived\":"); append(counters.bytesReceived)
        append(",\"receiverNotReadyNaksSent\":"); append(counters.receiverNotReadyNaksSent)
        append(",\"receiverNotReadyNaksReceived\":"); append(counters.receiverNotReadyNaksReceived)
        append(",\"outOfSequenceDropped\":"); append(counters.outOfSequenceDropped)
        append(",\"remoteAccessErrors\":"); append(counters.remoteAccessErrors)
        append(",\"retries\":"); append(counters.retries)
        append(",\"faultsInjected\":"); append(counters.faultsInjected)
        append(",\"sendCalls\":"); append(counters.sendCalls)
        append(",\"sendmsgCalls\":"); append(counters.sendmsgCalls)
        append(",\"receiveCalls\":"); append(counters.receiveCalls)
        append("}")
    }

    private func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        let room = min(bytes.count, capacity - count)
        (buffer + count).update(from: bytes.baseAddress!, count: room)
        count += room
    }

    /// A decimal integer, formatted without a String.
    private func append(_ value: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch on the stack
        withUnsafeMutableBytes(of: &digits) { scratch in
            var magnitude = value.magnitude
            var position = scratch.count
            repeat {
                position -= 1
                scratch[position] = UInt8(48 + magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 {
                position -= 1
                scratch[position] = UInt8(ascii: "-")
            }
            append(UnsafeBufferPointer(rebasing: scratch.bindMemory(to: UInt8.self)[position...]))
        }
    }

    /// A JSON string literal for a name (done once, at set-up).
    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20: result += "?"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
