import FabricCore

/// The link the software NIC pretends to sit on: a bandwidth (a token
/// bucket per connection) and an added one-way latency. Applied inside the
/// emulated card, to each queue pair's outgoing frames; no tc, no root.
///
///     FABRIC_TCP_LINK="rate=25Gbit/s,latency=2us"
///
/// docs/emulation.md says what is shaped and how precisely.
public struct LinkShape: Hashable, Sendable, CustomStringConvertible {
    /// Bits per second a queue pair may send; nil: as fast as the socket goes.
    public var bitsPerSecond: Double?
    /// Added to every frame's trip in each direction.
    public var latency: Duration
    /// Bytes the bucket holds when full (how far a sender that was idle may
    /// run ahead of the rate); nil: the larger of 64 KiB and 100 us at the rate.
    public var burstBytes: Int?

    public static let environmentVariable = "FABRIC_TCP_LINK"
    public static let unshaped = LinkShape()

    /// The highest rate and latency the emulation accepts.
    public static let rateRange: ClosedRange<Double> = 1e3...1e13
    public static let latencyLimit: Duration = .seconds(10)

    public init(bitsPerSecond: Double? = nil, latency: Duration = .zero, burstBytes: Int? = nil) {
        self.bitsPerSecond = bitsPerSecond
        self.latency = latency
        self.burstBytes = burstBytes
    }

    public var isShaped: Bool { bitsPerSecond != nil || latency > .zero }

    /// Checks the values; the error names the setting.
    public func validate() throws(FabricError) {
        if let bitsPerSecond {
            guard bitsPerSecond.isFinite, Self.rateRange.contains(bitsPerSecond) else {
                throw FabricError(.invalidArgument, "link rate \(bitsPerSecond) bit/s is outside 1 kbit/s – 10 Tbit/s")
            }
        }
        guard latency >= .zero, latency <= Self.latencyLimit else {
            throw FabricError(.invalidArgument, "link latency \(latency) is outside 0 – 10 s")
        }
        if let burstBytes {
            guard (1...(1 << 30)).contains(burstBytes) else {
                throw FabricError(.invalidArgument, "link burst \(burstBytes) bytes is outside 1 B – 1 GiB")
            }
        }
    }

    /// Parses `rate=25Gbit/s,latency=2us,burst=256K` (any subset, in any
    /// order; commas or spaces between settings).
    public static func parse(_ text: String) throws(FabricError) -> LinkShape {
        var shape = LinkShape()
        for setting in text.split(whereSeparator: { $0 == "," || $0 == " " }) {
            let parts = setting.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else {
                throw FabricError(.invalidArgument, "link setting '\(setting)' is not key=value (keys: rate, latency, burst)")
            }
            switch parts[0] {
            case "rate": shape.bitsPerSecond = try EmulationUnits.rate(parts[1], setting: "rate")
            case "latency": shape.latency = try EmulationUnits.duration(parts[1], setting: "latency")
            case "burst": shape.burstBytes = try EmulationUnits.byteCount(parts[1], setting: "burst")
            default:
                throw FabricError(.invalidArgument, "unknown link setting '\(parts[0])' (keys: rate, latency, burst)")
            }
        }
        try shape.validate()
        return shape
    }

    /// The shape FABRIC_TCP_LINK asks for, or none.
    public static func fromEnvironment(_ environment: [String: String] = ProcessEnvironment.variables()) throws(FabricError) -> LinkShape {
        try EmulationUnits.setting(environmentVariable, in: environment, otherwise: .unshaped, parse: parse)
    }

    public var description: String {
        guard isShaped else { return "unshaped" }
        var parts: [String] = []
        if let bitsPerSecond { parts.append("rate \(EmulationUnits.formatRate(bitsPerSecond))") }
        if latency > .zero { parts.append("+\(EmulationUnits.formatDuration(latency)) one way") }
        return parts.joined(separator: ", ")
    }
}

/// Numbers with units in emulation settings.
enum EmulationUnits {
    /// The setting environment variable `variable` holds, parsed, or
    /// `otherwise` when it is unset or empty; a parse error names the
    /// variable and its value.
    static func setting<Value>(
        _ variable: String, in environment: [String: String], otherwise: Value,
        parse: (String) throws(FabricError) -> Value
    ) throws(FabricError) -> Value {
        guard let value = environment[variable], !value.isEmpty else { return otherwise }
        do {
            return try parse(value)
        } catch {
            throw FabricError(error.kind, "\(variable)=\(value): \(error.message)")
        }
    }

