import Fabric
import FabricTestSupport
import Foundation
import Glibc
import Testing

/// The namespace scripts/test-netns.sh runs the peer in (nil: not under it).
let peerNamespaceForNetworkTests = ProcessInfo.processInfo.environment["FABRIC_TEST_NETNS"].flatMap { $0.isEmpty ? nil : $0 }

/// Faults of the network between two hosts: network namespaces joined by a
/// veth pair, set up by scripts/test-netns.sh, which runs this suite inside
/// the first namespace with FABRIC_TEST_NETNS naming the second. The peer
/// process (fabric-test-peer) runs in the second; the link is impaired
/// there with nftables (loss), tbf (rate) and `ip link set down` (a cut).
/// Skipped unless that script runs it (it needs root).
@Suite("faults of the network between two hosts (tcp)", .serialized, .enabled(if: peerNamespaceForNetworkTests != nil))
struct NetworkFaultTests {
    static let peerNamespace = peerNamespaceForNetworkTests
    /// This namespace's address on the link, and the peer's interface.
    static let host = ProcessInfo.processInfo.environment["FABRIC_TEST_NETNS_HOST"] ?? "10.77.0.1"
    static let peerInterface = ProcessInfo.processInfo.environment["FABRIC_TEST_NETNS_PEER_IF"] ?? "vb"

    private func peer(_ retry: RetryPolicy) throws -> PeerProcessTests.Peer {
        try PeerProcessTests.Peer(retry: retry, host: Self.host, launcher: ["/usr/sbin/ip", "netns", "exec", Self.peerNamespace!])
    }

    /// Runs a command in the peer's namespace; fails the test if it fails.
    private func inPeerNamespace(_ arguments: [String]) throws {
        let command = ["/usr/sbin/ip", "netns", "exec", Self.peerNamespace!] + arguments
        let child = try PeerProcesses.spawn(command[0], Array(command.dropFirst()), environment: [])
        let status = PeerProcesses.waitForExit(child)
        guard status == 0 else { throw TestFailure("\(arguments.joined(separator: " ")) failed with status \(status)") }
    }

    /// Runs a command in the peer's namespace and returns what it printed.
    private func outputInPeerNamespace(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", Self.peerNamespace!] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestFailure("\(arguments.joined(separator: " ")) failed with status \(process.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }

    /// WRITEs patterns into the peer's memory and reads each back, checking
    /// every byte; returns how long it took.
    private func checkedTransfers(_ peer: PeerProcessTests.Peer, count: Int, size: Int) throws -> Duration {
        let source = Buffer(size)
        let sourceRegion = try peer.side.register(source)
        let back = Buffer(size)
        let backRegion = try peer.side.register(back)
        let start = ContinuousClock().now
        for round in 0..<count {
            source.fillPattern(seed: UInt8(truncatingIfNeeded: round))
            _ = try peer.side.queuePair.postSend(SendWorkRequest(id: UInt64(round), operation: .write(peer.remote), local: .single(sourceRegion.element())))
            let written = try peer.side.nextSend()
            guard written.status == .success else { throw TestFailure("WRITE \(round): \(written)") }
            back.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            _ = try peer.side.queuePair.postSend(SendWorkRequest(id: UInt64(round), operation: .read(peer.remote), local: .single(backRegion.element())))
            let read = try peer.side.nextSend()
            guard read.status == .success else { throw TestFailure("READ \(round): \(read)") }
            #expect(back.matchesPattern(seed: UInt8(truncatingIfNeeded: round)), "round \(round): the data read back differs")
        }
        withExtendedLifetime((sourceRegion, backRegion)) {}
        return ContinuousClock().now - start
    }

    @Test("20 % packet loss on the link: every byte arrives, only later")
    func loss() throws {
        let peer = try peer(RetryPolicy(responseTimeout: .seconds(30)))
        let clean = try checkedTransfers(peer, count: 16, size: 256 * 1024)
        try inPeerNamespace(["nft", "add", "table", "inet", "fabriclossy"])
        defer { try? inPeerNamespace(["nft", "delete", "table", "inet", "fabriclossy"]) }
        try inPeerNamespace(["nft", "add", "chain", "inet", "fabriclossy", "out", "{ type filter hook output priority 0; }"])
        try inPeerNamespace(["nft", "add", "rule", "inet", "fabriclossy", "out", "numgen", "random", "mod", "100", "<", "20", "counter", "drop"])
        let lossy = try checkedTransfers(peer, count: 16, size: 256 * 1024)
        // The rule dropped packets: a rule that dropped none would prove nothing.
        let listing = try outputInPeerNamespace(["nft", "list", "table", "inet", "fabriclossy"])
        let dropped = listing.split(separator: " ").drop { $0 != "packets" }.dropFirst().first.flatMap { Int($0) } ?? 0
        print("network loss 20 %: 16 x 256 KiB WRITE + READ back took \(clean) clean, \(lossy) lossy; \(dropped) packets dropped; all data correct")
        #expect(dropped > 0, "the loss rule dropped nothing: \(listing)")
        #expect(peer.side.queuePair.state == .readyToSend)
    }

    @Test("a rate-limited link (tbf 100 Mbit/s): every byte arrives at about the rate")
    func rateLimit() throws {
        let peer = try peer(RetryPolicy(responseTimeout: .seconds(30)))
        try inPeerNamespace(["tc", "qdisc", "replace", "dev", Self.peerInterface, "root", "tbf", "rate", "100mbit", "burst", "32kbit", "latency", "50ms"])
        defer { try? inPeerNamespace(["tc", "qdisc", "del", "dev", Self.peerInterface, "root"]) }
        // READs make the peer send: its egress is the limited one.
        let took = try checkedTransfers(peer, count: 8, size: 1 << 20)
        let megabitsPerSecond = Double(8 * 8 * (1 << 20)) / (Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18) / 1e6
        print("network rate limit 100 Mbit/s: 8 x 1 MiB READ back (and WRITE) took \(took): about \(Int(megabitsPerSecond)) Mbit/s of READ data; all data correct")
        #expect(took >= .milliseconds(500), "8 MiB through a 100 Mbit/s egress cannot take less than about 0.67 s")
    }

    @Test("the link cut (interface down): an outstanding READ fails within the response timeout")
    func linkCut() throws {
        let peer = try peer(RetryPolicy(responseTimeout: .seconds(2)))
        _ = try checkedTransfers(peer, count: 1, size: 4096)
        try inPeerNamespace(["ip", "link", "set", Self.peerInterface, "down"])
        defer { try? inPeerNamespace(["ip", "link", "set", Self.peerInterface, "up"]) }
        let local = Buffer(4096)
        let localRegion = try peer.side.register(local)
        let start = ContinuousClock().now
        _ = try peer.side.queuePair.postSend(SendWorkRequest(id: 1, operation: .read(peer.remote), local: .single(localRegion.element())))
        let completion = try peer.side.nextSend()
        let took = ContinuousClock().now - start
        #expect(completion.status == .transportRetryExceeded, "\(completion)")
        #expect(took >= .milliseconds(1990) && took < .seconds(4), "detected after \(took)")
        print("network link cut: the READ failed after \(took) (response timeout 2 s): \(completion.status)")
        withExtendedLifetime(localRegion) {}
    }
}
