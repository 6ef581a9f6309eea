/// A `Duration` in the units system calls, clocks and reports take.
///
/// `Duration` keeps seconds and attoseconds; each of these turns the pair
/// into one number the same way everywhere, with the rounding and the limits
/// named in the property.
extension Duration {
    /// Whole nanoseconds, rounded down; 0 for a negative duration and
    /// `UInt64.max` past about 584 years (a deadline that never comes).
    @inlinable
    public var wholeNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let (scaled, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return .max }
        let (total, carry) = scaled.addingReportingOverflow(UInt64(max(0, attoseconds) / 1_000_000_000))
        return carry ? .max : total
    }

    /// Whole milliseconds, rounded up (so that a wait is never shorter than
    /// asked); 0 for a negative duration, at most `Int32.max` (what poll(2)
    /// and epoll_wait(2) take).
    @inlinable
    public var wholeMillisecondsRoundedUp: Int32 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        guard seconds < Int64(Int32.max / 1000) else { return .max }
        return Int32(seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    /// Microseconds as a floating-point number (for reports and arithmetic
    /// on rates).
    @inlinable
    public var inMicroseconds: Double {
        Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12
    }

    /// Nanoseconds as a floating-point number.
    @inlinable
    public var inNanoseconds: Double {
        Double(components.seconds) * 1e9 + Double(components.attoseconds) / 1e9
    }

    /// Seconds as a floating-point number.
    @inlinable
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
