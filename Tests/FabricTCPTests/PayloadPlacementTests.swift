@testable import FabricTCP
import FabricCore
import Glibc
import Testing

/// The payload placement alone: destinations are plain buffers, payload
/// bytes arrive in scripted pieces, and reads in place are planned but not
/// made.
@Suite("tcp engine: payload placement")
struct PayloadPlacementTests {
    @Test("staged pieces fill the destination segments in order, across segment borders")
    func copiesAcrossSegments() {
        let first = UnsafeMutableRawPointer.allocate(byteCount: 10, alignment: 8)
        let second = UnsafeMutableRawPointer.allocate(byteCount: 20, alignment: 8)
        defer { first.deallocate(); second.deallocate() }
        var placement = PayloadPlacement(segments: 4)
        placement.targets.append(first, length: 10, record: nil)
        placement.targets.append(second, length: 20, record: nil)
        var payload = (0..<30).map { UInt8($0 + 1) }
        var failures: [CompletionDetail?] = []
        payload.withUnsafeMutableBytes { bytes in
            for (start, count) in [(0, 7), (7, 6), (13, 17)] {
                failures.append(placement.copy(from: bytes.baseAddress! + start, count: count))
            }
        }
        #expect(failures.allSatisfy { $0 == nil })
        #expect(Array(UnsafeRawBufferPointer(start: first, count: 10)) == Array(payload[0..<10]))
        #expect(Array(UnsafeRawBufferPointer(start: second, count: 20)) == Array(payload[10..<30]))
        #expect(placement.targets.index == 2)
    }

    @Test("a read in place is planned from where the payload stands, with the staging room behind it")
    func plansReadInPlace() {
        let first = UnsafeMutableRawPointer.allocate(byteCount: 100, alignment: 8)
        let second = UnsafeMutableRawPointer.allocate(byteCount: 200, alignment: 8)
        let staging = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { first.deallocate(); second.deallocate(); staging.deallocate() }
        var placement = PayloadPlacement(segments: 4)
        placement.targets.append(first, length: 100, record: nil)
        placement.targets.append(second, length: 200, record: nil)
        placement.placed(40)
        let planned = placement.planRead(remaining: 260, staging: staging, tail: 32)
        guard case .success(let plan) = planned else {
            Issue.record("the plan failed: \(planned)")
            return
        }
        #expect(plan.vectorCount == 3)
        #expect(plan.planned == 260)
        #expect(plan.pinnedCount == 0)
        let vectors = (0..<plan.vectorCount).map { placement.vectors[$0] }
        #expect(vectors.map(\.iov_len) == [60, 200, 32])
        #expect(vectors[0].iov_base == first + 40)
        #expect(vectors[1].iov_base == second)
        #expect(vectors[2].iov_base == staging)
    }

    @Test("a payload thrown away is read into the scratch buffer, a buffer's worth at a time, and never advances the targets")
    func discards() {
        let staging = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { staging.deallocate() }
        var placement = PayloadPlacement(segments: 2)
        placement.begin(.discard(nak: nil), discard: true)
        let planned = placement.planRead(remaining: 1 << 20, staging: staging, tail: 32)
        guard case .success(let plan) = planned else {
            Issue.record("the plan failed: \(planned)")
            return
        }
        #expect(plan.planned == PayloadPlacement.scratchCapacity)
        #expect(placement.vectors[0].iov_base == placement.scratch)
        placement.placed(100)
        #expect(placement.targets.index == 0)
        let action = placement.finish()
        guard case .discard = action else {
            Issue.record("finishing a discarded payload gave \(action)")
            return
        }
        let discarding = placement.discarding
        #expect(!discarding)
    }

    @Test("a destination whose region was deregistered fails the placement with unknownKey, copying nothing")
    func revokedRegion() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        let staging = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { memory.deallocate(); staging.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        let record = RegionRecord(base: UInt64(UInt(bitPattern: memory)), length: 64, access: [.localWrite], localKey: 1, remoteKey: 2, domain: ObjectIdentifier(RegionTable()))
        var placement = PayloadPlacement(segments: 2)
        placement.targets.append(memory, length: 64, record: record)
        record.invalidate()
        let planned = placement.planRead(remaining: 64, staging: staging, tail: 32)
        guard case .failure(let detail) = planned else {
            Issue.record("a revoked destination was planned")
            return
        }
        #expect(detail == .unknownKey)
        var source = [UInt8](repeating: 0xAB, count: 64)
        let failure = source.withUnsafeMutableBytes { placement.copy(from: $0.baseAddress!, count: 64) }
        #expect(failure == .unknownKey)
        #expect(memory.load(as: UInt8.self) == 0)
    }
}
