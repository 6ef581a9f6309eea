import Fabric
import Foundation

/// Connects two devices of this process over 127.0.0.1: the server's side
/// is accepted on a thread of its own while the client connects. Each
/// `prepare` posts receives before its side can be sent to.
func connectLoopbackPair<D: FabricDevice>(
    client: D, _ clientSetup: QueuePairSetup<D>, prepareClient: (D.QueuePair) throws(FabricError) -> Void = { _ in },
    server: D, _ serverSetup: QueuePairSetup<D>, prepareServer: @escaping @Sendable (D.QueuePair) throws(FabricError) -> Void = { _ in },
    timeout: Duration = .seconds(20)
) throws -> (client: D.QueuePair, server: D.QueuePair) {
    let listener = try server.listen(on: Endpoint(host: "127.0.0.1", port: 0), backlog: 1)
    defer { listener.close() }
    nonisolated(unsafe) var accepted: D.QueuePair?
    nonisolated(unsafe) var failure: Error?
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        do {
            guard let request = try listener.next(timeout: timeout) else { throw PerfError("no connection request") }
            accepted = try request.accept(serverSetup, privateData: [], prepare: prepareServer)
        } catch {
            failure = error
        }
        done.signal()
    }
    let (queuePair, _) = try client.connect(to: listener.endpoint, clientSetup, options: ConnectOptions(timeout: timeout), prepare: prepareClient)
    done.wait()
    if let failure { throw failure }
    guard let accepted else { throw PerfError("the server side was not accepted") }
    return (queuePair, accepted)
}
