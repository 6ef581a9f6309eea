internal import CVerbs
import FabricCore
import Glibc

/// Finding the device librdmacm uses and asking it, once, what it can do.
enum DeviceOpening {
    struct Opened {
        var context: UnsafeMutablePointer<ibv_context>
        var name: String
        /// librdmacm's list, which holds a reference on every device in it:
        /// kept while the device object lives, so that the context stays
        /// open even if the device is removed meanwhile.
        var list: UnsafeMutablePointer<UnsafeMutablePointer<ibv_context>?>
    }

    /// The context librdmacm opened for device `name` (nil: the first with
    /// an active port). The error says why none could be had and what to do.
    static func open(named wanted: String?) throws(FabricError) -> Opened {
        var count: Int32 = 0
        guard let list = rdma_get_devices(&count), count > 0 else {
            throw FabricError(.unavailable, "no RDMA device can be opened: \(whyNoDevice()); \(VerbsProbe.howToCreateDevice)")
        }
        var seen: [String] = []
        for index in 0..<Int(count) {
            guard let context = list[index] else { continue }
            let name = String(cString: ibv_get_device_name(context.pointee.device))
            seen.append(name)
            if let wanted {
                if name == wanted { return Opened(context: context, name: name, list: list) }
            } else if hasActivePort(context) {
                return Opened(context: context, name: name, list: list)
            }
        }
        rdma_free_devices(list)
        if let wanted {
            throw FabricError(.unavailable, "no RDMA device named '\(wanted)'; devices: \(seen.joined(separator: ", "))")
        }
        throw FabricError(.unavailable, "no RDMA device has an active port (devices: \(seen.joined(separator: ", "))); check the link of the network interface under it (`rdma link show`)")
    }

    static func hasActivePort(_ context: UnsafeMutablePointer<ibv_context>) -> Bool {
        var port = ibv_port_attr()
        return ___ibv_query_port(context, 1, &port) == 0 && port.state == IBV_PORT_ACTIVE
    }

    /// Why librdmacm found nothing: missing device files or permissions.
    private static func whyNoDevice() -> String {
        if access("/dev/infiniband", F_OK) != 0 {
            return "/dev/infiniband does not exist (the kernel has no RDMA support, or no device was created)"
        }
        for file in ["/dev/infiniband/rdma_cm", "/dev/infiniband/uverbs0"] where access(file, R_OK | W_OK) != 0 {
            if errno == EACCES {
                return "no permission to open \(file): add the user to the group that owns it (often `rdma`), or give a container the device with --device \(file)"
            }
            return "\(file) cannot be opened: \(VerbsError.text(errno))"
        }
        return "librdmacm listed no devices"
    }

    /// The device's limits, and the depth of outstanding READs and atomics
    /// a queue pair will ask for.
    static func capabilities(
        of context: UnsafeMutablePointer<ibv_context>, name: String
    ) throws(FabricError) -> (DeviceCapabilities, UInt8) {
        var attributes = ibv_device_attr()
        guard ibv_query_device(context, &attributes) == 0 else {
            throw VerbsError.system("querying the device \(name)")
        }
        var port = ibv_port_attr()
        guard ___ibv_query_port(context, 1, &port) == 0 else {
            throw VerbsError.system("querying port 1 of \(name)")
        }
        let atomics: DeviceCapabilities.AtomicSupport
        switch attributes.atomic_cap {
        case IBV_ATOMIC_HCA: atomics = .device
        case IBV_ATOMIC_GLOB: atomics = .global
        default: atomics = .none
        }
        let depth = min(16, Int(attributes.max_qp_rd_atom), Int(attributes.max_qp_init_rd_atom))
        let capabilities = DeviceCapabilities(
            maxMessageSize: Int(port.max_msg_sz),
            maxInlineData: largestInline(context),
            maxScatterEntries: Int(attributes.max_sge),
            maxQueuePairs: Int(attributes.max_qp),
            maxQueueDepth: Int(attributes.max_qp_wr),
            maxCompletionQueueDepth: Int(attributes.max_cqe),
            maxMemoryRegions: Int(attributes.max_mr),
            maxMemoryRegionSize: Int(clamping: attributes.max_mr_size),
            maxPrivateData: ConnectionProof.maxRequestUserData,
            atomics: atomics,
            // Registration pins pages; on-demand paging is probed, not used.
            memoryModel: .pinned,
            oneSidedProgress: .hardware,
            mtu: VerbsProbe.mtuBytes(port.active_mtu),
            maxOutstandingReads: max(1, depth),
            onDemandPaging: onDemandPaging(context))
        return (capabilities, UInt8(max(1, depth)))
    }

    /// What the device says of on-demand paging. A device or provider
    /// without the extended query has none.
    private static func onDemandPaging(_ context: UnsafeMutablePointer<ibv_context>) -> DeviceCapabilities.OnDemandPaging {
        var attributes = ibv_device_attr_ex()
        guard ibv_query_device_ex(context, nil, &attributes) == 0 else { return .none }
        let general = attributes.odp_caps.general_caps
        guard general & UInt64(IBV_ODP_SUPPORT.rawValue) != 0 else { return .none }
        let rc = attributes.odp_caps.per_transport_caps.rc_odp_caps
        let named: [(ibv_odp_transport_cap_bits, String)] = [
            (IBV_ODP_SUPPORT_SEND, "send"), (IBV_ODP_SUPPORT_RECV, "receive"), (IBV_ODP_SUPPORT_WRITE, "write"),
            (IBV_ODP_SUPPORT_READ, "read"), (IBV_ODP_SUPPORT_ATOMIC, "atomic"),
        ]
        return DeviceCapabilities.OnDemandPaging(
            available: true,
            implicit: general & UInt64(IBV_ODP_SUPPORT_IMPLICIT.rawValue) != 0,
            reliableConnectedOperations: named.filter { rc & $0.0.rawValue != 0 }.map(\.1))
    }

    /// The device reports no inline limit; the largest a queue pair accepts
    /// at creation is it. Tried once per device open.
    private static func largestInline(_ context: UnsafeMutablePointer<ibv_context>) -> Int {
        guard let pd = ibv_alloc_pd(context) else { return 0 }
        defer { ibv_dealloc_pd(pd) }
        guard let cq = ibv_create_cq(context, 1, nil, nil, 0) else { return 0 }
        defer { ibv_destroy_cq(cq) }
        for candidate: UInt32 in [1024, 512, 256, 128, 64, 32] {
            var attributes = ibv_qp_init_attr()
            attributes.send_cq = cq
            attributes.recv_cq = cq
            attributes.qp_type = IBV_QPT_RC
            attributes.cap.max_send_wr = 1
            attributes.cap.max_recv_wr = 1
            attributes.cap.max_send_sge = 1
            attributes.cap.max_recv_sge = 1
            attributes.cap.max_inline_data = candidate
            if let qp = ibv_create_qp(pd, &attributes) {
                ibv_destroy_qp(qp)
                return Int(attributes.cap.max_inline_data)
            }
        }
        return 0
    }
}
