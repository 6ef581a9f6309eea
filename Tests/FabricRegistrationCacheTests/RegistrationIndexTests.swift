import Testing

@testable import FabricRegistrationCache

/// The cache's sorted ranges alone: containment, overlap and removal,
/// with overlapping and nested spans.
struct RegistrationIndexTests {
    typealias Span = RegistrationIndex.Span

    @Test("a range inside a span is found; one reaching past every span is not")
    func containment() {
        var index = RegistrationIndex()
        index.insert(Span(start: 0x1000, end: 0x9000, slot: 1))
        index.insert(Span(start: 0x2000, end: 0x3000, slot: 2))
        index.insert(Span(start: 0xa000, end: 0xb000, slot: 3))
        #expect(index.find(containing: 0x2100, 0x2200, where: { _ in true }) != nil)
        #expect(index.find(containing: 0x2100, 0x2200, where: { $0 == 1 }) == 1)
        #expect(index.find(containing: 0x2100, 0x4000, where: { _ in true }) == 1)
        #expect(index.find(containing: 0x8000, 0xa800, where: { _ in true }) == nil)
        #expect(index.find(containing: 0xa000, 0xb000, where: { _ in true }) == 3)
        #expect(index.find(containing: 0xa000, 0xb001, where: { _ in true }) == nil)
        #expect(index.find(containing: 0x0, 0x100, where: { _ in true }) == nil)
    }

    @Test("every span overlapping a range is reported, nested or not, and none that only touches it")
    func overlap() {
        var index = RegistrationIndex()
        index.insert(Span(start: 0x1000, end: 0x9000, slot: 1))
        index.insert(Span(start: 0x2000, end: 0x3000, slot: 2))
        index.insert(Span(start: 0x9000, end: 0xa000, slot: 3))
        var found: [Int32] = []
        index.forEachOverlapping(0x2800, 0x2900) { found.append($0) }
        #expect(found.sorted() == [1, 2])
        found = []
        index.forEachOverlapping(0x8fff, 0x9001) { found.append($0) }
        #expect(found.sorted() == [1, 3])
        found = []
        index.forEachOverlapping(0xa000, 0xb000) { found.append($0) }
        #expect(found.isEmpty)
    }

    @Test("removal takes the named span only, also among spans with the same start")
    func removal() {
        var index = RegistrationIndex()
        index.insert(Span(start: 0x1000, end: 0x2000, slot: 1))
        index.insert(Span(start: 0x1000, end: 0x3000, slot: 2))
        index.remove(slot: 1, start: 0x1000)
        #expect(index.spans == [Span(start: 0x1000, end: 0x3000, slot: 2)])
        index.remove(slot: 7, start: 0x1000)
        #expect(index.count == 1)
    }
}
