import FabricCore
import FabricTCP
import FabricTestSupport
import Foundation
import Testing

/// The fuzz targets' committed corpora (Tests/FuzzCorpus, docs/fuzzing.md)
/// replayed through the same entry points libFuzzer drives: every input a
/// fuzzing run kept, and every crash it found once fixed, stays a test.
@Suite("fuzz corpora", .serialized)
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzCorpus")

    private func inputs(_ target: String) throws -> [Data] {
        let directory = Self.corpus.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        return try names.map { try Data(contentsOf: directory.appendingPathComponent($0)) }
    }

    @Test("the seed frames reach placement: the sentinels stand for a valid key and address")
    func seedsArePlaced() throws {
        let before = FuzzingEntryPoints.frameCounters?.totals
        for seed in FuzzingEntryPoints.seedFrames().prefix(4) {
            seed.withUnsafeBytes { FuzzingEntryPoints.feedFrames($0) }
        }
        let after = try #require(FuzzingEntryPoints.frameCounters?.totals)
        #expect(after.framesReceived - (before?.framesReceived ?? 0) >= 4)
        #expect(after.remoteAccessErrors == (before?.remoteAccessErrors ?? 0), "a seed failed the access check: \(after)")
    }

    @Test("every committed frames input is read without a crash")
    func framesCorpus() throws {
        let inputs = try inputs("frames")
        #expect(inputs.count >= 5)
        for input in inputs { input.withUnsafeBytes { FuzzingEntryPoints.feedFrames($0) } }
    }

    @Test("every committed handshake input is refused without a crash")
    func handshakeCorpus() throws {
        let inputs = try inputs("handshake")
        #expect(inputs.count >= 4)
        for input in inputs { input.withUnsafeBytes { FuzzingEntryPoints.feedHandshake($0) } }
    }
}
