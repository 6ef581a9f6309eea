@testable import FabricTCP
import FabricCore
import Glibc
import Testing

/// The output batch alone: frames are added as pieces of memory, the
/// "socket" is a scripted number of bytes taken, and the batch must say
/// which frames left and where the cut is, as the engine relies on.
@Suite("tcp engine: output batching")
struct OutputBatchTests {
    /// Memory the pieces point into; never read or written: only the
    /// lengths of the pieces matter here.
    nonisolated(unsafe) static let memoryBlock = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
    var memory: UnsafeMutableRawPointer { Self.memoryBlock }

    /// Adds a frame of one header and one payload piece.
    func add(_ batch: inout OutputBatch, _ item: OutputItem, payload: Int, skip: Int = 0) {
        var skip = skip
        batch.addPiece(memory, FrameHeader.size, skip: &skip)
        if payload > 0 { batch.addPiece(memory + 64, payload, skip: &skip) }
        if batch.isEmpty && batch.partial == item {
            batch.appendCut(length: FrameHeader.size + payload)
        } else {
            batch.append(item, length: FrameHeader.size + payload)
        }
    }

    func vectorLengths(_ batch: borrowing OutputBatch) -> [Int] {
        (0..<batch.vectorCount).map { batch.vectors[$0].iov_len }
    }

    @Test("a write the socket takes whole finishes every frame and leaves no cut")
    func wholeWrite() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .request(position: 0), payload: 100)
        add(&batch, .response(index: 3), payload: 0)
        add(&batch, .standaloneAck, payload: 0)
        #expect(batch.count == 3)
        let lengths1 = vectorLengths(batch)
        #expect(lengths1 == [32, 100, 32, 32])
        let bytes = batch.byteCount
        #expect(bytes == 196)
        #expect(batch.freshItems == 0..<3)
        let outcome = batch.wrote(196)
        #expect(outcome == .init(finished: 3, startedCut: false, stoppedShort: false, acknowledgementSent: true))
        #expect(batch.partial == nil)
        #expect(batch.partialOffset == 0)
    }

    @Test("a short write finishes the frames it covers and cuts the next one where it stopped")
    func shortWrite() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .request(position: 7), payload: 68)  // 100 bytes
        add(&batch, .request(position: 8), payload: 168)  // 200 bytes
        add(&batch, .request(position: 9), payload: 0)
        let outcome = batch.wrote(150)
        #expect(outcome == .init(finished: 1, startedCut: true, stoppedShort: true, acknowledgementSent: true))
        #expect(batch.partial == .request(position: 8))
        #expect(batch.partialOffset == 50)
    }

    @Test("a write that stops inside the first header has not sent the acknowledgement it carries")
    func headerCut() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .response(index: 0), payload: 1000)
        let outcome = batch.wrote(31)
        #expect(outcome == .init(finished: 0, startedCut: true, stoppedShort: true, acknowledgementSent: false))
        #expect(batch.partial == .response(index: 0))
        #expect(batch.partialOffset == 31)
    }

    @Test("a cut frame resumes where it stopped, over several writes, and counts from the cut")
    func resumeCut() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .request(position: 1), payload: 968)  // 1000 bytes
        _ = batch.wrote(10)

        // Resumed: the first 10 bytes are skipped, so the header's piece is
        // 22 bytes and the item has 990 to go.
        batch.begin()
        add(&batch, .request(position: 1), payload: 968, skip: batch.partialOffset)
        add(&batch, .request(position: 2), payload: 0)
        let lengths2 = vectorLengths(batch)
        #expect(lengths2 == [22, 968, 32])
        #expect(batch.lengths[0] == 990)
        #expect(batch.freshItems == 1..<2)
        var outcome = batch.wrote(500)
        #expect(outcome == .init(finished: 0, startedCut: false, stoppedShort: true, acknowledgementSent: false))
        #expect(batch.partial == .request(position: 1))
        #expect(batch.partialOffset == 510)

        batch.begin()
        add(&batch, .request(position: 1), payload: 968, skip: batch.partialOffset)
        add(&batch, .request(position: 2), payload: 0)
        let lengths3 = vectorLengths(batch)
        #expect(lengths3 == [490, 32])
        outcome = batch.wrote(490 + 32)
        // The resumed frame's header left long ago; the fresh one's header
        // carries the acknowledgement and went whole.
        #expect(outcome == .init(finished: 2, startedCut: false, stoppedShort: false, acknowledgementSent: true))
        #expect(batch.partial == nil)
    }

    @Test("after the resumed frame ends, a fresh frame cut by the same write becomes the cut")
    func resumedThenFreshCut() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .response(index: 5), payload: 68)  // 100 bytes
        _ = batch.wrote(40)
        batch.begin()
        add(&batch, .response(index: 5), payload: 68, skip: batch.partialOffset)
        add(&batch, .response(index: 6), payload: 68)
        let outcome = batch.wrote(60 + 20)
        #expect(outcome == .init(finished: 1, startedCut: true, stoppedShort: true, acknowledgementSent: false))
        #expect(batch.partial == .response(index: 6))
        #expect(batch.partialOffset == 20)
    }

    @Test("limiting a batch to a chunk cuts the vectors at the limit")
    func limit() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .request(position: 0), payload: 1000)
        add(&batch, .request(position: 1), payload: 1000)
        batch.limit(to: 1100)
        let lengths4 = vectorLengths(batch)
        #expect(lengths4 == [32, 1000, 32, 36])
        let bytes = batch.byteCount
        #expect(bytes == 1100)
        batch.limit(to: 32)
        let lengths5 = vectorLengths(batch)
        #expect(lengths5 == [32])
    }

    @Test("a write of nothing finishes nothing and keeps the cut as it was")
    func emptyWrite() {
        var batch = OutputBatch()
        batch.begin()
        add(&batch, .disconnect, payload: 0)
        let outcome = batch.wrote(0)
        #expect(outcome == .init(finished: 0, startedCut: true, stoppedShort: true, acknowledgementSent: false))
        #expect(batch.partial == .disconnect)
        #expect(batch.partialOffset == 0)
    }

    @Test("pins hold a region until released; a region being deregistered cannot be pinned")
    func pins() {
        let domain = ObjectIdentifier(OutputBatchTests.self as Any.Type)
        let record = RegionRecord(base: 0x1000, length: 64, access: [], localKey: 1, remoteKey: 2, domain: domain)
        let revoked = RegionRecord(base: 0x2000, length: 64, access: [], localKey: 3, remoteKey: 4, domain: domain)
        var batch = OutputBatch()
        batch.begin()
        let pinned = batch.pin(record)
        #expect(pinned)
        revoked.invalidate()
        let pinnedRevoked = batch.pin(revoked)
        #expect(!pinnedRevoked)
        batch.releasePins()
        #expect(record.isValid)
        // Released: invalidation finds no transfer inside and returns.
        record.invalidate()
        #expect(!record.isValid)
    }
}
