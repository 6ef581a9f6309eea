@testable import FabricVerbs
import FabricCore
import Testing

/// FABRIC_VERBS_ODP against what a device offers: on-demand paging is used
/// only when asked for and offered for every operation the backend posts.
@Suite("verbs: the on-demand paging choice")
struct OnDemandPagingChoiceTests {
    private let rxeOnNewKernels = DeviceCapabilities.OnDemandPaging(
        available: true, reliableConnectedOperations: ["send", "receive", "write", "read", "atomic"])

    private func refusal(_ offered: DeviceCapabilities.OnDemandPaging, _ value: String) -> String? {
        do {
            _ = try OnDemandPagingChoice.chosen(offered, device: "rxe0", environment: ["FABRIC_VERBS_ODP": value])
            return nil
        } catch {
            return error.message
        }
    }

    @Test("off unless asked for, even where the device offers it")
    func offByDefault() throws {
        #expect(try !OnDemandPagingChoice.chosen(rxeOnNewKernels, device: "rxe0", environment: [:]))
        #expect(try !OnDemandPagingChoice.chosen(rxeOnNewKernels, device: "rxe0", environment: ["FABRIC_VERBS_ODP": "off"]))
        #expect(try OnDemandPagingChoice.chosen(rxeOnNewKernels, device: "rxe0", environment: ["FABRIC_VERBS_ODP": "on"]))
    }

    @Test("asked for where the device lacks it, or lacks an operation, or with a bad value: an error naming what is missing")
    func refusals() {
        #expect(refusal(.none, "on")?.contains("rxe0 offers no on-demand paging at all") == true)
        let partial = DeviceCapabilities.OnDemandPaging(available: true, reliableConnectedOperations: ["send", "receive"])
        #expect(refusal(partial, "on")?.contains("for RC write, read") == true)
        #expect(refusal(rxeOnNewKernels, "yes")?.contains("FABRIC_VERBS_ODP='yes': use on or off") == true)
    }
}
