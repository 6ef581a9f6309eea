// A rank for the bootstrap tests: started by a launcher (Hydra, Slurm, our
// own), it connects to whatever the environment offers, publishes one
// value, passes a fence, reads every other rank's value and checks it.
// Prints one line; exits 0 only if every value arrived as put.
//
//   pmi-test-rank            the exchange above
//   pmi-test-rank missing    also gets a key nobody put (must fail by name)
//   pmi-test-rank abort R    rank R asks the launcher to end the job
//   pmi-test-rank fake-verbs-root
//                            plays rank 0 of an MPI job whose device is on
//                            the verbs backend (publishes what the MPI
//                            runtime's rank 0 would), then waits to be
//                            ended: the other ranks must refuse the mix
//
// Each rank also prints the network namespace it runs in and its node
// ("rank R in net:[N] on NODE", the node from Slurm's SLURMD_NODENAME or
// the host name), for the tests that put ranks in namespaces of their own.
import Glibc
import PMI

func fail(_ message: String) -> Never {
    FileHandleStandardError.write("pmi-test-rank: \(message)\n")
    exit(1)
}

let arguments = Array(CommandLine.arguments.dropFirst())
var environment: [String: String] = [:]
var entry = environ
while let pointer = entry.pointee {
    let text = String(cString: pointer)
    if let equals = text.firstIndex(of: "=") { environment[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
    entry += 1
}

do {
    let choice = try BootstrapSelection.choose(from: environment)
    let client = try BootstrapSelection.connect(choice)
    if arguments.first == "fake-verbs-root" {
        try client.put(key: "fabric-address-0", value: "fabric1/verbs/2/4791/10.9.9.9/00000000000000ab")
        try client.put(key: "fabric-host-0", value: PMIValueText.encode("far-host"))
        try client.put(key: "fabric-backend-0", value: PMIValueText.encode("verbs (RDMA device rxe0 has an active port)"))
        try client.fence()
        sleep(30)
        fail("rank 0: still running 30 s after the fence")
    }
    let mine = "value-\(client.rank)-of-\(client.size)-pid-\(getpid())"
    try client.put(key: "test-\(client.rank)", value: mine)
    try client.fence()
    for peer in 0..<client.size {
        let value = try client.get(key: "test-\(peer)")
        guard value.hasPrefix("value-\(peer)-of-\(client.size)-pid-") else {
            fail("rank \(client.rank): rank \(peer)'s value is '\(value)'")
        }
    }
    if arguments.first == "missing" {
        do {
            _ = try client.get(key: "nobody-put-this")
            fail("rank \(client.rank): a get of a key nobody put returned a value")
        } catch where error.kind == .keyNotFound {
            print("rank \(client.rank): missing key refused: \(error.message)")
        }
    }
    if arguments.first == "abort", arguments.count > 1, Int(arguments[1]) == client.rank {
        client.abort(exitCode: 7, message: "rank \(client.rank) aborts on purpose")
        sleep(30)
        fail("rank \(client.rank): still running 30 s after abort")
    }
    try client.fence()
    print("rank \(client.rank) in \(networkNamespace()) on \(environment["SLURMD_NODENAME"] ?? hostName())")
    print("rank \(client.rank) of \(client.size) via \(client.protocolName): \(client.size) values checked")
    try client.finalize()
} catch {
    fail("\(error)")
}

/// The kernel's name for this process's network namespace: net:[inode].
func networkNamespace() -> String {
    var bytes = [CChar](repeating: 0, count: 64)
    let length = readlink("/proc/self/ns/net", &bytes, bytes.count)
    return length > 0 ? String(decoding: bytes.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "net:[unknown]"
}

func hostName() -> String {
    var bytes = [CChar](repeating: 0, count: 256)
    guard gethostname(&bytes, bytes.count - 1) == 0 else { return "unknown" }
    return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Standard error without touching C's `stderr` global.
enum FileHandleStandardError {
    static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
