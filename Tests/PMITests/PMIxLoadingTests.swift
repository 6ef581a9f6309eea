import CPMIxLoader
import Testing

@testable import PMI

/// What a rank says when the launcher asks for PMIx and the library is
/// missing: the package to install and the PMI-2 way to start instead.
@Suite("PMIx library loading")
struct PMIxLoadingTests {
    @Test("a missing libpmix is named, with the package and srun --mpi=pmi2")
    func missingLibrary() {
        let library = "libpmix-absent-\(UInt32.random(in: 0...UInt32.max)).so.2"
        #expect {
            try PMIxClient.load(library)
        } throws: { error in
            guard let error = error as? PMIError else { return false }
            return error.kind == .badEnvironment && error.message.contains(library)
                && error.message.contains("libpmix2") && error.message.contains("srun --mpi=pmi2")
        }
    }

    @Test("the same for a library that opens but is not libpmix")
    func wrongLibrary() {
        // libc opens, but has no PMIx_Init: the loader must refuse it rather
        // than call through a null pointer.
        #expect {
            try PMIxClient.load("libc.so.6")
        } throws: { error in
            guard let error = error as? PMIError else { return false }
            return error.kind == .badEnvironment && error.message.contains("PMIx_Init") && error.message.contains("libpmix2")
        }
    }

    @Test("calls before a successful load fail with PMIx's 'not initialised', not a crash")
    func callsBeforeLoad() {
        // No test in this process loads the real library.
        #expect(fabric_pmix_commit() == -31)
        #expect(fabric_pmix_put_string("key", "value") == -31)
        var size: UInt32 = 0
        #expect(fabric_pmix_job_size("job", &size) == -31)
        #expect(fabric_pmix_finalize() == -31)
        #expect(String(cString: fabric_pmix_error_string(-31)) == "libpmix is not loaded")
    }
}
