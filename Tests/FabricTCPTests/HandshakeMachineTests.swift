@testable import FabricTCP
import Crypto
import FabricCore
import Testing

/// The two halves of the handshake, driven against each other in memory:
/// no sockets, every message handed over exactly as each half asks.
@Suite("handshake halves without sockets")
struct HandshakeMachineTests {
    nonisolated(unsafe) static let secret = SymmetricKey(data: Array("machine-tests-secret-0123456789".utf8))

    /// Runs both halves until the server is authenticated (or one throws),
    /// then lets the server's verdict reach the client.
    static func run(
        client: inout ClientHandshake, server: inout ServerHandshake, verdict: Handshake.VerdictStatus = .accepted, data: [UInt8] = []
    ) throws {
        var toServer: [UInt8] = []
        var toClient: [UInt8] = []
        for _ in 0..<10 {
            toServer += client.outbox
            client.outbox.removeAll()
            while server.bytesWanted > 0, toServer.count >= server.bytesWanted {
                let wanted = server.bytesWanted
                try server.receive(toServer.prefix(wanted))
                toServer.removeFirst(wanted)
            }
            toClient += server.outbox
            server.outbox.removeAll()
            if server.phase == .authenticated && toClient.isEmpty && client.phase == .verdictHeader {
                toClient += Handshake.encodeVerdict(verdict, privateData: data)
            }
            while client.bytesWanted > 0, toClient.count >= client.bytesWanted {
                let wanted = client.bytesWanted
                try client.receive(toClient[..<wanted])
                toClient.removeFirst(wanted)
            }
            if client.phase == .finished { return }
        }
        Issue.record("the handshake did not finish")
    }

    @Test("both halves agree: tag, instances and private data cross, and the client never reads past the verdict")
    func success() throws {
        var client = ClientHandshake(secret: Self.secret, tag: 0xABCD, instance: 11, privateData: [1, 2, 3], peer: "server")
        var server = ServerHandshake(secret: Self.secret, instance: 22)
        try Self.run(client: &client, server: &server, data: [9, 8])
        #expect(server.phase == .authenticated)
        #expect(server.tag == 0xABCD && server.clientInstance == 11 && server.privateData == [1, 2, 3])
        #expect(client.serverInstance == 22)
        #expect(client.acceptedData == [9, 8])
        #expect(client.bytesWanted == 0)
    }

    @Test("a wrong secret is caught by each side, with the reason")
    func wrongSecret() {
        var client = ClientHandshake(secret: SymmetricKey(data: Array("another-secret-0123456789".utf8)), tag: nil, instance: 1, privateData: [], peer: "server")
        var server = ServerHandshake(secret: Self.secret, instance: 2)
        #expect {
            try Self.run(client: &client, server: &server)
        } throws: { ($0 as? FabricError)?.kind == .authenticationFailed }
        // The client refused the server's proof before sending its own.
        #expect(server.phase == .proof)
    }

    @Test("a peer of another version gets a version refusal; the client names the server's version")
    func versions() throws {
        var server = ServerHandshake(secret: Self.secret, instance: 2)
        let oldHello = Handshake.encodeHello(version: 1, nonce: Handshake.freshNonce(), tag: nil, instance: 1, privateData: [])
        #expect {
            try server.receive(oldHello.prefix(Handshake.prefixSize))
        } throws: { error in
            let error = error as? FabricError
            return error?.kind == .protocolMismatch && error?.message.contains("version 1") == true
        }
        #expect(Array(server.outbox.prefix(8)) == Array(Handshake.encodeVersionRefusal().prefix(8)))

        var client = ClientHandshake(secret: Self.secret, tag: nil, instance: 1, privateData: [], peer: "server")
        var refusal = Handshake.encodeVersionRefusal()
        refusal[4] = 1  // a version-1 server's refusal
        #expect {
            try client.receive(refusal.prefix(Handshake.prefixSize))
        } throws: { error in
            guard let error = error as? FabricError else { return false }
            return error.kind == .protocolMismatch && error.message.contains("version 1")
        }
    }

    @Test("a lost tie-break and a rejection end the client with distinct reasons")
    func verdicts() throws {
        for (verdict, kind) in [(Handshake.VerdictStatus.crossedConnection, FabricError.Kind.crossedConnection), (.rejectedByApplication, .connectionFailed)] {
            var client = ClientHandshake(secret: Self.secret, tag: 5, instance: 1, privateData: [], peer: "server")
            var server = ServerHandshake(secret: Self.secret, instance: 2)
            #expect {
                try Self.run(client: &client, server: &server, verdict: verdict)
            } throws: { ($0 as? FabricError)?.kind == kind }
        }
    }

    @Test("too much private data and bad magic are refused at the first message")
    func malformed() {
        var server = ServerHandshake(secret: Self.secret, instance: 2)
        var hello = Handshake.encodeHello(nonce: Handshake.freshNonce(), tag: nil, instance: 1, privateData: [])
        hello[6] = 57
        #expect(throws: FabricError.self) { try server.receive(hello.prefix(Handshake.prefixSize)) }
        var other = ServerHandshake(secret: Self.secret, instance: 2)
        #expect(throws: FabricError.self) { try other.receive(Array("GET / HT".utf8)[...]) }
    }
}
