import FabricTestSupport
import Foundation
import MPI
import Testing

/// The registration cache through the point-to-point path, in real jobs
/// over the tcp backend: mpi-regcache-check ranks change the mapping under
/// their rendezvous buffers as programs do (../docs/registration-cache.md
/// lists the cases) and check, each round, the bytes that arrived and
/// their cache's hit, miss, invalidation and per-use counters. The tcp
/// backend reads current pages, so stale bytes cannot arrive here: the
/// counters are what make these tests able to fail on it. In the VM over
/// rxe the same cases also fail on stale bytes with invalidation off.
@Suite("The registration cache in real jobs", .serialized)
struct RegistrationCacheTests {
    func job(_ name: String, environment: [String: String] = [:]) throws -> String {
        let run = try Job.run(Job.mpirun, ["--timeout", "120", "-n", "2", Job.registrationCacheCheck, name], environment: environment)
        #expect(run.status == 0, "\(run.output)")
        return run.output
    }

    @Test(
        "a buffer whose mapping changed is registered again and its new bytes arrive; an unchanged one hits",
        arguments: [
            "reuse", "malloc-free", "small-chunk", "munmap-fixed", "fixed-over", "partial-munmap", "mremap-grow", "mremap-shrink",
            "mremap-onto", "dontneed", "madv-free", "heap-trim", "fork",
        ])
    func mappingChanges(name: String) throws {
        let output = try job(name)
        #expect(output.contains("rank 0: \(name) ok") && output.contains("rank 1: \(name) ok"), "\(output)")
    }

    @Test("file-backed memory, alone or beside anonymous memory, is registered per use and still correct")
    func fileBacked() throws {
        let output = try job("file-backed")
        #expect(output.contains("rank 1: file-backed ok after 3 rounds: hits 0, misses 0, invalidations 0, evictions 0, uncached 3"), "\(output)")
    }

    @Test("threads that malloc and free all the while: every transfer correct, no new pages served from the cache")
    func storm() throws {
        let output = try job("storm")
        #expect(output.contains("rank 0: storm ok after 60 rounds") && output.contains("rank 1: storm ok after 60 rounds"), "\(output)")
    }

    @Test("under a 3 MiB cap entries are evicted, least recently used first, and a larger buffer is refused naming the cap")
    func cap() throws {
        let output = try job("cap", environment: ["FABRIC_REGISTRATION_CAP": "3M"])
        #expect(output.contains("would exceed the registration cap of 3145728 bytes (FABRIC_REGISTRATION_CAP=3M)"), "\(output)")
        #expect(output.contains("rank 1: cap ok after 10 rounds: hits 0, misses 10, invalidations 0, evictions 7"), "\(output)")
    }

    @Test("memory from allocateMemory is transferred without a cache lookup; freeMemory refuses other memory by name")
    func pool() throws {
        let output = try job("pool")
        #expect(output.contains("rank 0: pool ok after 3 rounds") && output.contains("rank 1: pool ok after 3 rounds"), "\(output)")
    }

    @Test("without a memory monitor nothing is cached: every transfer registers its buffer, and nothing stays registered")
    func noMonitor() throws {
        let output = try job("no-monitor", environment: ["FABRIC_MEMORY_MONITOR": "off"])
        #expect(output.contains("rank 0: no-monitor ok after 2 rounds: hits 0, misses 0, invalidations 0, evictions 0, uncached 2"), "\(output)")
    }

    @Test("the cap's defaults without CAP_IPC_LOCK under an 8 MiB memlock limit: 8 MiB over verbs, half of memory over tcp; the monitor runs unprivileged")
    func unprivilegedDefaults() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit") else {
            print("skipped: needs root, setpriv and prlimit to drop privileges")
            return
        }
        let mpiinfo = Job.directory.appendingPathComponent("mpiinfo").path
        let run = try Job.run("/usr/bin/setpriv", [
            "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
            "/usr/bin/prlimit", "--memlock=8388608", mpiinfo,
        ])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("memory monitor: running (userfaultfd)"), "\(run.output)")
        #expect(run.output.contains("cap over verbs: 8388608 bytes, from RLIMIT_MEMLOCK (ulimit -l) of 8388608 bytes"), "\(run.output)")
        let pages = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
        #expect(run.output.contains("cap over tcp: \(pages / 2) bytes, from half of physical memory"), "\(run.output)")
    }
}
