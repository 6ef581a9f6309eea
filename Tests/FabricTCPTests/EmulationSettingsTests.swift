import FabricCore
import Testing

@testable import FabricTCP

@Suite("link shape and fault script settings")
struct EmulationSettingsTests {
    /// The message of the error `parse` throws for `text`; nil if it parses.
    private func error<Value>(_ parse: (String) throws(FabricError) -> Value, _ text: String) -> String? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error.message
        }
    }

    private func linkError(_ text: String) -> String? { error(LinkShape.parse, text) }
    private func faultError(_ text: String) -> String? { error(FaultScript.parse, text) }

    @Test("link settings with units, in any order")
    func linkParsing() throws {
        let link = try LinkShape.parse("latency=2us,rate=25Gbit/s")
        #expect(link.bitsPerSecond == 25e9)
        #expect(link.latency == .microseconds(2))
        #expect(link.description == "rate 25 Gbit/s, +2 us one way")
        #expect(try LinkShape.parse("rate=3GB/s burst=256K").bitsPerSecond == 24e9)
        #expect(try LinkShape.parse("rate=3GB/s burst=256K").burstBytes == 256 * 1024)
        #expect(try LinkShape.parse("rate=100Mbps").bitsPerSecond == 1e8)
        #expect(try LinkShape.parse("latency=1.5ms").latency == .microseconds(1500))
        #expect(!LinkShape.unshaped.isShaped)
        #expect(try LinkShape.fromEnvironment([:]) == .unshaped)
        #expect(try LinkShape.fromEnvironment(["FABRIC_TCP_LINK": "rate=1Gbit/s"]).bitsPerSecond == 1e9)
    }

    @Test("an impossible or malformed link setting is refused, naming the setting")
    func linkErrors() {
        #expect(linkError("rate=fast")?.contains("rate 'fast'") == true)
        #expect(linkError("rate=25Gfurlongs")?.contains("unknown unit") == true)
        #expect(linkError("rate=0")?.contains("rate") == true)
        #expect(linkError("rate=100PB/s")?.contains("unknown unit") == true)
        #expect(linkError("rate=20Tbit/s")?.contains("outside") == true)
        #expect(linkError("latency=2")?.contains("needs a unit") == true)
        #expect(linkError("latency=-1us")?.contains("latency") == true)
        #expect(linkError("latency=20s")?.contains("outside") == true)
        #expect(linkError("burst=0")?.contains("burst") == true)
        #expect(linkError("speed=1G")?.contains("unknown link setting 'speed'") == true)
        #expect(linkError("rate")?.contains("not key=value") == true)
        #expect(throws: FabricError.self) { try LinkShape.fromEnvironment(["FABRIC_TCP_LINK": "rate=1Gbit/s,latency=x"]) }
        do {
            _ = try LinkShape.fromEnvironment(["FABRIC_TCP_LINK": "rate=x"])
            Issue.record("accepted a link whose rate is not a number")
        } catch {
            #expect(error.message.hasPrefix("FABRIC_TCP_LINK=rate=x:"), "\(error.message)")
        }
        #expect(throws: FabricError.self) { try LinkShape(bitsPerSecond: .infinity).validate() }
    }

    @Test("fault rules, several per script, optionally for one queue pair")
    func faultParsing() throws {
        let script = try FaultScript.parse("drop packet=5 times=2; delay packet=3 by=200us qp=2; rnr sends=3 after=1; access-error request=4; error post=9; vanish packet=40")
        #expect(script.rules.count == 6)
        #expect(script.rules[0] == FaultScript.Rule(.drop(packet: 5, times: 2)))
        #expect(script.rules[1] == FaultScript.Rule(.delay(packet: 3, by: .microseconds(200)), queuePair: 2))
        #expect(script.rules[2] == FaultScript.Rule(.receiverNotReady(sends: 3, after: 1)))
        #expect(try FaultScript.parse("drop packet=1 times=all").rules[0].action == .drop(packet: 1, times: nil))
        #expect(try FaultScript.parse(script.description) == script, "the description parses back: \(script.description)")
        #expect(try FaultScript.fromEnvironment([:]).isEmpty)
        #expect(try FaultScript.parse("loss rate=0.5% seed=9").rules[0].action == .loss(probability: 0.005, seed: 9))
        #expect(try FaultScript.parse("loss rate=0.25").rules[0].action == .loss(probability: 0.25, seed: 1))
        let lossy = try FaultScript.parse("loss rate=2% seed=3 qp=1")
        #expect(try FaultScript.parse(lossy.description) == lossy, "the description parses back: \(lossy.description)")
    }

    @Test("an unknown or malformed fault rule is refused, naming what was wrong")
    func faultErrors() {
        #expect(faultError("explode packet=1")?.contains("unknown fault 'explode'") == true)
        #expect(faultError("drop")?.contains("needs packet=N") == true)
        #expect(faultError("drop packet=0")?.contains("drop packet") == true)
        #expect(faultError("drop packet=x")?.contains("drop packet") == true)
        #expect(faultError("drop packet=1 times=never")?.contains("drop times") == true)
        #expect(faultError("drop packet=1 packet=2")?.contains("twice") == true)
        #expect(faultError("drop packet=1 color=red")?.contains("unknown setting 'color'") == true)
        #expect(faultError("delay packet=1")?.contains("by=DURATION") == true)
        #expect(faultError("delay packet=1 by=11s")?.contains("longer than 10 s") == true)
        #expect(faultError("rnr sends=1 after=-2")?.contains("after") == true)
        #expect(faultError("error post=1 qp=0")?.contains("qp '0'") == true)
        #expect(faultError("vanish packet")?.contains("not key=value") == true)
        #expect(faultError("loss")?.contains("needs rate=P%") == true)
        #expect(faultError("loss rate=lots")?.contains("rate 'lots' is not a number") == true)
        #expect(faultError("loss rate=100%")?.contains("below 100%") == true)
        #expect(faultError("loss rate=-1%")?.contains("at least 0") == true)
        #expect(faultError("loss rate=1% seed=-4")?.contains("seed '-4'") == true)
        do {
            _ = try FaultScript.fromEnvironment(["FABRIC_TCP_FAULTS": "drop"])
            Issue.record("accepted a drop without a packet")
        } catch {
            #expect(error.message.hasPrefix("FABRIC_TCP_FAULTS=drop:"), "\(error.message)")
        }
    }

    @Test("a device refuses transport retries a card cannot have")
    func transportRetriesChecked() throws {
        let device = try TCPDevice(secret: Array(repeating: 7, count: 32), link: .unshaped, faults: FaultScript.none)
        let domain = try device.allocateProtectionDomain()
        let queue = try device.createCompletionQueue(capacity: 16)
        let setup = QueuePairSetup<TCPDevice>(
            protectionDomain: domain, sendCompletionQueue: queue, receiveCompletionQueue: queue,
            retry: RetryPolicy(transportRetries: 8))
        #expect(throws: FabricError.self) { try device.validate(setup) }
        #expect(throws: FabricError.self) { try TCPDevice(secret: Array(repeating: 7, count: 32), link: LinkShape(latency: .seconds(-1))) }
    }
}
