import FabricCore

/// Faults the software NIC injects, deterministically, the way cards fail.
/// Each rule names what happens, when (an ordinal counted per queue pair),
/// and optionally which queue pair (its number on this device: the first
/// created is 1).
///
///     FABRIC_TCP_FAULTS="drop packet=5 times=2; rnr sends=3; vanish packet=40 qp=2"
///
/// | rule | effect |
/// | --- | --- |
/// | `drop packet=N [times=K\|all]` | the request frame carrying the queue pair's Nth packet is lost K times (default 1): the card waits its retry timeout, counts a retry and sends again; when the retries run out the request fails with transport retry exceeded |
/// | `delay packet=N by=D` | the request frame carrying packet N leaves D later (and those behind it wait, in order) |
/// | `rnr sends=K [after=M]` | the queue pair answers the SENDs that arrive after the Mth with receiver-not-ready, K times |
/// | `access-error request=N` | the Nth WRITE, READ or atomic that arrives is refused as a remote access error |
/// | `error post=N` | the queue pair goes to the error state when the Nth send request is posted |
/// | `vanish packet=N` | before packet N leaves, the queue pair goes silent: nothing more leaves, everything arriving is swallowed; its peer finds out by its own timeout |
/// | `loss rate=P% [seed=S]` | every transmission of a request packet is lost with probability P, drawn from a generator seeded with S (default 1) and the queue pair's number, so a run repeats exactly; each loss costs a retry timeout, as a drop does |
///
/// Packets are the profile's MTU-sized units of the queue pair's request
/// frames, numbered from 1 in posting order as a card numbers them (a
/// retransmission keeps its numbers).
public struct FaultScript: Hashable, Sendable, CustomStringConvertible {
    public enum Action: Hashable, Sendable {
        case drop(packet: Int, times: Int?)
        case delay(packet: Int, by: Duration)
        case receiverNotReady(sends: Int, after: Int)
        case accessError(request: Int)
        case forceError(post: Int)
        case vanish(packet: Int)
        /// Each packet of each transmission is lost with `probability`.
        case loss(probability: Double, seed: UInt64)
    }

    public struct Rule: Hashable, Sendable {
        public var action: Action
        /// The queue pair it applies to (its number on the device); nil: every one.
        public var queuePair: UInt32?
        public init(_ action: Action, queuePair: UInt32? = nil) {
            self.action = action
            self.queuePair = queuePair
        }
    }

    public var rules: [Rule]

    public static let environmentVariable = "FABRIC_TCP_FAULTS"
    public static let none = FaultScript(rules: [])

    public init(rules: [Rule]) { self.rules = rules }

    public var isEmpty: Bool { rules.isEmpty }

    /// Parses rules separated by ';' (see the type's documentation).
    public static func parse(_ text: String) throws(FabricError) -> FaultScript {
        var rules: [Rule] = []
        for piece in text.split(separator: ";") {
            let words = piece.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" || $0 == "\n" }).map(String.init)
            guard let kind = words.first else { continue }
            var settings: [String: String] = [:]
            for word in words.dropFirst() {
                let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[1].isEmpty else {
                    throw FabricError(.invalidArgument, "fault rule '\(kind)': '\(word)' is not key=value")
                }
                guard settings[parts[0]] == nil else {
                    throw FabricError(.invalidArgument, "fault rule '\(kind)' sets '\(parts[0])' twice")
                }
                settings[parts[0]] = parts[1]
            }
            rules.append(try rule(kind, settings))
        }
        return FaultScript(rules: rules)
    }

