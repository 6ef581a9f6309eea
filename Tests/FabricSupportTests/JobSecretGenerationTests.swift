import FabricSupport
import Testing

@Suite("job secrets drawn fresh")
struct JobSecretGenerationTests {
    @Test("a generated secret is 64 lowercase hexadecimal digits, and two are never the same")
    func generated() {
        let first = JobSecret.generate()
        let second = JobSecret.generate()
        #expect(first.utf8.count == 64)
        #expect(first.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(first != second)
    }
}
