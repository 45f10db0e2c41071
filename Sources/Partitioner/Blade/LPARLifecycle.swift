/// The states of an LPAR.
public enum LPARState: String, Sendable, Equatable, CaseIterable, Codable {
    case defined, activating, running, deactivating, stopped, failed, migrating
}

/// What happens to an LPAR; each event moves it along the transition table or is refused.
public enum LPAREvent: Equatable, Sendable, CustomStringConvertible {
    case activate
    case activated
    case deactivate
    case deactivated
    /// The LPAR's guest or its L0 process failed (triple fault, internal error, crash).
    case fault(reason: String)
    case startMigration
    /// A shell LPAR is made to receive a migrating partition.
    case receiveMigration
    case migrationCompleted
    case migrationAborted
    /// An operator clears a failure; the LPAR is stopped and may be activated again.
    case reset

    public var name: String {
        switch self {
        case .activate: return "activate"
        case .activated: return "activated"
        case .deactivate: return "deactivate"
        case .deactivated: return "deactivated"
        case .fault: return "fault"
        case .startMigration: return "start-migration"
        case .receiveMigration: return "receive-migration"
        case .migrationCompleted: return "migration-completed"
        case .migrationAborted: return "migration-aborted"
        case .reset: return "reset"
        }
    }

    public var description: String {
        if case .fault(let reason) = self { return "fault(\(reason))" }
        return name
    }
}

/// The explicit transition table of the LPAR lifecycle.
public enum LPARLifecycle {
    /// (from, event name) -> to. Anything absent is a refused transition.
    public static let table: [LPARState: [String: LPARState]] = [
        .defined: ["activate": .activating, "receive-migration": .migrating],
        .activating: ["activated": .running, "fault": .failed],
        .running: [
            "deactivate": .deactivating, "fault": .failed, "start-migration": .migrating,
        ],
        .deactivating: ["deactivated": .stopped, "fault": .failed],
        // A migrating LPAR is the source (its guest runs, then is paused) or the target's
        // shell (it receives): the source resumes on an abort; the target starts from what it
        // received on `activate`; either is stopped by `deactivate` (the source once the
        // target has it, the target's shell when the migration rolls back).
        .migrating: [
            "migration-completed": .stopped, "migration-aborted": .running, "fault": .failed,
            "activate": .activating, "deactivate": .deactivating,
        ],
        .stopped: ["activate": .activating],
        .failed: ["reset": .stopped],
    ]

    /// The state after `event`, or nil when the table has no such transition.
    public static func next(from state: LPARState, on event: LPAREvent) -> LPARState? {
        table[state]?[event.name]
    }

    /// States in which an LPAR holds no running guest and may be removed from the blade.
    public static let removable: Set<LPARState> = [.defined, .stopped, .failed]
}
