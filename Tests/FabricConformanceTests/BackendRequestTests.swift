import FabricTestSupport
import Testing

/// Every parameterised suite runs on `ConformanceBackend.available`; a run
/// narrowed to a backend that is not here would give those suites no
/// arguments, and they would pass having run nothing.
@Suite("the backends the suites run on")
struct BackendRequestTests {
    @Test("every backend FABRIC_TEST_BACKENDS asks for is here, and at least one is")
    func requestMet() {
        #expect(ConformanceBackend.unmetRequest == nil, "\(ConformanceBackend.unmetRequest ?? "")")
        #expect(!ConformanceBackend.available.isEmpty)
    }
}
