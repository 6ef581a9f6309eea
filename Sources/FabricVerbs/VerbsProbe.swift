internal import CVerbs
import FabricCore
import Glibc

/// What libibverbs and librdmacm report on this host, without opening
/// anything for data: used to choose a backend and by fabric-info.
public struct VerbsDeviceInfo: Hashable, Sendable, Codable {
    public var name: String
    public var nodeGUID: String
    public var ports: [Port]

    public struct Port: Hashable, Sendable, Codable {
        public var number: Int
        public var state: String
        public var isActive: Bool
        public var linkLayer: String
        public var activeMTU: Int
    }

    public var hasActivePort: Bool { ports.contains { $0.isActive } }
}

public enum VerbsProbe {
    /// The RDMA devices libibverbs lists, with their ports. An empty list
    /// and a reason when there are none.
    public static func devices() -> (devices: [VerbsDeviceInfo], reason: String?) {
        var count: Int32 = 0
        errno = 0
        guard let list = ibv_get_device_list(&count) else {
            let code = errno
            let text = code == 0 ? "libibverbs listed no devices" : "libibverbs: \(String(cString: strerror(code)))"
            return ([], "\(text) (no RDMA device: the kernel has no InfiniBand/RDMA support or no device was created)")
        }
        defer { ibv_free_device_list(list) }
        var result: [VerbsDeviceInfo] = []
        for index in 0..<Int(count) {
            guard let device = list[index] else { continue }
            let name = String(cString: ibv_get_device_name(device))
            let guid = UInt64(bigEndian: ibv_get_device_guid(device))
            var info = VerbsDeviceInfo(name: name, nodeGUID: String(guid, radix: 16), ports: [])
            if let context = ibv_open_device(device) {
                var attributes = ibv_device_attr()
                if ibv_query_device(context, &attributes) == 0 {
                    for port in 1...max(1, Int(attributes.phys_port_cnt)) {
                        var portAttributes = ibv_port_attr()
                        if ___ibv_query_port(context, UInt8(port), &portAttributes) == 0 {
                            let state = portAttributes.state
                            info.ports.append(.init(
                                number: port, state: stateName(state), isActive: state == IBV_PORT_ACTIVE,
                                linkLayer: portAttributes.link_layer == UInt8(IBV_LINK_LAYER_ETHERNET) ? "Ethernet (RoCE)" : "InfiniBand",
                                activeMTU: mtuBytes(portAttributes.active_mtu)))
                        }
                    }
                }
                ibv_close_device(context)
            }
            result.append(info)
        }
        return (result, result.isEmpty ? "libibverbs listed no devices" : nil)
    }

    /// Whether librdmacm can open an event channel (the rdma_cm kernel
    /// interface exists).
    public static func connectionManagerAvailable() -> (Bool, String?) {
        guard let channel = rdma_create_event_channel() else {
            return (false, "rdma_cm is not available: \(String(cString: strerror(errno)))")
        }
        rdma_destroy_event_channel(channel)
        return (true, nil)
    }

    /// The network interface port 1 of an RDMA device sits on (RoCE and
    /// soft-RoCE; nil for InfiniBand or when sysfs does not say).
    static func networkInterface(of device: String) -> String? {
        SystemCalls.firstLine(of: "/sys/class/infiniband/\(device)/ports/1/gid_attrs/ndevs/0")
    }

    /// The command that creates a soft-RoCE device, for error messages.
    public static let howToCreateDevice = "create one with `rdma link add rxe0 type rxe netdev IFACE` on a host whose kernel has the rdma_rxe module"

    private static func stateName(_ state: ibv_port_state) -> String {
        switch state {
        case IBV_PORT_DOWN: return "down"
        case IBV_PORT_INIT: return "init"
        case IBV_PORT_ARMED: return "armed"
        case IBV_PORT_ACTIVE: return "active"
        case IBV_PORT_ACTIVE_DEFER: return "active-defer"
        default: return "unknown"
        }
    }

    static func mtuBytes(_ mtu: ibv_mtu) -> Int {
        switch mtu {
        case IBV_MTU_256: return 256
        case IBV_MTU_512: return 512
        case IBV_MTU_1024: return 1024
        case IBV_MTU_2048: return 2048
        case IBV_MTU_4096: return 4096
        default: return 0
        }
    }
}
