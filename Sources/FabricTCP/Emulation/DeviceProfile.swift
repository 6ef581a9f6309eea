import FabricCore
import FoundationEssentials
import Glibc

/// The card the software NIC behaves like: the limits and capabilities it
/// reports and enforces. A built-in profile, or a JSON file that starts from
/// one and overrides what it names (docs/emulation.md).
///
/// The memory model and one-sided progress are the software NIC's own (it
/// reads current mappings and serves one-sided operations from a thread of
/// the target process) and cannot be set: no profile makes it pin pages.
public struct DeviceProfile: Hashable, Sendable {
    public var name: String
    public var summary: String
    public var capabilities: DeviceCapabilities

    /// The variable that chooses a profile: a built-in name or a path to a
    /// JSON file.
    public static let environmentVariable = "FABRIC_TCP_PROFILE"

    /// The software NIC as it is: large limits, global atomics.
    public static let softwareNIC = DeviceProfile(
        name: "software-nic", summary: "the software NIC's own limits",
        capabilities: DeviceCapabilities(
            maxMessageSize: 64 << 20, maxInlineData: 4096, maxScatterEntries: 64, maxQueuePairs: 4096,
            maxQueueDepth: 16384, maxCompletionQueueDepth: 1 << 20, maxMemoryRegions: 1 << 20,
            maxMemoryRegionSize: 1 << 40, maxPrivateData: 56, atomics: .global,
            memoryModel: .followsCurrentMapping, oneSidedProgress: .targetProgressThread,
            mtu: 4096, maxOutstandingReads: 16))

    /// Soft-RoCE as `ibv_devinfo -v` reports it on Debian's 6.1 kernel
    /// (rdma-core 44): 8 MiB messages, 32 scatter entries, 32767-entry
    /// completion queues, 128 outstanding reads, MTU 1024 on a 1500-byte link;
    /// inline 512 B, the largest an rxe queue pair accepts.
    public static let rxe = DeviceProfile(
        name: "rxe", summary: "soft-RoCE (rdma_rxe), as ibv_devinfo -v reports it on Linux 6.1",
        capabilities: DeviceCapabilities(
            maxMessageSize: 8 << 20, maxInlineData: 512, maxScatterEntries: 32, maxQueuePairs: 1_048_560,
            maxQueueDepth: 1_048_576, maxCompletionQueueDepth: 32767, maxMemoryRegions: 524_287,
            maxMemoryRegionSize: 1 << 40, maxPrivateData: 56, atomics: .device,
            memoryModel: .followsCurrentMapping, oneSidedProgress: .targetProgressThread,
            mtu: 1024, maxOutstandingReads: 128))

    /// A ConnectX-5-class card (mlx5) as `ibv_devinfo -v` reports it:
    /// 1 GiB messages, 30 scatter entries, 32768 work requests per queue,
    /// 16 outstanding reads per queue pair, MTU 4096.
    public static let connectX5 = DeviceProfile(
        name: "connectx-5", summary: "a ConnectX-5-class card (mlx5), as ibv_devinfo -v reports it",
        capabilities: DeviceCapabilities(
            maxMessageSize: 1 << 30, maxInlineData: 220, maxScatterEntries: 30, maxQueuePairs: 262_144,
            maxQueueDepth: 32768, maxCompletionQueueDepth: 4_194_303, maxMemoryRegions: 16_777_216,
            maxMemoryRegionSize: 1 << 40, maxPrivateData: 56, atomics: .device,
            memoryModel: .followsCurrentMapping, oneSidedProgress: .targetProgressThread,
            mtu: 4096, maxOutstandingReads: 16))

    public static let builtIn: [DeviceProfile] = [softwareNIC, rxe, connectX5]

    /// A built-in profile by name.
    public static func named(_ name: String) throws(FabricError) -> DeviceProfile {
        guard let profile = builtIn.first(where: { $0.name == name }) else {
            throw FabricError(.invalidArgument, "unknown device profile '\(name)'; built-in profiles: \(builtIn.map(\.name).joined(separator: ", ")), or a path to a JSON file")
        }
        return profile
    }

    /// A built-in name, or a path to a profile file (anything with a '/' or
    /// ending in .json).
    public static func resolve(_ specification: String) throws(FabricError) -> DeviceProfile {
        if specification.contains("/") || specification.hasSuffix(".json") {
            return try load(path: specification)
        }
        return try named(specification)
    }

    /// The profile the environment asks for, or the software NIC's own.
    public static func fromEnvironment(_ environment: [String: String] = ProcessEnvironment.variables()) throws(FabricError) -> DeviceProfile {
        try EmulationUnits.setting(environmentVariable, in: environment, otherwise: softwareNIC, parse: resolve)
    }

    /// Reads a profile file.
    public static func load(path: String) throws(FabricError) -> DeviceProfile {
        let bytes: [UInt8]
        switch Files.read(path, limit: 1 << 20) {
        case .success(let read): bytes = read
        case .failure(.system(let code)): throw FabricError(.invalidArgument, "device profile file \(path): \(code.description)")
        case .failure(.tooLarge): throw FabricError(.invalidArgument, "device profile file \(path) is larger than 1 MiB")
        }
        do {
            return try parse(bytes)
        } catch {
            throw FabricError(.invalidArgument, "device profile file \(path): \(error.message)")
        }
    }

