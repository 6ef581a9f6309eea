/// Which rank runs which program on which host: the launch request made
/// concrete, before anything starts.
public struct JobPlan: Equatable, Sendable {
    public struct Rank: Equatable, Sendable {
        public var rank: Int
        public var host: Int
        public var application: Int
    }

    /// Host names in the order the list gave them; `nil` host list means
    /// this host alone.
    public var hosts: [String]
    public var ranks: [Rank]
    public var size: Int { ranks.count }

    /// Ranks of `host`, in rank order.
    public func ranks(on host: Int) -> [Rank] { ranks.filter { $0.host == host } }

    /// PMI's `PMI_process_mapping`: runs of consecutive ranks on one host,
    /// `(vector,(firstHost,hostCount,ranksPerHost),...)`.
    public var processMapping: String {
        var blocks: [(start: Int, hosts: Int, perHost: Int)] = []
        var index = 0
        while index < ranks.count {
            let host = ranks[index].host
            var run = 1
            while index + run < ranks.count && ranks[index + run].host == host { run += 1 }
            if var last = blocks.last, last.perHost == run, last.start + last.hosts == host {
                last.hosts += 1
                blocks[blocks.count - 1] = last
            } else {
                blocks.append((host, 1, run))
            }
            index += run
        }
        return "(vector," + blocks.map { "(\($0.start),\($0.hosts),\($0.perHost))" }.joined(separator: ",") + ")"
    }

    /// Places the ranks: by host slots in list order, or `-ppn` per host
    /// (then around the list again, as MPICH does). A host list's slots
    /// are a limit unless `--oversubscribe`; this host alone has no limit.
    public static func make(_ request: LaunchRequest, localHostName: String) throws(LaunchError) -> JobPlan {
        let hostSlots: [HostSlots]?
        var origin = ""
        switch request.hosts {
        case .local: hostSlots = nil
        case .commandLine(let list): hostSlots = list; origin = "the host list"
        case .file(let path, let list): hostSlots = list; origin = "host file \(path)"
        }
        var counts: [Int] = []
        for (index, application) in request.applications.enumerated() {
            if let count = application.count {
                counts.append(count)
            } else if let hostSlots, request.applications.count == 1 {
                counts.append(request.ranksPerHost.map { $0 * hostSlots.count } ?? hostSlots.reduce(0) { $0 + $1.slots })
            } else {
                throw LaunchError(hostSlots == nil
                    ? "how many ranks of \(application.program)? give -n (with no host list there is no slot count to go by)"
                    : "program \(index + 1) (\(application.program)) has no -n: with several programs each needs its own")
            }
        }
        let total = counts.reduce(0, +)
        var applicationOfRank: [Int] = []
        for (index, count) in counts.enumerated() { applicationOfRank += Array(repeating: index, count: count) }

        guard let hostSlots else {
            return JobPlan(hosts: [localHostName], ranks: (0..<total).map { Rank(rank: $0, host: 0, application: applicationOfRank[$0]) })
        }
        var hostOfRank: [Int] = []
        if let perHost = request.ranksPerHost {
            while hostOfRank.count < total {
                for host in hostSlots.indices {
                    for _ in 0..<perHost where hostOfRank.count < total { hostOfRank.append(host) }
                }
            }
        } else {
            let capacity = hostSlots.reduce(0) { $0 + $1.slots }
            if total > capacity && !request.oversubscribe {
                throw LaunchError("\(total) ranks asked, but \(origin) has \(capacity) slot\(capacity == 1 ? "" : "s") (\(hostSlots.map(\.description).joined(separator: ", "))); add --oversubscribe, hosts or slots")
            }
            for (host, entry) in hostSlots.enumerated() {
                for _ in 0..<entry.slots where hostOfRank.count < total { hostOfRank.append(host) }
            }
            // Oversubscribed: one more per host, around the list.
            while hostOfRank.count < total {
                for host in hostSlots.indices where hostOfRank.count < total { hostOfRank.append(host) }
            }
            hostOfRank.sort()
        }
        return JobPlan(
            hosts: hostSlots.map(\.host),
            ranks: (0..<total).map { Rank(rank: $0, host: hostOfRank[$0], application: applicationOfRank[$0]) })
    }
}
