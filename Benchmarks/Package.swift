// swift-tools-version:6.1
// The benchmarks of the fabric, apart from the package so that building the
// library never builds the benchmark harness. `swift package benchmark`
// runs them; scripts/bench-gates.sh checks their allocation counts.
import PackageDescription

let package = Package(
    name: "SwiftFabricBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "SwiftFabric", path: ".."),
        // The malloc interposer counts the heap allocations of each run.
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "TCPFabric",
            dependencies: [
                .product(name: "Fabric", package: "SwiftFabric"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/TCPFabric",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
