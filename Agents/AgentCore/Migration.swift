public import Partitioner

/// The migration an LPAR takes part in on this blade.
public struct AgentMigration: Equatable, Sendable {
    public enum Role: Equatable, Sendable { case source, target }

    /// Where it stands on this blade (the wire's `MigrationStage`).
    public enum Stage: String, Equatable, Sendable {
        case copying, switchover, handedOver = "handed-over", incoming, receiving, ready, failed
    }

    public var id: String
    public var role: Role
    /// The other blade.
    public var peer: String
    public var stage: Stage
    public var failureReason: String?
    public var figures: MigrationFigures

    public init(id: String, role: Role, peer: String, stage: Stage, failureReason: String? = nil, figures: MigrationFigures = .init()) {
        self.id = id
        self.role = role
        self.peer = peer
        self.stage = stage
        self.failureReason = failureReason
        self.figures = figures
    }
}

/// How far a migration has got, as the source measures it.
public struct MigrationFigures: Equatable, Sendable {
    public var round: Int = 0
    public var sentBytes: UInt64 = 0
    public var remainingBytes: UInt64 = 0
    public var dirtyBytesPerSecond: UInt64 = 0
    public var linkBytesPerSecond: UInt64 = 0
    /// From the pause of the source until the target said it can run.
    public var downtimeMillis: UInt64?

    public init(round: Int = 0, sentBytes: UInt64 = 0, remainingBytes: UInt64 = 0, dirtyBytesPerSecond: UInt64 = 0,
                linkBytesPerSecond: UInt64 = 0, downtimeMillis: UInt64? = nil) {
        self.round = round
        self.sentBytes = sentBytes
        self.remainingBytes = remainingBytes
        self.dirtyBytesPerSecond = dirtyBytesPerSecond
        self.linkBytesPerSecond = linkBytesPerSecond
        self.downtimeMillis = downtimeMillis
    }
}

/// What the shell's sender needs to move a running LPAR.
public struct OutgoingMigration: Equatable, Sendable {
    public var id: String
    public var spec: LPARSpec
    public var target: String
    /// The target agent's migration listener, HOST:PORT.
    public var address: String
    public var maxDowntimeMillis: UInt64
    /// The L2 VMs the LPAR's guest hypervisor runs (their state goes with the LPAR's).
    public var vms: [VMRequest]

    public init(id: String, spec: LPARSpec, target: String, address: String, maxDowntimeMillis: UInt64, vms: [VMRequest]) {
        self.id = id
        self.spec = spec
        self.target = target
        self.address = address
        self.maxDowntimeMillis = maxDowntimeMillis
        self.vms = vms
    }
}

/// What the shell's receiver accepts: one announced migration into one shell LPAR.
public struct IncomingMigration: Equatable, Sendable {
    public var id: String
    public var spec: LPARSpec
    public var source: String

    public init(id: String, spec: LPARSpec, source: String) {
        self.id = id
        self.spec = spec
        self.source = source
    }
}

/// What the shell's sender or receiver reports about a migration.
public enum MigrationUpdate: Equatable, Sendable {
    /// The source: a round ended, or the switchover began or ended; the target: bytes arrive.
    case progress(AgentMigration.Stage, MigrationFigures)
    /// The target has everything, checked, and can run these L2 VMs when told.
    case ready(vms: [VMRequest], MigrationFigures)
    case failed(reason: String)
}