    /// Parses a profile from JSON: an object with "name", optionally "base"
    /// (a built-in profile to start from, default software-nic), "summary",
    /// and any of the limits by their `DeviceCapabilities` names.
    public static func parse(_ json: [UInt8]) throws(FabricError) -> DeviceProfile {
        let file: ProfileFile
        do {
            file = try JSONDecoder().decode(ProfileFile.self, from: Data(json))
        } catch let error as ProfileFile.Problem {
            throw FabricError(.invalidArgument, error.message)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw FabricError(.invalidArgument, "'\(key)' has the wrong type (\(context.debugDescription))")
        } catch let DecodingError.dataCorrupted(context) {
            throw FabricError(.invalidArgument, "not valid JSON: \(context.debugDescription)")
        } catch {
            throw FabricError(.invalidArgument, "cannot read it: \(error)")
        }
        var profile = try named(file.base ?? softwareNIC.name)
        profile.name = file.name
        profile.summary = file.summary ?? "from a file, based on \(file.base ?? softwareNIC.name)"
        for (key, value) in file.numbers {
            try profile.set(key, value)
        }
        if let atomics = file.atomics { profile.capabilities.atomics = atomics }
        try profile.validate()
        return profile
    }

    /// The numeric settings a file may give, with the range each may take.
    static var numericSettings: [String: (WritableKeyPath<DeviceCapabilities, Int>, ClosedRange<Int>)] { [
        "maxMessageSize": (\.maxMessageSize, 1...(1 << 30)),
        "maxInlineData": (\.maxInlineData, 0...4096),
        "maxScatterEntries": (\.maxScatterEntries, 1...64),
        "maxQueuePairs": (\.maxQueuePairs, 1...(1 << 24)),
        "maxQueueDepth": (\.maxQueueDepth, 1...(1 << 20)),
        "maxCompletionQueueDepth": (\.maxCompletionQueueDepth, 1...(1 << 24)),
        "maxMemoryRegions": (\.maxMemoryRegions, 1...(1 << 24)),
        "maxMemoryRegionSize": (\.maxMemoryRegionSize, 1...(1 << 46)),
        "mtu": (\.mtu, 256...4096),
        "maxOutstandingReads": (\.maxOutstandingReads, 1...256),
    ] }

    private mutating func set(_ key: String, _ value: Int) throws(FabricError) {
        guard let (path, range) = Self.numericSettings[key] else {
            throw FabricError(.invalidArgument, "unknown setting '\(key)'")
        }
        guard range.contains(value) else {
            throw FabricError(.invalidArgument, "'\(key)' is \(value); the software NIC can emulate \(range.lowerBound)...\(range.upperBound)")
        }
        capabilities[keyPath: path] = value
    }

    private func validate() throws(FabricError) {
        guard [256, 512, 1024, 2048, 4096].contains(capabilities.mtu) else {
            throw FabricError(.invalidArgument, "'mtu' is \(capabilities.mtu); an InfiniBand MTU is 256, 512, 1024, 2048 or 4096")
        }
        guard !name.isEmpty, name.utf8.count <= 64 else {
            throw FabricError(.invalidArgument, "'name' must be 1 to 64 characters")
        }
    }
}

/// The JSON form of a profile file. Every key is checked: an unknown one is
/// an error naming it, never silently ignored.
struct ProfileFile: Decodable {
    var name: String
    var base: String?
    var summary: String?
    var atomics: DeviceCapabilities.AtomicSupport?
    var numbers: [(String, Int)] = []

    struct Problem: Error {
        var message: String
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static let fixedByTheSoftwareNIC: Set<String> = ["memoryModel", "oneSidedProgress", "maxPrivateData", "onDemandPaging"]

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        guard let nameKey = container.allKeys.first(where: { $0.stringValue == "name" }) else {
            throw Problem(message: "the profile has no 'name'")
        }
        name = try container.decode(String.self, forKey: nameKey)
        for key in container.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
            switch key.stringValue {
            case "name":
                continue
            case "base":
                base = try container.decode(String.self, forKey: key)
            case "summary":
                summary = try container.decode(String.self, forKey: key)
            case "atomics":
                let text = try container.decode(String.self, forKey: key)
                guard let value = DeviceCapabilities.AtomicSupport(rawValue: text) else {
                    throw Problem(message: "'atomics' is '\(text)'; use none, device or global")
                }
                atomics = value
            case let other where Self.fixedByTheSoftwareNIC.contains(other):
                throw Problem(message: "'\(other)' cannot be emulated: it is the software NIC's own (docs/emulation.md)")
            case let other where DeviceProfile.numericSettings[other] != nil:
                numbers.append((other, try container.decode(Int.self, forKey: key)))
            default:
                throw Problem(message: "unknown setting '\(key.stringValue)'; settings: name, base, summary, atomics, \(DeviceProfile.numericSettings.keys.sorted().joined(separator: ", "))")
            }
        }
    }
}
