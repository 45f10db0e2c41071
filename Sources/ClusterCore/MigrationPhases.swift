/// Where a live migration of a partition stands. Phases only move forward:
///
///     pending -> target-prepared -> pre-copy -> switchover -> resumed-on-target
///             -> source-released -> succeeded
///
/// and from any phase before `resumed-on-target`, a failure or (before `switchover`) a
/// user's cancel leads to `rolling-back` and then `failed`, with the partition running on its
/// source as before. `resumed-on-target` is the decision: the transaction that records it
/// moves the partition's claim to the target, and only then is the target told to run; so a
/// restart of the controller before it rolls back (the target never ran) and one after it
/// rolls forward (the target runs, the source is released), and the partition is never
/// running on two blades nor on none.
public enum MigrationPhase: String, Sendable, Hashable, Codable, CaseIterable {
    /// Accepted; nothing reserved yet.
    case pending
    /// The target's claim is taken, its shell LPAR exists, its memory is reserved.
    case targetPrepared = "target-prepared"
    /// Memory is copied in rounds while the partition runs on the source.
    case preCopy = "pre-copy"
    /// The source is paused; the last dirty pages and all state go to the target, which says
    /// whether it can run.
    case switchover
    /// Decided: the claim is the target's; the target is told to run.
    case resumedOnTarget = "resumed-on-target"
    /// The source's LPAR is gone and its resources free.
    case sourceReleased = "source-released"
    case succeeded
    /// The target's shell and claim are being taken away; the source runs on.
    case rollingBack = "rolling-back"
    case failed

    /// Nothing more happens to the migration.
    public var isFinal: Bool { self == .succeeded || self == .failed }

    /// The partition's claim is on the target (the decision is made).
    public var targetOwns: Bool { [.resumedOnTarget, .sourceReleased, .succeeded].contains(self) }

    /// A failure here rolls the migration back (the source still owns the partition).
    public var rollsBackOnFailure: Bool { [.pending, .targetPrepared, .preCopy, .switchover].contains(self) }

    /// A user may cancel it here (before the source is paused).
    public var cancellable: Bool { [.pending, .targetPrepared, .preCopy].contains(self) }

    /// What a controller that starts again finds to do about a migration in this phase.
    public var afterRestart: MigrationRestart {
        if isFinal { return .nothing }
        if self == .rollingBack || rollsBackOnFailure { return .rollBack }
        return .rollForward
    }
}

/// What a restarted controller does with a migration it finds in the store.
public enum MigrationRestart: String, Sendable, Hashable {
    /// Take the target's shell and claim away; the source runs on.
    case rollBack = "roll back"
    /// Finish it: the target runs, the source is released.
    case rollForward = "roll forward"
    case nothing
}

/// What moves a migration from one phase to the next.
public enum MigrationEvent: Sendable, Hashable, CustomStringConvertible {
    /// The target took its claim, made the shell LPAR and reserved the memory.
    case targetPrepared
    /// The first round of memory started.
    case copyStarted
    /// A round of pre-copy ended.
    case roundDone
    /// The source is paused for the last round.
    case switchoverStarted
    /// The target has everything and can run: the decision is committed.
    case decided
    /// The source's LPAR is removed and its resources are free.
    case sourceReleased
    /// The target's shell and claim are gone, after a failure or a cancel.
    case rolledBack
    case completed
    /// Something failed (a link, an agent, a checksum, the progress timeout).
    case failure(String)
    /// The user asked to stop it.
    case cancel

    public var description: String {
        switch self {
        case .targetPrepared: return "target prepared"
        case .copyStarted: return "copy started"
        case .roundDone: return "round done"
        case .switchoverStarted: return "switchover started"
        case .decided: return "decided for the target"
        case .sourceReleased: return "source released"
        case .rolledBack: return "rolled back"
        case .completed: return "completed"
        case .failure(let reason): return "failure: \(reason)"
        case .cancel: return "cancel"
        }
    }
}

/// Why an event does not apply to a migration in its phase.
public struct MigrationTransitionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var phase: MigrationPhase
    public var event: MigrationEvent

    public var description: String {
        switch event {
        case .cancel where phase.isFinal || phase == .rollingBack:
            return "the migration is \(phase.rawValue): there is nothing left to cancel"
        case .cancel where phase.targetOwns || phase == .switchover:
            return "the migration is in phase \(phase.rawValue): the source is paused or gone, so it can no longer be cancelled; it finishes on the target"
        default:
            return "a migration in phase \(phase.rawValue) cannot take '\(event)'"
        }
    }
}

/// The transition table of `MigrationPhase`.
public enum MigrationPhases {
    /// The phase after `event`, or why the event does not apply. A failure after the
    /// decision does not roll back: the migration stays where it is and its step is retried.
    public static func next(_ phase: MigrationPhase, on event: MigrationEvent) -> Result<MigrationPhase, MigrationTransitionError> {
        let refused = Result<MigrationPhase, MigrationTransitionError>.failure(MigrationTransitionError(phase: phase, event: event))
        switch (phase, event) {
        case (.pending, .targetPrepared): return .success(.targetPrepared)
        case (.targetPrepared, .copyStarted): return .success(.preCopy)
        case (.preCopy, .roundDone): return .success(.preCopy)
        case (.preCopy, .switchoverStarted): return .success(.switchover)
        case (.switchover, .decided): return .success(.resumedOnTarget)
        case (.resumedOnTarget, .sourceReleased): return .success(.sourceReleased)
        case (.sourceReleased, .completed): return .success(.succeeded)
        case (.rollingBack, .rolledBack): return .success(.failed)
        case (_, .failure) where phase.rollsBackOnFailure: return .success(.rollingBack)
        case (_, .failure) where phase.targetOwns && !phase.isFinal: return .success(phase)
        case (.rollingBack, .failure): return .success(.rollingBack)
        case (_, .cancel) where phase.cancellable: return .success(.rollingBack)
        default: return refused
        }
    }
}
