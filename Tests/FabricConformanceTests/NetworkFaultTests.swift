import Fabric
import FabricTestSupport
import Foundation
import Glibc
import Subprocess
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

    /// Runs `body` with a peer process in the peer's namespace.
    private func withPeer(_ retry: RetryPolicy, _ body: (PeerProcessTests.Peer) async throws -> Void) async throws {
        try await PeerProcessTests.Peer.with(retry: retry, host: Self.host, launcher: ["/usr/sbin/ip", "netns", "exec", Self.peerNamespace!], body)
    }

    /// Runs a command in the peer's namespace and returns what it printed;
    /// fails the test if it fails.
    @discardableResult
    private func inPeerNamespace(_ arguments: [String]) async throws -> String {
        let result = try await Subprocess.run(
            .path("/usr/sbin/ip"), arguments: Arguments(["netns", "exec", Self.peerNamespace!] + arguments),
            output: .string(limit: 1 << 20), error: .currentStandardError)
        guard result.terminationStatus.isSuccess else {
            throw TestFailure("\(arguments.joined(separator: " ")) failed: \(result.terminationStatus)")
        }
        return result.standardOutput ?? ""
    }

    /// Impairs the link with `impair`, runs `body`, and always restores the
    /// link with `restore` after.
    private func impaired(_ impair: [[String]], restore: [String], _ body: () async throws -> Void) async throws {
        do {
            for command in impair { try await inPeerNamespace(command) }
            try await body()
        } catch {
            _ = try? await inPeerNamespace(restore)
            throw error
        }
        try await inPeerNamespace(restore)
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
    func loss() async throws {
        try await withPeer(RetryPolicy(responseTimeout: .seconds(30))) { peer in
            let clean = try checkedTransfers(peer, count: 16, size: 256 * 1024)
            let impair = [
                ["nft", "add", "table", "inet", "fabriclossy"],
                ["nft", "add", "chain", "inet", "fabriclossy", "out", "{ type filter hook output priority 0; }"],
                ["nft", "add", "rule", "inet", "fabriclossy", "out", "numgen", "random", "mod", "100", "<", "20", "counter", "drop"],
            ]
            try await impaired(impair, restore: ["nft", "delete", "table", "inet", "fabriclossy"]) {
                let lossy = try checkedTransfers(peer, count: 16, size: 256 * 1024)
                // The rule dropped packets: a rule that dropped none would prove nothing.
                let listing = try await inPeerNamespace(["nft", "list", "table", "inet", "fabriclossy"])
                let dropped = listing.split(separator: " ").drop { $0 != "packets" }.dropFirst().first.flatMap { Int($0) } ?? 0
                print("network loss 20 %: 16 x 256 KiB WRITE + READ back took \(clean) clean, \(lossy) lossy; \(dropped) packets dropped; all data correct")
                #expect(dropped > 0, "the loss rule dropped nothing: \(listing)")
                #expect(peer.side.queuePair.state == .readyToSend)
            }
        }
    }

    @Test("a rate-limited link (tbf 100 Mbit/s): every byte arrives at about the rate")
    func rateLimit() async throws {
        try await withPeer(RetryPolicy(responseTimeout: .seconds(30))) { peer in
            let limit = ["tc", "qdisc", "replace", "dev", Self.peerInterface, "root", "tbf", "rate", "100mbit", "burst", "32kbit", "latency", "50ms"]
            try await impaired([limit], restore: ["tc", "qdisc", "del", "dev", Self.peerInterface, "root"]) {
                // READs make the peer send: its egress is the limited one.
                let took = try checkedTransfers(peer, count: 8, size: 1 << 20)
                let megabitsPerSecond = Double(8 * 8 * (1 << 20)) / took.inSeconds / 1e6
                print("network rate limit 100 Mbit/s: 8 x 1 MiB READ back (and WRITE) took \(took): about \(Int(megabitsPerSecond)) Mbit/s of READ data; all data correct")
                #expect(took >= .milliseconds(500), "8 MiB through a 100 Mbit/s egress cannot take less than about 0.67 s")
            }
        }
    }

    @Test("the link cut (interface down): an outstanding READ fails within the response timeout")
    func linkCut() async throws {
        try await withPeer(RetryPolicy(responseTimeout: .seconds(2))) { peer in
            _ = try checkedTransfers(peer, count: 1, size: 4096)
            try await impaired([["ip", "link", "set", Self.peerInterface, "down"]], restore: ["ip", "link", "set", Self.peerInterface, "up"]) {
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
    }
}
