/// Host lists as users write them, on the command line and in host files.
///
/// Command line (`--host`, `-H`, `-hosts`): `h1:2,h2:2`, or `h1,h1,h2`
/// (a host named again gets another slot), `[fd00::2]:4` for IPv6.
///
/// Host files (`--hostfile`, `-f`, `-machinefile`), one host per line, in
/// either launcher's form: MPICH's `host:slots` and Open MPI's
/// `host slots=N` (`max_slots=M` is read and must not be below `slots`);
/// `#` starts a comment. A host on several lines adds up its slots.
public enum HostList {
    public static func parse(commandLine text: String) throws(LaunchError) -> [HostSlots] {
        var hosts: [HostSlots] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let (host, slots) = try split(String(entry), context: "host list '\(text)'")
            add(HostSlots(host: host, slots: slots ?? 1), to: &hosts)
        }
        return hosts
    }

    public static func parse(file contents: String, path: String) throws(LaunchError) -> [HostSlots] {
        var hosts: [HostSlots] = []
        for (index, rawLine) in contents.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let first = words.first else { continue }
            let context = "host file \(path), line \(index + 1) ('\(String(rawLine).trimmingSpaces)')"
            var (host, slots) = try split(first, context: context)
            var maximum: Int?
            for word in words.dropFirst() {
                let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let value = Int(parts[1]), value > 0 else {
                    throw LaunchError("\(context): '\(word)' is not slots=N or max_slots=N with N at least 1")
                }
                switch parts[0] {
                case "slots", "cpu", "cpus":
                    guard slots == nil else { throw LaunchError("\(context): the slots are given twice") }
                    slots = value
                case "max_slots", "max-slots":
                    maximum = value
                default:
                    throw LaunchError("\(context): '\(parts[0])' is not a host attribute this mpirun reads (slots, max_slots)")
                }
            }
            if let maximum, let given = slots, given > maximum {
                throw LaunchError("\(context): slots=\(given) is more than max_slots=\(maximum)")
            }
            add(HostSlots(host: host, slots: slots ?? 1), to: &hosts)
        }
        guard !hosts.isEmpty else { throw LaunchError("host file \(path) names no host") }
        return hosts
    }

    private static func split(_ entry: String, context: String) throws(LaunchError) -> (String, Int?) {
        guard !entry.isEmpty else { throw LaunchError("\(context): an empty host name") }
        var host = entry
        var slotsText: String?
        if entry.hasPrefix("[") {
            guard let close = entry.firstIndex(of: "]") else { throw LaunchError("\(context): '\(entry)' opens '[' without closing it") }
            host = String(entry[entry.index(after: entry.startIndex)..<close])
            let rest = entry[entry.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw LaunchError("\(context): '\(entry)' has '\(rest)' after the address") }
                slotsText = String(rest.dropFirst())
            }
        } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
            host = String(entry[..<colon])
            slotsText = String(entry[entry.index(after: colon)...])
        }
        guard !host.isEmpty else { throw LaunchError("\(context): '\(entry)' has no host name") }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || "-._:".contains($0) }) else {
            throw LaunchError("\(context): '\(host)' is not a host name or address")
        }
        guard let slotsText else { return (host, nil) }
        guard let slots = Int(slotsText), slots > 0 else {
            throw LaunchError("\(context): '\(slotsText)' after '\(host):' is not a number of slots of at least 1")
        }
        return (host, slots)
    }

    private static func add(_ entry: HostSlots, to hosts: inout [HostSlots]) {
        if let index = hosts.firstIndex(where: { $0.host == entry.host }) {
            hosts[index].slots += entry.slots
        } else {
            hosts.append(entry)
        }
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" || $0 == "\r" }).reversed())
    }
}
