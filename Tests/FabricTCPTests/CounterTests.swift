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
        // Packets are counted in the profile's MTU: 1000 bytes are 4 of 256.
        var smallPackets = DeviceProfile.softwareNIC
        smallPackets.capabilities.mtu = 256
        let client = try TestClient(profile: smallPackets)
        var qp = try client.connect(to: server)
        _ = try qp.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(client.region.element(offset: 0, length: 1000))))
        #expect(client.next()?.status == .success)
        let clock = ContinuousClock()

        let live = client.device.counters
        #expect(live.queuePairs.count == 1 && live.queuePairs[0].number == qp.number.rawValue)
        #expect(live.totals.bytesSent >= 1000 && live.totals.framesSent >= 1)
        #expect(live.totals.packetsSent >= live.totals.framesSent + 3, "\(live.totals)")
        #expect(live.processID == getpid() && live.profile == "software-nic")

        // Exported: what grew since the last export.
        let metrics = TestMetrics()
        let exporter = CounterExporter(device: client.device, factory: metrics)
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
        qp = try client.connect(to: server)
        #expect(client.device.counters.totals.bytesSent >= live.totals.bytesSent)
        #expect(client.device.counters.queuePairs.map(\.number) == [qp.number.rawValue])
    }
}
