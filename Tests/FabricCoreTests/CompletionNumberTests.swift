import FabricCore
import Testing

@Suite("completion status and detail numbers")
struct CompletionNumberTests {
    @Test("statuses and details keep the numbers the tcp wire protocol carries")
    func wireNumbers() {
        // docs/wire-protocol.md, NAK syndromes: these numbers travel in
        // NAKs and READ trailers; reordering the enums would break every peer.
        #expect(CompletionStatus.remoteAccessError.rawValue == 4)
        #expect(CompletionStatus.remoteInvalidRequest.rawValue == 5)
        #expect(CompletionStatus.remoteOperationError.rawValue == 6)
        #expect(CompletionStatus.receiverNotReadyRetryExceeded.rawValue == 7)
        #expect(CompletionDetail.receiveBufferTooSmall.rawValue == 8)
        #expect(CompletionDetail.messageTooLong.rawValue == 9)
        #expect(CompletionDetail.disconnected.rawValue == 24)
        #expect(CompletionDetail.injectedFault.rawValue == 25)
    }
}
