import FabricCore
@testable import FabricSupport
import Glibc
import Testing

/// The per-user key file behind the job secret (JobSecret.swift), in a
/// directory of the test's own, and the comparison of proofs.
@Suite("job secret key file")
struct JobSecretTests {
    /// A fresh directory path under /tmp (not created), removed afterwards by `cleanUp`.
    static func scratchDirectory() -> String {
        "/tmp/fabric-job-secret-test-\(getpid())-\(UInt32.random(in: .min ... .max))"
    }

    static func cleanUp(_ directory: String, files: [String]) {
        for file in files { unlink(file) }
        var path = directory + "/nested"
        rmdir(path)
        path = directory
        rmdir(path)
    }

    @Test("a missing key file is made on first use (directories 0700, file 0600, 32 random bytes in hex) and read back the same")
    func createdThenRead() throws {
        let directory = Self.scratchDirectory()
        let path = directory + "/nested/job-secret"
        defer { Self.cleanUp(directory, files: [path]) }
        let first = try JobSecret.loadOrCreateKeyFile(path)
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o600, "mode \(String(status.st_mode & 0o777, radix: 8))")
        #expect(stat(directory + "/nested", &status) == 0 && status.st_mode & 0o777 == 0o700)
        let text = try #require(Self.contents(path))
        #expect(text.count == 65 && text.hasSuffix("\n") && text.dropLast().allSatisfy(\.isHexDigit), "\(text)")
        let again = try JobSecret.loadOrCreateKeyFile(path)
        #expect(first.withUnsafeBytes { Array($0) } == again.withUnsafeBytes { Array($0) })
        #expect(first.withUnsafeBytes { Array($0) } == Array(text.dropLast().utf8))
    }

    @Test("a key file others may read is refused, saying how to fix it")
    func readableByOthers() throws {
        let directory = Self.scratchDirectory()
        let path = directory + "/nested/job-secret"
        defer { Self.cleanUp(directory, files: [path]) }
        _ = try JobSecret.loadOrCreateKeyFile(path)
        chmod(path, 0o644)
        do {
            _ = try JobSecret.loadOrCreateKeyFile(path)
            Issue.record("a key file readable by others was accepted")
        } catch {
            #expect(error.message.contains("readable by others (mode 644); run chmod 600"), "\(error.message)")
        }
    }

    @Test("a key file with fewer than 16 characters is refused, saying to delete it")
    func tooShort() throws {
        let directory = Self.scratchDirectory()
        let path = directory + "/nested/job-secret"
        defer { Self.cleanUp(directory, files: [path]) }
        try JobSecret.makeDirectories(directory + "/nested")
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        _ = "short\n".withCString { write(fd, $0, 6) }
        close(fd)
        do {
            _ = try JobSecret.loadOrCreateKeyFile(path)
            Issue.record("a key file of 6 characters was accepted")
        } catch {
            #expect(error.message.contains("fewer than 16 characters; delete it"), "\(error.message)")
        }
    }

    @Test("proofs compare equal only when every byte and the length agree")
    func constantTimeComparison() {
        #expect(ConstantTime.equal([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equal([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equal([9, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equal([1, 2], [1, 2, 3]))
        #expect(ConstantTime.equal([], []))
    }

    static func contents(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = fread(&buffer, 1, buffer.count, file)
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }
}
