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
}