    /// `25Gbit/s`, `25Gb/s`, `25Gbps`, `25G` (bits); `3GB/s`, `3GBps` (bytes);
    /// a bare number is bits per second.
    static func rate(_ text: String, setting: String) throws(FabricError) -> Double {
        let (number, unit) = split(text)
        guard let value = Double(number), value.isFinite, value > 0 else {
            throw FabricError(.invalidArgument, "\(setting) '\(text)' is not a positive number with a unit like 25Gbit/s or 3GB/s")
        }
        var rest = Substring(unit)
        var scale = 1.0
        if let first = rest.first, let prefix = ["k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12][first] {
            scale = prefix
            rest = rest.dropFirst()
        }
        let bits: Double
        switch rest {
        case "", "b", "bit", "bit/s", "b/s", "bps": bits = 1
        case "B", "B/s", "Bps", "byte/s": bits = 8
        default:
            throw FabricError(.invalidArgument, "\(setting) '\(text)' has an unknown unit '\(unit)' (use bit/s or B/s with k, M, G or T)")
        }
        return value * scale * bits
    }

    /// `2us`, `2µs`, `1.5ms`, `300ns`, `1s`.
    static func duration(_ text: String, setting: String) throws(FabricError) -> Duration {
        let (number, unit) = split(text)
        guard let value = Double(number), value.isFinite, value >= 0 else {
            throw FabricError(.invalidArgument, "\(setting) '\(text)' is not a non-negative number with a unit (ns, us, ms, s)")
        }
        let nanoseconds: Double
        switch unit {
        case "ns": nanoseconds = value
        case "us", "µs": nanoseconds = value * 1e3
        case "ms": nanoseconds = value * 1e6
        case "s": nanoseconds = value * 1e9
        default:
            throw FabricError(.invalidArgument, "\(setting) '\(text)' needs a unit: ns, us, ms or s")
        }
        guard nanoseconds <= 1e12 else {
            throw FabricError(.invalidArgument, "\(setting) '\(text)' is longer than 1000 s")
        }
        return .nanoseconds(Int64(nanoseconds.rounded()))
    }

    /// `4096`, `64K`, `1M` (binary multiples).
    static func byteCount(_ text: String, setting: String) throws(FabricError) -> Int {
        guard let bytes = ByteCount.parse(text), bytes > 0 else {
            throw FabricError(.invalidArgument, "\(setting) '\(text)' is not a positive whole number of bytes with an optional unit K, M or G")
        }
        return bytes
    }

    /// A positive whole number (a count or an ordinal).
    static func count(_ text: String, setting: String) throws(FabricError) -> Int {
        guard let value = Int(text), value >= 1, value <= 1 << 40 else {
            throw FabricError(.invalidArgument, "\(setting) '\(text)' is not a whole number from 1")
        }
        return value
    }

    private static func split(_ text: String) -> (String, String) {
        let digits = text.prefix { $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" || $0 == "e" }
        return (String(digits), String(text.dropFirst(digits.count)))
    }

    static func formatRate(_ bitsPerSecond: Double) -> String {
        for (scale, name) in [(1e12, "Tbit/s"), (1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")] where bitsPerSecond >= scale {
            return "\(trimmed(bitsPerSecond / scale)) \(name)"
        }
        return "\(trimmed(bitsPerSecond)) bit/s"
    }

    static func formatDuration(_ duration: Duration) -> String {
        let nanoseconds = duration.inNanoseconds
        if nanoseconds >= 1e9 { return "\(trimmed(nanoseconds / 1e9)) s" }
        if nanoseconds >= 1e6 { return "\(trimmed(nanoseconds / 1e6)) ms" }
        if nanoseconds >= 1e3 { return "\(trimmed(nanoseconds / 1e3)) us" }
        return "\(trimmed(nanoseconds)) ns"
    }

    private static func trimmed(_ value: Double) -> String {
        let rounded = (value * 1000).rounded() / 1000
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
