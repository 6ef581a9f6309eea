// mpirun and mpiexec: starts an MPI job (docs/launchers.md).
import Glibc
import MPILauncher

func standardError(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

func readFile(_ path: String) throws(LaunchError) -> String {
    guard let file = fopen(path, "r") else { throw LaunchError("cannot read host file \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while case let count = fread(&chunk, 1, chunk.count, file), count > 0 { bytes += chunk[..<count] }
    return String(decoding: bytes, as: UTF8.self)
}

var environment: [String: String] = [:]
var entry = environ
while let pointer = entry.pointee {
    let text = String(cString: pointer)
    if let equals = text.firstIndex(of: "=") { environment[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
    entry += 1
}

do {
    switch try LaunchCommandLine.parse(Array(CommandLine.arguments.dropFirst()), environment: environment, readFile: readFile) {
    case .help:
        print(LaunchCommandLine.usage)
        exit(0)
    case .version:
        print("mpirun (SwiftFabric) 0.1")
        exit(0)
    case .run(let request):
        var name = [UInt8](repeating: 0, count: 256)
        gethostname(&name, name.count)
        let hostName = String(decoding: name.prefix(while: { $0 != 0 }), as: UTF8.self)
        let plan = try JobPlan.make(request, localHostName: hostName)
        let remote = plan.hosts.filter { !LocalHost.matches($0, hostName: hostName) }
        guard remote.isEmpty else {
            throw LaunchError("ranks on other hosts (\(remote.joined(separator: ", "))) are not supported by this build yet; run on this host")
        }
        exit(JobRunner(request: request, plan: plan, environment: environment, log: standardError).run())
    }
} catch let error as LaunchError {
    standardError("mpirun: \(error.message)")
    exit(1)
} catch {
    standardError("mpirun: \(error)")
    exit(1)
}
