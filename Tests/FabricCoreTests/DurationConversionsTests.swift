import FabricCore
import Testing

@Suite("durations in the units system calls and reports take")
struct DurationConversionsTests {
    @Test("whole nanoseconds round down, are 0 below zero and saturate past UInt64")
    func nanoseconds() {
        #expect(Duration.nanoseconds(1500).wholeNanoseconds == 1500)
        #expect((Duration.seconds(3) + .nanoseconds(7)).wholeNanoseconds == 3_000_000_007)
        #expect(Duration.seconds(-1).wholeNanoseconds == 0)
        #expect(Duration.nanoseconds(-5).wholeNanoseconds == 0)
        #expect(Duration.seconds(Int64.max).wholeNanoseconds == UInt64.max)
        // Less than a nanosecond is none.
        #expect((Duration.nanoseconds(2) + .init(secondsComponent: 0, attosecondsComponent: 999_999_999)).wholeNanoseconds == 2)
    }

    @Test("whole milliseconds round up, are 0 below zero and stop at Int32.max")
    func milliseconds() {
        #expect(Duration.milliseconds(5).wholeMillisecondsRoundedUp == 5)
        #expect(Duration.microseconds(5001).wholeMillisecondsRoundedUp == 6)
        #expect(Duration.nanoseconds(1).wholeMillisecondsRoundedUp == 1)
        #expect(Duration.zero.wholeMillisecondsRoundedUp == 0)
        #expect(Duration.milliseconds(-3).wholeMillisecondsRoundedUp == 0)
        #expect(Duration.seconds(10_000_000).wholeMillisecondsRoundedUp == Int32.max)
    }

    @Test("floating-point microseconds, nanoseconds and seconds")
    func floatingPoint() {
        let duration = Duration.seconds(2) + .microseconds(250)
        #expect(duration.inMicroseconds == 2_000_250)
        #expect(duration.inNanoseconds == 2_000_250_000)
        #expect(abs(duration.inSeconds - 2.00025) < 1e-12)
        #expect(Duration.milliseconds(-1500).inSeconds == -1.5)
    }
}
