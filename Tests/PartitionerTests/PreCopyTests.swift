import Partitioner
import Testing

/// The pre-copy loop's decisions, round by round.
struct PreCopyTests {
    static let mib: UInt64 = 1 << 20

    /// A round at `rate` MiB/s that sent `sent` MiB and left `left` MiB, ending at `at` ms.
    static func round(sent: UInt64, left: UInt64, ms: Double, at: Double) -> PreCopyRound {
        PreCopyRound(bytesSent: sent * mib, millis: ms, remainingBytes: left * mib, endedAtMillis: at)
    }

    @Test func itSwitchesOverWhenTheRestFitsTheDowntimeBudget() {
        var copy = PreCopyConvergence(policy: PreCopyPolicy(maxDowntimeMillis: 50))
        // 1 GiB in 1 s: 1 MiB per ms. 200 MiB left: 200 ms, another round.
        #expect(copy.decide(after: Self.round(sent: 1024, left: 200, ms: 1_000, at: 1_000)) == .anotherRound(throttlePercent: 0))
        // 200 MiB in 200 ms, 40 MiB left: 40 ms, within 50.
        guard case .switchover(let downtime, _) = copy.decide(after: Self.round(sent: 200, left: 40, ms: 200, at: 1_200)) else {
            Issue.record("expected a switchover")
            return
        }
        #expect(downtime == 40)
    }

    @Test func aGuestThatDirtiesFasterThanTheLinkIsThrottledMoreEachRound() {
        var copy = PreCopyConvergence(policy: PreCopyPolicy(maxDowntimeMillis: 50, stallRounds: 100))
        var at = 0.0
        var throttles: [Int] = []
        for _ in 0..<10 {
            at += 100
            // 100 MiB sent in 100 ms (1 MiB/ms), 150 MiB dirtied meanwhile: faster than the link.
            if case .anotherRound(let throttle) = copy.decide(after: Self.round(sent: 100, left: 150, ms: 100, at: at)) { throttles.append(throttle) }
        }
        #expect(throttles == [20, 30, 40, 50, 60, 70, 80, 90, 90, 90])
    }

    @Test func aStalledCopySwitchesOverNearItsLowestRemainder() {
        var copy = PreCopyConvergence(policy: PreCopyPolicy(maxDowntimeMillis: 5, stallRounds: 3))
        let lefts: [UInt64] = [400, 300, 320, 350, 340, 310]
        var decisions: [PreCopyDecision] = []
        for (index, left) in lefts.enumerated() {
            decisions.append(copy.decide(after: Self.round(sent: 100, left: left, ms: 100, at: Double(index + 1) * 100)))
        }
        // 300 is the low; 320, 350, 340 make three rounds without a new one; 310 is within 10 %.
        #expect(decisions.dropLast().allSatisfy { if case .anotherRound = $0 { true } else { false } })
        guard case .switchover(let downtime, let reason) = decisions.last else {
            Issue.record("expected a switchover, got \(decisions.last.map { "\($0)" } ?? "nothing")")
            return
        }
        #expect(downtime == 310)
        #expect(reason.contains("stalled"))
    }

    @Test func noProgressForTheTimeoutAborts() {
        var copy = PreCopyConvergence(policy: PreCopyPolicy(maxDowntimeMillis: 5, stallRounds: 1_000, progressTimeoutMillis: 1_000))
        _ = copy.decide(after: Self.round(sent: 100, left: 300, ms: 100, at: 100))
        guard case .anotherRound = copy.decide(after: Self.round(sent: 100, left: 310, ms: 100, at: 900)) else {
            Issue.record("gave up before the timeout")
            return
        }
        guard case .abort(let reason) = copy.decide(after: Self.round(sent: 100, left: 305, ms: 100, at: 1_200)) else {
            Issue.record("expected an abort")
            return
        }
        #expect(reason.contains("no progress for 1 s"))
    }

    @Test func tooManyRoundsAbortAndNothingLeftSwitchesOverAtOnce() {
        var copy = PreCopyConvergence(policy: PreCopyPolicy(maxDowntimeMillis: 5, stallRounds: 1_000, maxRounds: 3))
        var left: UInt64 = 1_000
        var last: PreCopyDecision?
        for index in 1...3 {
            left -= 10
            last = copy.decide(after: Self.round(sent: 100, left: left, ms: 100, at: Double(index) * 100))
        }
        #expect(last == .abort(reason: "3 rounds without converging"))
        var empty = PreCopyConvergence(policy: PreCopyPolicy())
        #expect(empty.decide(after: PreCopyRound(bytesSent: 0, millis: 0, remainingBytes: 0, endedAtMillis: 0))
                == .switchover(expectedDowntimeMillis: 0, reason: "nothing left to send"))
    }
}
