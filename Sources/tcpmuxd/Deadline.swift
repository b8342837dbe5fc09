// Time on the monotonic clock.
import CSystem

/// A point in time on the monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`),
/// so that a change of the wall clock cannot stretch or cut a deadline.
struct Deadline {
    private let nanoseconds: Int64

    static var now: Deadline { Deadline(nanoseconds: monotonicNanoseconds()) }

    static func after(seconds: Int) -> Deadline { after(milliseconds: seconds * 1000) }

    static func after(milliseconds: Int) -> Deadline {
        Deadline(nanoseconds: monotonicNanoseconds() + Int64(milliseconds) * 1_000_000)
    }

    private static func monotonicNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// Milliseconds since this instant, for the log.
    var elapsedMilliseconds: Int64 { (Deadline.monotonicNanoseconds() - nanoseconds) / 1_000_000 }

    /// What is left, in whole milliseconds rounded up, as poll(2) takes it; 0 once passed.
    var remainingMilliseconds: Int32 {
        let left = nanoseconds - Deadline.monotonicNanoseconds()
        return left <= 0 ? 0 : Int32(clamping: (left + 999_999) / 1_000_000)
    }

    var hasPassed: Bool { remainingMilliseconds == 0 }
}
