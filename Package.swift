// swift-tools-version:6.2
// The package: a verbs-shaped fabric API with a libibverbs backend and a
// software NIC over TCP, and the tools that inspect and measure them.
import PackageDescription

let package = Package(
    name: "SwiftFabric",
    products: [
        .library(name: "Fabric", targets: ["Fabric"]),
        .executable(name: "fabric-info", targets: ["fabric-info"]),
        .executable(name: "fabric-perf", targets: ["fabric-perf"]),
        .executable(name: "fabric-fuzz", targets: ["fabric-fuzz"]),
        .executable(name: "mpirun", targets: ["mpirun"]),
        .executable(name: "mpiexec", targets: ["mpiexec"]),
        .executable(name: "mpiinfo", targets: ["mpiinfo"]),
        .executable(name: "mpibench", targets: ["mpibench"]),
        .library(name: "MPI", targets: ["MPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        // The only module that includes the verbs headers.
        .systemLibrary(
            name: "CVerbs",
            pkgConfig: "libibverbs",
            providers: [.apt(["libibverbs-dev", "librdmacm-dev"])]
        ),
        // Small C helpers Swift cannot express: atomics on raw registered
        // memory, the futex lock and direct system calls of the software NIC,
        // the fork counter both backends read on every poll.
        .target(name: "CFabricShims"),
        .target(
            name: "FabricCore",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        // What both backends share: the job secret, fork detection, the
        // descriptor limit.
        .target(
            name: "FabricSupport",
            dependencies: [
                "FabricCore", "CFabricShims", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FabricTCP",
            dependencies: [
                "FabricCore", "FabricSupport", "CFabricShims",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "FabricVerbs",
            dependencies: [
                "FabricCore", "FabricSupport", "CVerbs",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Registrations of user buffers kept for reuse and dropped when the
        // memory monitor (FabricSupport) sees their pages go.
        .target(name: "FabricRegistrationCache", dependencies: ["FabricCore", "FabricSupport", "CFabricShims"]),
        .target(
            name: "Fabric",
            dependencies: ["FabricCore", "FabricSupport", "FabricTCP", "FabricVerbs", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "fabric-info",
            dependencies: ["Fabric", "FabricSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Counts heap allocations in fabric-perf's timed loops.
        .target(name: "CAllocationCounter"),
        .executableTarget(
            name: "fabric-perf",
            dependencies: [
                "Fabric", "FabricSupport", "FabricRegistrationCache", "CAllocationCounter", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"), .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // libFuzzer targets for what reads a peer's bytes (docs/fuzzing.md).
        // Built normally, it replays inputs; built with -sanitize=fuzzer and
        // -DFUZZING (scripts/fuzz.sh), libFuzzer drives it.
        .executableTarget(name: "fabric-fuzz", dependencies: ["FabricTestSupport"]),
        // What the tests and the fuzz targets share (not a product): the
        // fuzzing entry points, and the harness that runs a suite on every
        // backend (device openers, connected pairs, peer processes).
        .target(name: "FabricTestSupport", dependencies: ["Fabric", "FabricCore", "FabricTCP", "PMI", "MPILauncher"]),
        // PMIx's client calls through libpmix.so.2 opened at run time (no
        // link-time dependency on libpmix).
        .target(name: "CPMIxLoader"),
        // Bootstrap: the process-management interfaces launchers serve
        // (PMI-1, PMI-2, PMIx), our own PMI server, and the choice among
        // them. No fabric import.
        .target(name: "PMI", dependencies: ["CPMIxLoader"]),
        // The MPI layer: the runtime (bootstrap, connections made on first
        // use, the job's end); point-to-point and the rest build on it.
        .target(
            name: "MPI",
            dependencies: ["Fabric", "FabricRegistrationCache", "PMI", "CFabricShims", .product(name: "Logging", package: "swift-log")]
        ),
        // What this MPI would do here: launchers, bootstrap, backend, settings.
        .executableTarget(
            name: "mpiinfo",
            dependencies: ["MPI", "PMI", "Fabric", "FabricRegistrationCache", "FabricSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // mpirun's parts: the command line, host lists, placement, the job
        // it runs (ranks, PMI service, output, signals, proxies on other
        // hosts); the launcher's few system calls Swift cannot make.
        .target(name: "CLauncherShims"),
        .target(
            name: "MPILauncher",
            dependencies: ["PMI", "CLauncherShims", "FabricCore", "FabricSupport", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(name: "mpirun", dependencies: ["MPILauncher"]),
        .executableTarget(name: "mpiexec", dependencies: ["MPILauncher"]),
        // Ranks for the tests: one exchanges a value with every other rank
        // through whatever launcher started it; the other runs the MPI
        // runtime (runtime messages in a ring, to all, while busy; abort;
        // waiting).
        .executableTarget(name: "pmi-test-rank", dependencies: ["PMI"]),
        .executableTarget(name: "mpi-runtime-check", dependencies: ["MPI", "RankCheck"]),
        // A first MPI program (README).
        .executableTarget(name: "mpi-example", dependencies: ["MPI"]),
        // OSU-style benchmarks of the MPI layer (run under mpirun).
        .executableTarget(
            name: "mpibench",
            dependencies: ["MPI", "CAllocationCounter", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // What the test ranks share: a failed check names what differed and ends the rank.
        .target(name: "RankCheck"),
        // A rank for the point-to-point tests: one scenario per mode.
        .executableTarget(name: "mpi-p2p-check", dependencies: ["MPI", "FabricSupport", "RankCheck"]),
        // A rank for the datatype tests: messages through datatypes, every byte checked.
        .executableTarget(name: "mpi-datatype-check", dependencies: ["MPI", "RankCheck"]),
        // A rank for the tests of send modes, matched probes, persistent requests, cancel.
        .executableTarget(name: "mpi-requests-check", dependencies: ["MPI", "RankCheck"]),
        // A rank for the communicator tests: dup, split, create, free.
        .executableTarget(name: "mpi-communicator-check", dependencies: ["MPI", "RankCheck"]),
        // A rank for the collective tests: every collective checked against a serial computation.
        // Optimised even in debug builds: its serial reference computations
        // over megabytes of elements would otherwise take most of the test's time.
        .executableTarget(name: "mpi-collective-check", dependencies: ["MPI", "RankCheck"], swiftSettings: [.unsafeFlags(["-O"])]),
        // A rank for the window tests: creation, every one-sided operation and
        // epoch kind, a passive target that computes, bad input.
        .executableTarget(name: "mpi-window-check", dependencies: ["MPI", "RankCheck"]),
        // Ranks for the registration cache's tests: change a buffer's
        // mapping between transfers, check the bytes and the counters.
        .executableTarget(name: "mpi-regcache-check", dependencies: ["MPI", "FabricRegistrationCache", "FabricSupport", "CFabricShims", "RankCheck"]),
        // The far end of the connection in the tests that kill or stop it.
        .executableTarget(name: "fabric-test-peer", dependencies: ["Fabric"]),
        // The README's API example, both sides; FabricTests runs it.
        .executableTarget(name: "fabric-example", dependencies: ["Fabric"]),
        .testTarget(name: "FabricCoreTests", dependencies: ["FabricCore"]),
        .testTarget(name: "PMITests", dependencies: ["PMI", "pmi-test-rank", "mpi-runtime-check", "FabricTestSupport"]),
        .testTarget(name: "MPITests", dependencies: ["MPI", "FabricTestSupport", "mpi-runtime-check", "mpi-p2p-check", "mpi-datatype-check", "mpi-requests-check", "mpi-communicator-check", "mpi-collective-check", "mpi-window-check", "mpi-regcache-check", "mpirun", "pmi-test-rank", "mpiinfo"]),
        .testTarget(name: "MPILauncherTests", dependencies: ["MPILauncher", "FabricTestSupport", "mpirun", "mpiexec", "pmi-test-rank"]),
        .testTarget(name: "FabricSupportTests", dependencies: ["FabricSupport"]),
        .testTarget(
            name: "FabricRegistrationCacheTests",
            dependencies: ["FabricRegistrationCache", "FabricSupport", "FabricTCP", "Fabric", "FabricTestSupport", "CFabricShims"]
        ),
        // fabric-example: built with the tests, which run it.
        .testTarget(name: "FabricTests", dependencies: ["Fabric", "FabricTestSupport", "fabric-example"]),
        .testTarget(
            name: "FabricTCPTests",
            dependencies: [
                "FabricTCP", "FabricCore", "FabricSupport", "FabricTestSupport", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "MetricsTestKit", package: "swift-metrics"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "FabricVerbsTests",
            dependencies: ["FabricVerbs", "FabricCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // fabric-test-peer: built with the tests, which start it.
        .testTarget(
            name: "FabricConformanceTests",
            dependencies: [
                "Fabric", "FabricSupport", "FabricTestSupport", "fabric-test-peer", .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
    ]
)
