/// How a blade's agent is doing, from its heartbeats.
public enum BladeHealth: String, Sendable, Hashable, Codable {
    case ready, suspect, unreachable
}

/// Heartbeat leases: a blade is `ready` while heartbeats arrive, `suspect` after
/// `suspectAfterMillis` without one, `unreachable` after `unreachableAfterMillis`. Times are
/// monotonic milliseconds supplied by the caller (pure: no clock here).
public struct BladeLiveness: Sendable, Equatable {
    public let suspectAfterMillis: UInt64
    public let unreachableAfterMillis: UInt64
    public private(set) var lastSeen: [String: UInt64] = [:]
    /// Heartbeats (and registrations) heard from each blade since it was first tracked.
    public private(set) var heartbeats: [String: UInt64] = [:]
    /// The health last reported for each blade, so that each change is reported once.
    public private(set) var reported: [String: BladeHealth] = [:]

    public init(suspectAfterMillis: UInt64, unreachableAfterMillis: UInt64) {
        self.suspectAfterMillis = suspectAfterMillis
        self.unreachableAfterMillis = max(unreachableAfterMillis, suspectAfterMillis)
    }

    /// A blade known from the store, not heard from yet in this run: it gets one lease from
    /// `now` before it counts as suspect.
    public mutating func track(_ blade: String, since now: UInt64) {
        if lastSeen[blade] == nil {
            lastSeen[blade] = now
            reported[blade] = .ready
        }
    }

    public mutating func forget(_ blade: String) {
        lastSeen[blade] = nil
        reported[blade] = nil
        heartbeats[blade] = nil
    }

    /// A heartbeat (or registration) arrived; returns the change of health, if any.
    public mutating func heard(from blade: String, at now: UInt64) -> (from: BladeHealth?, to: BladeHealth)? {
        lastSeen[blade] = max(lastSeen[blade] ?? 0, now)
        heartbeats[blade, default: 0] &+= 1
        let before = reported[blade]
        reported[blade] = .ready
        return before == .ready ? nil : (before, .ready)
    }

    public func health(of blade: String, at now: UInt64) -> BladeHealth {
        guard let seen = lastSeen[blade] else { return .unreachable }
        let silent = now >= seen ? now - seen : 0
        if silent >= unreachableAfterMillis { return .unreachable }
        if silent >= suspectAfterMillis { return .suspect }
        return .ready
    }

    /// The blades whose health changed since the last evaluation.
    public mutating func evaluate(at now: UInt64) -> [(blade: String, from: BladeHealth, to: BladeHealth)] {
        var changes: [(String, BladeHealth, BladeHealth)] = []
        for blade in lastSeen.keys.sorted() {
            let health = health(of: blade, at: now)
            let before = reported[blade] ?? .ready
            if health != before {
                reported[blade] = health
                changes.append((blade, before, health))
            }
        }
        return changes
    }
}

/// What an agent reports about one of its LPARs.
public struct LPARReport: Sendable, Hashable {
    /// The LPAR's state on its blade (the wire's `ReportedLPARState`).
    public enum State: String, Sendable, Hashable, CaseIterable {
        case defined, activating, running, deactivating, stopped, failed, migrating
    }

    public struct VMReport: Sendable, Hashable {
        /// A VM's state inside its guest hypervisor (the wire's `ReportedVMState`).
        public enum State: String, Sendable, Hashable, CaseIterable {
            case creating, running, failed
        }
        public var name: String
        public var state: State
        public var failureReason: String?
        public var operations: UInt64
        public init(name: String, state: State, failureReason: String? = nil, operations: UInt64) {
            self.name = name
            self.state = state
            self.failureReason = failureReason
            self.operations = operations
        }
    }
    public var name: String
    public var state: State
    public var failureReason: String?
    public var l2Exits: UInt64
    public var trappedVMX: UInt64
    public var servedByShadow: UInt64
    public var vms: [VMReport]
    /// The migration the LPAR takes part in on this blade, as its agent sees it.
    public var migration: LPARMigrationReport?

    public init(name: String, state: State, failureReason: String? = nil, l2Exits: UInt64 = 0, trappedVMX: UInt64 = 0,
                servedByShadow: UInt64 = 0, vms: [VMReport] = [], migration: LPARMigrationReport? = nil) {
        self.name = name
        self.state = state
        self.failureReason = failureReason
        self.l2Exits = l2Exits
        self.trappedVMX = trappedVMX
        self.servedByShadow = servedByShadow
        self.vms = vms
        self.migration = migration
    }
}

/// Where an LPAR's migration stands on one of its two blades (the wire's `LPARMigration`).
public struct LPARMigrationReport: Sendable, Hashable {
    public enum Role: String, Sendable, Hashable, CaseIterable {
        case source, target
    }

    /// The source: `copying` (pre-copy rounds), `switchover` (paused, the rest going out),
    /// `handedOver` (the target has everything and can run; the source stays paused).
    /// The target: `incoming` (the shell waits for the source), `receiving`, `ready` (it has
    /// everything and can run when told). Either: `failed`.
    public enum Stage: String, Sendable, Hashable, CaseIterable {
        case copying, switchover, handedOver = "handed-over", incoming, receiving, ready, failed
    }

    public var id: String
    public var role: Role
    public var stage: Stage
    public var failureReason: String?
    public var progress: MigrationProgress

    public init(id: String, role: Role, stage: Stage, failureReason: String? = nil, progress: MigrationProgress = MigrationProgress()) {
        self.id = id
        self.role = role
        self.stage = stage
        self.failureReason = failureReason
        self.progress = progress
    }
}
