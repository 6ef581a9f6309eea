import FabricTestSupport
import Glibc

/// The fuzz targets: `frames` (the byte stream of a connected queue pair),
/// `handshake` (both halves of the connection handshake), `pmi1` and `pmi2`
/// (the PMI wire formats and the launcher's PMI server) and `proxy`
/// (mpirun's proxy channel). libFuzzer
/// calls the entry point below; which target it feeds is chosen by
/// FABRIC_FUZZ_TARGET, read once. docs/fuzzing.md says how to run them.
enum FuzzTarget: String, CaseIterable {
    case frames, handshake, pmi1, pmi2, proxy

    func feed(_ input: UnsafeRawBufferPointer) {
        switch self {
        case .frames: FuzzingEntryPoints.feedFrames(input)
        case .handshake: FuzzingEntryPoints.feedHandshake(input)
        case .pmi1: BootstrapFuzzing.feedPMI1(input)
        case .pmi2: BootstrapFuzzing.feedPMI2(input)
        case .proxy: BootstrapFuzzing.feedProxy(input)
        }
    }

    var seeds: [[UInt8]] {
        switch self {
        case .frames: FuzzingEntryPoints.seedFrames()
        case .handshake: FuzzingEntryPoints.seedHandshakes()
        case .pmi1: BootstrapFuzzing.seedsPMI1()
        case .pmi2: BootstrapFuzzing.seedsPMI2()
        case .proxy: BootstrapFuzzing.seedsProxy()
        }
    }

    static let chosen: FuzzTarget = {
        let name = getenv("FABRIC_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("set FABRIC_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return target
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.chosen.feed(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if FUZZING
/// libFuzzer's driver, called from our own `main` (SwiftPM gives every
/// executable a main of its own, so libFuzzer's cannot be the entry).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
struct FabricFuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv, fuzzOneInput))
    }
}
#else
/// Without libFuzzer: `fabric-fuzz replay TARGET FILE|DIR...` feeds each
/// input once (a crash is a failure); `fabric-fuzz seeds TARGET DIR` writes
/// the seed inputs.
@main
struct FabricFuzz {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard arguments.count >= 3, let target = FuzzTarget(rawValue: arguments[1]) else {
            usage()
        }
        switch arguments[0] {
        case "replay":
            var count = 0
            for path in arguments.dropFirst(2) {
                for file in files(at: path) {
                    let bytes = read(file)
                    bytes.withUnsafeBytes { target.feed($0) }
                    count += 1
                }
            }
            print("replayed \(count) \(target.rawValue) inputs")
        case "seeds":
            let directory = arguments[2]
            mkdir(directory, 0o755)
            for (index, seed) in target.seeds.enumerated() {
                write(seed, to: "\(directory)/seed-\(index)")
            }
            print("wrote \(target.seeds.count) seeds to \(directory)")
        default:
            usage()
        }
    }

    static func usage() -> Never {
        print("usage: fabric-fuzz replay TARGET FILE|DIR...\n       fabric-fuzz seeds TARGET DIR\ntargets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        exit(2)
    }

    static func files(at path: String) -> [String] {
        guard let directory = opendir(path) else { return [path] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix(".") { names.append("\(path)/\(name)") }
        }
        return names.sorted()
    }

    static func read(_ path: String) -> [UInt8] {
        guard let file = fopen(path, "rb") else { print("cannot open \(path)"); exit(1) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count == 0 { break }
            bytes += buffer[0..<count]
        }
        return bytes
    }

    static func write(_ bytes: [UInt8], to path: String) {
        guard let file = fopen(path, "wb") else { print("cannot write \(path)"); exit(1) }
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
}
#endif
