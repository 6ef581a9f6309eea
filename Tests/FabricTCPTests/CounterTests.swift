@testable import FabricTCP
import FabricCore
import Glibc
import MetricsTestKit
import Testing

@Suite("counters")
struct CounterTests {
    @Test("device counters add up the traffic, keep closed queue pairs, are published and export to swift-metrics")
    func counters() throws {
        let server = try AcceptingServer(secret: secretA)
        server.acceptOne()
        let client = try TCPDevice(secret: secretA)
        let domain = try client.allocateProtectionDomain()
        let cq = try client.createCompletionQueue(capacity: 16)
        let local = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        defer { local.deallocate() }
        let region = try client.registerMemory(local, length: 4096, access: .all, in: domain)
        var (qp, _) = try client.connect(to: server.listener.endpoint, QueuePairSetup(protectionDomain: domain, sendCompletionQueue: cq, receiveCompletionQueue: cq), options: ConnectOptions(timeout: .seconds(5))) { _ in }
        server.done.wait()
        _ = try qp.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(region.element(offset: 0, length: 1000))))
        let clock = ContinuousClock()
        var completion: Completion?
        let deadline = clock.now + .seconds(10)
        while completion == nil && clock.now < deadline { completion = cq.poll() }
        #expect(completion?.status == .success)

        let live = client.counters
        #expect(live.queuePairs.count == 1 && live.queuePairs[0].number == qp.number.rawValue)
        #expect(live.totals.bytesSent >= 1000 && live.totals.framesSent >= 1)
        #expect(live.processID == getpid() && live.profile == "software-nic")

        // Exported: what grew since the last export.
        let metrics = TestMetrics()
        let exporter = CounterExporter(device: client, factory: metrics)
        exporter.export()
        let bytes = try metrics.expectCounter("fabric_tcp_bytes_sent", [("device", "tcp0")])
        #expect(bytes.totalValue == Int64(live.totals.bytesSent))

        // Published within about a second, for fabric-info --counters.
        var published: DeviceCounters?
        let publishDeadline = clock.now + .seconds(5)
        while published == nil && clock.now < publishDeadline {
            published = CounterFiles.readAll().first {
                $0.processID == getpid() && $0.queuePairs.contains { $0.number == qp.number.rawValue } && $0.totals.bytesSent >= 1000
            }
            if published == nil { usleep(100_000) }
        }
        #expect(published?.totals.bytesSent ?? 0 >= 1000, "no published counters in \(CounterFiles.directory)")

        // A closed queue pair's counters stay in the totals.
        qp.disconnect()
        server.acceptOne()
        qp = try client.connect(to: server.listener.endpoint, QueuePairSetup(protectionDomain: domain, sendCompletionQueue: cq, receiveCompletionQueue: cq), options: ConnectOptions(timeout: .seconds(5))) { _ in }.queuePair
        server.done.wait()
        #expect(client.counters.totals.bytesSent >= live.totals.bytesSent)
        #expect(client.counters.queuePairs.map(\.number) == [qp.number.rawValue])
    }
}
