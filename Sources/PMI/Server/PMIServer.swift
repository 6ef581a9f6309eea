import Glibc

/// The launcher's side of PMI for the ranks of one host: each rank's
/// inherited descriptor, served with PMI-1 or PMI-2 as the rank chooses.
/// The key-value space lives here; fences are collective across the
/// whole job, so the server only reports when its own ranks are all in
/// (`fenceReady`) and its owner completes the fence when every host's
/// ranks are (`completeFence`): on one host at once, across hosts after
/// the launcher has heard from every proxy.
///
/// The owner runs the event loop: it polls `pollDescriptors` and hands
/// over what is ready. Not thread-safe; one owner thread.
public final class PMIServer {
    public let context: PMIServerContext
    private var connections: [Int32: PMIServerConnection] = [:]
    private var store: [String: String] = [:]
    private var pending: [String: String] = [:]
    /// Ranks waiting in the current fence, with the request to answer.
    private var fenced: Set<Int> = []
    private var fenceReported = false
    private var finished: Set<Int> = []
    private let localRanks: Set<Int>

    public init(context: PMIServerContext, ranks: [(rank: Int, descriptor: Int32)]) {
        self.context = context
        for (rank, descriptor) in ranks {
            connections[descriptor] = PMIServerConnection(rank: rank, descriptor: descriptor)
        }
        localRanks = Set(ranks.map(\.rank))
    }

    /// The descriptors to poll, with POLLOUT where a reply waits.
    public var pollDescriptors: [pollfd] {
        connections.values.filter { !$0.closed }.map {
            pollfd(fd: $0.descriptor, events: Int16(POLLIN) | ($0.wantsToWrite ? Int16(POLLOUT) : 0), revents: 0)
        }
    }

    /// True once every local rank finalized.
    public var allFinalized: Bool { finished == localRanks }

    /// What a rank is doing as far as PMI can tell, for reports of a job
    /// that does not end.
    public func state(of rank: Int) -> String {
        if finished.contains(rank) { return "finalized" }
        if fenced.contains(rank) { return "waiting in a fence (PMI barrier) for the other ranks" }
        if let connection = connections.values.first(where: { $0.rank == rank }) {
            if connection.closed { return "closed its PMI connection" }
            if connection.dialect == .undecided { return "has not initialised PMI (not started, or not an MPI program)" }
        }
        return "running (PMI initialised, not in a fence)"
    }

    /// The keys each rank put, for the launcher to see who announced what.
    public private(set) var keysPut: [Int: Set<String>] = [:]

    /// The values every rank can read (after fences).
    public func value(forKey key: String) -> String? { store[key] }

    /// Handles one descriptor `poll` reported.
    public func handle(descriptor: Int32, revents: Int16) -> [PMIServerEvent] {
        guard let connection = connections[descriptor], !connection.closed else { return [] }
        var events: [PMIServerEvent] = []
        if revents & Int16(POLLOUT) != 0 && !connection.flush() {
            return fail(connection, "its connection to the launcher failed while a reply was sent")
        }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return events }
        let open = connection.readAvailable()
        do {
            while let request = try connection.nextRequest(context: context) {
                events += serve(request, from: connection)
                if connection.closed { return events }
            }
        } catch {
            return events + fail(connection, "sent what is not PMI: \(error.message)")
        }
        if !open && connection.dialect == .undecided {
            // Never said a word: a program that does not use PMI (mpirun
            // hostname). It takes no part in fences.
            finished.insert(connection.rank)
            connection.close()
            return events + fenceIfComplete()
        }
        if !open && !finished.contains(connection.rank) {
            return events + fail(connection, "closed its connection to the launcher before it finalized (it exited or crashed before MPI finalize)")
        }
        if !connection.flush() {
            return events + fail(connection, "its connection to the launcher failed while a reply was sent")
        }
        if !open { connection.close() }
        if finished.contains(connection.rank) && !connection.wantsToWrite { connection.close() }
        return events
    }

    /// Every host's ranks are in the fence: `values` are all the puts of
    /// the job since the last fence (this host's included). Answers the
    /// waiting ranks.
    public func completeFence(with values: [String: String]) {
        store.merge(values) { $1 }
        for connection in connections.values where fenced.contains(connection.rank) && !connection.closed {
            connection.answer(.fence, value: nil)
            _ = connection.flush()
        }
        fenced.removeAll()
        fenceReported = false
    }

    /// Closes every connection (the job ended).
    public func closeAll() {
        for connection in connections.values { connection.close() }
    }

    private func serve(_ request: PMIRequest, from connection: PMIServerConnection) -> [PMIServerEvent] {
        switch request {
        case .put(let key, let value):
            pending[key] = value
            keysPut[connection.rank, default: []].insert(key)
            connection.answer(request, value: nil)
        case .fence:
            fenced.insert(connection.rank)
            return fenceIfComplete()
        case .get(let key):
            connection.answer(request, value: store[key])
        case .jobAttribute(let key):
            let value: String? = switch key {
            case "PMI_process_mapping": context.processMapping
            case "universeSize": String(context.size)
            default: nil
            }
            connection.answer(request, value: value)
        case .abort(let code, let message):
            return [.abort(rank: connection.rank, exitCode: code, message: message)]
        case .finalize:
            finished.insert(connection.rank)
            connection.answer(request, value: nil)
            _ = connection.flush()
            var events: [PMIServerEvent] = [.finalized(rank: connection.rank)]
            events += fenceIfComplete()
            return events
        }
        return []
    }

    private func fenceIfComplete() -> [PMIServerEvent] {
        guard !fenceReported, !fenced.isEmpty, fenced.union(finished) == localRanks else { return [] }
        fenceReported = true
        let puts = pending
        pending.removeAll()
        return [.fenceReady(puts: puts)]
    }

    private func fail(_ connection: PMIServerConnection, _ reason: String) -> [PMIServerEvent] {
        connection.close()
        return [.failed(rank: connection.rank, reason: "rank \(connection.rank) \(reason)")]
    }
}