    private static func rule(_ kind: String, _ settings: [String: String]) throws(FabricError) -> Rule {
        var remaining = settings
        func take(_ key: String) -> String? { remaining.removeValue(forKey: key) }
        func required(_ key: String) throws(FabricError) -> Int {
            guard let text = take(key) else {
                throw FabricError(.invalidArgument, "fault rule '\(kind)' needs \(key)=N")
            }
            return try EmulationUnits.count(text, setting: "\(kind) \(key)")
        }
        var queuePair: UInt32?
        if let text = take("qp") {
            guard let number = UInt32(text), number >= 1 else {
                throw FabricError(.invalidArgument, "fault rule '\(kind)': qp '\(text)' is not a queue pair number from 1")
            }
            queuePair = number
        }
        let action: Action
        switch kind {
        case "drop":
            let packet = try required("packet")
            var times: Int? = 1
            if let text = take("times") {
                times = text == "all" ? nil : try EmulationUnits.count(text, setting: "drop times")
            }
            action = .drop(packet: packet, times: times)
        case "delay":
            let packet = try required("packet")
            guard let text = take("by") else { throw FabricError(.invalidArgument, "fault rule 'delay' needs by=DURATION (for example by=200us)") }
            let by = try EmulationUnits.duration(text, setting: "delay by")
            guard by <= LinkShape.latencyLimit else { throw FabricError(.invalidArgument, "fault rule 'delay': by=\(text) is longer than 10 s") }
            action = .delay(packet: packet, by: by)
        case "rnr":
            let sends = try required("sends")
            var after = 0
            if let text = take("after") {
                guard let value = Int(text), value >= 0 else {
                    throw FabricError(.invalidArgument, "fault rule 'rnr': after '\(text)' is not a whole number")
                }
                after = value
            }
            action = .receiverNotReady(sends: sends, after: after)
        case "access-error":
            action = .accessError(request: try required("request"))
        case "error":
            action = .forceError(post: try required("post"))
        case "vanish":
            action = .vanish(packet: try required("packet"))
        case "loss":
            guard let text = take("rate") else { throw FabricError(.invalidArgument, "fault rule 'loss' needs rate=P% (for example rate=0.1%)") }
            var seed: UInt64 = 1
            if let seedText = take("seed") {
                guard let value = UInt64(seedText) else {
                    throw FabricError(.invalidArgument, "fault rule 'loss': seed '\(seedText)' is not a whole number from 0")
                }
                seed = value
            }
            action = .loss(probability: try lossProbability(text), seed: seed)
        default:
            throw FabricError(.invalidArgument, "unknown fault '\(kind)' (known: drop, delay, rnr, access-error, error, vanish, loss)")
        }
        if let key = remaining.keys.sorted().first {
            throw FabricError(.invalidArgument, "fault rule '\(kind)' has an unknown setting '\(key)'")
        }
        return Rule(action, queuePair: queuePair)
    }

    /// `0.1%` or a fraction such as `0.001`: at least 0 and below 1 (a link
    /// that loses everything is `drop ... times=all` or `vanish`).
    private static func lossProbability(_ text: String) throws(FabricError) -> Double {
        let percent = text.hasSuffix("%")
        guard let number = Double(percent ? String(text.dropLast()) : text), number.isFinite else {
            throw FabricError(.invalidArgument, "fault rule 'loss': rate '\(text)' is not a number or percentage (for example 0.1%)")
        }
        let probability = percent ? number / 100 : number
        guard probability >= 0, probability < 1 else {
            throw FabricError(.invalidArgument, "fault rule 'loss': rate '\(text)' must be at least 0 and below 100%")
        }
        return probability
    }

    /// The script FABRIC_TCP_FAULTS holds, or none.
    public static func fromEnvironment(_ environment: [String: String] = ProcessEnvironment.variables()) throws(FabricError) -> FaultScript {
        try EmulationUnits.setting(environmentVariable, in: environment, otherwise: .none, parse: parse)
    }

    public var description: String {
        guard !rules.isEmpty else { return "no faults" }
        return rules.map { rule in
            var text: String
            switch rule.action {
            case .drop(let packet, let times): text = "drop packet=\(packet) times=\(times.map(String.init) ?? "all")"
            case .delay(let packet, let by): text = "delay packet=\(packet) by=\(EmulationUnits.formatDuration(by).replacingSpaces)"
            case .receiverNotReady(let sends, let after): text = "rnr sends=\(sends) after=\(after)"
            case .accessError(let request): text = "access-error request=\(request)"
            case .forceError(let post): text = "error post=\(post)"
            case .vanish(let packet): text = "vanish packet=\(packet)"
            case .loss(let probability, let seed): text = "loss rate=\(probability * 100)% seed=\(seed)"
            }
            if let queuePair = rule.queuePair { text += " qp=\(queuePair)" }
            return text
        }.joined(separator: "; ")
    }
}

extension String {
    fileprivate var replacingSpaces: String { split(separator: " ").joined() }
}
