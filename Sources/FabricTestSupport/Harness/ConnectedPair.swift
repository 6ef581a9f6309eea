import Dispatch
import Fabric

/// Two sides connected over a network (loopback for the software NIC).
public struct Connection<D: FabricDevice> {
    public let client: Side<D>
    public let server: Side<D>
}

/// Connects a new side of `clientDevice` to a new side of `serverDevice`
/// through a listener on `host`. `prepareServer` and `prepareClient` run on
/// each queue pair before the connection completes (post receives there);
/// `clientSetup` and `serverSetup` choose each side's queue pair setup.
public func connect<D: FabricDevice>(
    client clientDevice: D, server serverDevice: D,
    host: String,
    clientSetup: ((Side<D>) -> QueuePairSetup<D>)? = nil,
    serverSetup: ((Side<D>) -> QueuePairSetup<D>)? = nil,
    prepareServer: @escaping @Sendable (D.QueuePair) throws -> Void = { _ in },
    prepareClient: (D.QueuePair) throws -> Void = { _ in }
) throws -> Connection<D> {
    let client = try Side(clientDevice)
    let server = try Side(serverDevice)
    let listener = try serverDevice.listen(on: Endpoint(host: host, port: 0), backlog: 16)
    defer { listener.close() }
    let setupForServer = serverSetup?(server) ?? server.setup()
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var serverError: Error?
    DispatchQueue.global().async {
        do {
            guard let request = try listener.next(timeout: .seconds(20)) else { throw TestFailure("no connection request") }
            server.queuePair = try request.accept(setupForServer, privateData: []) { (qp) throws(FabricError) in
                do { try prepareServer(qp) } catch let error as FabricError { throw error } catch { throw FabricError(.invalidState, "\(error)") }
            }
        } catch {
            serverError = error
        }
        done.signal()
    }
    let (queuePair, _) = try clientDevice.connect(
        to: listener.endpoint, clientSetup?(client) ?? client.setup(), options: ConnectOptions(timeout: .seconds(20))
    ) { (qp) throws(FabricError) in
        do { try prepareClient(qp) } catch let error as FabricError { throw error } catch { throw FabricError(.invalidState, "\(error)") }
    }
    client.queuePair = queuePair
    done.wait()
    if let serverError { throw serverError }
    return Connection(client: client, server: server)
}

/// Opens two devices of `backend` and connects them.
public func connectedPair<Backend: BackendOpener>(
    _ backend: Backend, host: String? = nil,
    limits: QueuePairLimits = QueuePairLimits(), retry: RetryPolicy = RetryPolicy(),
    prepareServer: @escaping @Sendable (Backend.Device.QueuePair) throws -> Void = { _ in }
) throws -> Connection<Backend.Device> {
    try connect(
        client: backend.open(), server: backend.open(), host: host ?? backend.host,
        clientSetup: { $0.setup(limits: limits, retry: retry) },
        serverSetup: { $0.setup(limits: limits, retry: retry) },
        prepareServer: prepareServer)
}
