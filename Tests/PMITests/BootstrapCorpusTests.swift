import FabricTestSupport
import Foundation
import Testing

/// The bootstrap fuzz targets' committed corpora (Tests/FuzzCorpus/pmi1,
/// pmi2, proxy; docs/fuzzing.md), replayed through the entry points
/// libFuzzer drives: each input must be read without a crash.
@Suite("bootstrap fuzz corpora", .serialized)
struct BootstrapCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzCorpus")

    @Test("every committed input of each bootstrap target is read without a crash", arguments: ["pmi1", "pmi2", "proxy"])
    func replay(target: String) throws {
        let directory = Self.corpus.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }
        #expect(names.count >= 2)
        for name in names {
            let input = try Data(contentsOf: directory.appendingPathComponent(name))
            input.withUnsafeBytes { bytes in
                switch target {
                case "pmi1": BootstrapFuzzing.feedPMI1(bytes)
                case "pmi2": BootstrapFuzzing.feedPMI2(bytes)
                default: BootstrapFuzzing.feedProxy(bytes)
                }
            }
        }
    }

    @Test("the seeds are what the corpora start from")
    func seeds() {
        #expect(BootstrapFuzzing.seedsPMI1().count >= 3 && BootstrapFuzzing.seedsPMI2().count >= 3 && BootstrapFuzzing.seedsProxy().count >= 2)
    }
}
