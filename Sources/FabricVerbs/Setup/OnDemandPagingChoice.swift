internal import CVerbs
import FabricCore
import FabricSupport

/// Whether this device registers memory with on-demand paging
/// (`IBV_ACCESS_ON_DEMAND`): off unless `FABRIC_VERBS_ODP=on` asks for it
/// and the device offers it for every operation of a reliable connection
/// the library uses. With it the device faults pages in as it touches them
/// and follows the process's mappings (the memory model becomes
/// `followsCurrentMapping`): nothing is pinned, and memory unmapped and
/// mapped again is read fresh, never stale (docs/registration-cache.md).
enum OnDemandPagingChoice {
    static let environmentVariable = "FABRIC_VERBS_ODP"

    /// The operations the backend posts on reliable connections.
    static let needed = ["send", "receive", "write", "read"]

    /// Whether to use it on `device`; asking for it where the device lacks
    /// it is an error naming what is missing.
    static func chosen(
        _ offered: DeviceCapabilities.OnDemandPaging, device: String,
        environment: [String: String] = ProcessEnvironment.variables()
    ) throws(FabricError) -> Bool {
        switch environment[environmentVariable] {
        case nil, "", "off":
            return false
        case "on":
            let missing = needed.filter { !offered.reliableConnectedOperations.contains($0) }
            guard offered.available, missing.isEmpty else {
                let what = offered.available ? "on-demand paging for RC \(missing.joined(separator: ", "))" : "on-demand paging at all"
                throw FabricError(.unavailable, "\(environmentVariable)=on, but \(device) offers no \(what) (rxe has it from Linux 6.15; fabric-info shows what a device offers)")
            }
            return true
        case let other?:
            throw FabricError(.invalidArgument, "\(environmentVariable)='\(other)': use on or off")
        }
    }

    /// The access flag registrations add when it is chosen.
    static let registrationFlag = IBV_ACCESS_ON_DEMAND.rawValue
}
