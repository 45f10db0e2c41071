/// When a pre-copy migration switches over, throttles the partition, or gives up: the pure
/// half of the copy loop. The loop sends the dirty pages of each round, measures the round,
/// and asks what next:
///
/// - the link's rate is measured on every round (bytes sent / the round's time);
/// - when what is left to send fits the downtime budget at that rate, it switches over;
/// - when the guest dirties memory faster than the link carries it, its vCPUs are throttled
///   (as QEMU's auto-converge does: a first step, then more each round, up to a cap);
/// - when the remaining bytes have not reached a new low for `stallRounds` rounds, progress
///   has stalled: it switches over at the next round that comes back within
///   `stallTolerance` of the lowest remainder seen (a local minimum, as KubeVirt's stall
///   detection does), accepting a longer pause;
/// - when no new low came for `progressTimeoutMillis`, or after `maxRounds`, it gives up and
///   the migration rolls back (the partition keeps running on its source).
public struct PreCopyPolicy: Sendable, Hashable {
    /// The longest pause of the partition the switchover may cause.
    public var maxDowntimeMillis: Double
    /// Rounds without a new low of the remaining bytes before progress counts as stalled.
    public var stallRounds: Int
    /// Once stalled, a round within this fraction above the lowest remainder switches over.
    public var stallTolerance: Double
    /// Time without a new low of the remaining bytes after which the migration gives up.
    public var progressTimeoutMillis: Double
    public var maxRounds: Int
    /// The first throttle step and each further one, in percent of the vCPUs' time taken away.
    public var throttleInitialPercent: Int
    public var throttleStepPercent: Int
    public var throttleMaxPercent: Int

    public init(maxDowntimeMillis: Double = 50, stallRounds: Int = 4, stallTolerance: Double = 0.1, progressTimeoutMillis: Double = 150_000, maxRounds: Int = 60,
                throttleInitialPercent: Int = 20, throttleStepPercent: Int = 10, throttleMaxPercent: Int = 90) {
        self.maxDowntimeMillis = maxDowntimeMillis
        self.stallRounds = stallRounds
        self.stallTolerance = stallTolerance
        self.progressTimeoutMillis = progressTimeoutMillis
        self.maxRounds = maxRounds
        self.throttleInitialPercent = throttleInitialPercent
        self.throttleStepPercent = throttleStepPercent
        self.throttleMaxPercent = throttleMaxPercent
    }
}

/// One round of the copy, as the loop measured it.
public struct PreCopyRound: Sendable, Hashable {
    public var bytesSent: UInt64
    public var millis: Double
    /// Dirty bytes the round left to send (pages written while it ran).
    public var remainingBytes: UInt64
    /// When the round ended, in milliseconds since the copy started.
    public var endedAtMillis: Double

    public init(bytesSent: UInt64, millis: Double, remainingBytes: UInt64, endedAtMillis: Double) {
        self.bytesSent = bytesSent
        self.millis = millis
        self.remainingBytes = remainingBytes
        self.endedAtMillis = endedAtMillis
    }

    /// The link's rate in this round, bytes per millisecond (nil for an empty or instant round).
    public var bytesPerMillisecond: Double? {
        millis > 0 && bytesSent > 0 ? Double(bytesSent) / millis : nil
    }

    /// How fast the guest dirtied memory during the round, bytes per millisecond.
    public var dirtyBytesPerMillisecond: Double { millis > 0 ? Double(remainingBytes) / millis : 0 }
}

/// What the copy loop does next.
public enum PreCopyDecision: Sendable, Hashable, CustomStringConvertible {
    /// Another round, with the partition's vCPUs throttled by this percent (0: not at all).
    case anotherRound(throttlePercent: Int)
    /// Pause the source and send the rest; `expectedDowntimeMillis` at the measured rate.
    case switchover(expectedDowntimeMillis: Double, reason: String)
    /// Give up: roll back, the partition runs on where it is.
    case abort(reason: String)

    public var description: String {
        switch self {
        case .anotherRound(let throttle): return throttle == 0 ? "another round" : "another round, vCPUs throttled \(throttle) %"
        case .switchover(let downtime, let reason): return "switch over (about \(Int(downtime.rounded())) ms): \(reason)"
        case .abort(let reason): return "abort: \(reason)"
        }
    }
}

/// The copy loop's state across rounds: fed each round's measurement, it decides.
public struct PreCopyConvergence: Sendable, Hashable {
    public let policy: PreCopyPolicy
    public private(set) var rounds: [PreCopyRound] = []
    public private(set) var throttlePercent = 0
    /// The lowest remainder seen, and when.
    public private(set) var lowestRemaining: UInt64?
    public private(set) var lowestAtMillis: Double = 0
    public private(set) var roundsSinceLowest = 0

    public init(policy: PreCopyPolicy) { self.policy = policy }

    /// The link's rate, from the latest round that sent anything (bytes per millisecond).
    public var linkRate: Double? { rounds.reversed().lazy.compactMap(\.bytesPerMillisecond).first }

    public mutating func decide(after round: PreCopyRound) -> PreCopyDecision {
        rounds.append(round)
        if let lowest = lowestRemaining, round.remainingBytes >= lowest {
            roundsSinceLowest += 1
        } else {
            lowestRemaining = round.remainingBytes
            lowestAtMillis = round.endedAtMillis
            roundsSinceLowest = 0
        }
        guard let rate = linkRate else {
            // Nothing measurable went over the link yet: only an empty remainder is done.
            if round.remainingBytes == 0 { return .switchover(expectedDowntimeMillis: 0, reason: "nothing left to send") }
            return round.endedAtMillis - lowestAtMillis > policy.progressTimeoutMillis
                ? .abort(reason: "nothing could be sent for \(Int(policy.progressTimeoutMillis / 1_000)) s")
                : .anotherRound(throttlePercent: throttlePercent)
        }
        let downtime = Double(round.remainingBytes) / rate
        if downtime <= policy.maxDowntimeMillis {
            return .switchover(expectedDowntimeMillis: downtime, reason: "the \(Self.mib(round.remainingBytes)) left fit the \(Int(policy.maxDowntimeMillis)) ms budget")
        }
        if round.endedAtMillis - lowestAtMillis > policy.progressTimeoutMillis {
            return .abort(reason: "no progress for \(Int(policy.progressTimeoutMillis / 1_000)) s: \(Self.mib(lowestRemaining ?? 0)) was the least left to send")
        }
        let lowest = Double(lowestRemaining ?? 0)
        if roundsSinceLowest >= policy.stallRounds && Double(round.remainingBytes) <= lowest * (1 + policy.stallTolerance) {
            return .switchover(expectedDowntimeMillis: downtime,
                               reason: "progress stalled; switching over near the lowest remainder, \(Self.mib(round.remainingBytes))")
        }
        if rounds.count >= policy.maxRounds {
            return .abort(reason: "\(policy.maxRounds) rounds without converging")
        }
        // The guest dirties faster than the link carries: throttle it more.
        if round.dirtyBytesPerMillisecond >= rate {
            throttlePercent = throttlePercent == 0
                ? min(policy.throttleInitialPercent, policy.throttleMaxPercent)
                : min(throttlePercent + policy.throttleStepPercent, policy.throttleMaxPercent)
        }
        return .anotherRound(throttlePercent: throttlePercent)
    }

    static func mib(_ bytes: UInt64) -> String {
        let tenths = (Double(bytes) / 1_048_576 * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10) MiB"
    }
}
