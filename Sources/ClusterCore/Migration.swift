/// A live migration of a partition from its blade to another, as the store keeps it.
///
/// The target's claim (`target`) is taken when the migration is accepted, before any byte
/// moves, and counted by placement beside the source's claim; the partition's own claim moves
/// to the target only in the transaction that records the decision (`resumed-on-target`).
/// A migration waiting for a free slot (the per-blade and per-cluster limits) has no target
/// claim yet: it is `pending` with `target == nil`.
public struct Migration: Sendable, Hashable, Codable {
    public var id: String
    public var partition: String
    public var tenant: String
    /// The blade the partition runs on when the migration starts.
    public var source: String
    /// The reservation on the target blade; nil while the migration waits for a slot.
    public var target: Claim?
    /// The blade an operator named (`--to`); nil: placement chooses.
    public var requestedTarget: String?
    public var phase: MigrationPhase
    public var maxDowntimeMillis: UInt64
    /// Who asked for it ("admin/alice", "drain of blade-3").
    public var requestedBy: String
    public var createdMillis: UInt64
    public var updatedMillis: UInt64
    /// Why it rolled back (or is rolling back).
    public var failure: String?
    public var progress: MigrationProgress

    public init(id: String, partition: String, tenant: String, source: String, target: Claim?, requestedTarget: String? = nil,
                phase: MigrationPhase = .pending, maxDowntimeMillis: UInt64 = MigrationLimits.defaultMaxDowntimeMillis,
                requestedBy: String, createdMillis: UInt64, updatedMillis: UInt64? = nil, failure: String? = nil,
                progress: MigrationProgress = MigrationProgress()) {
        self.id = id
        self.partition = partition
        self.tenant = tenant
        self.source = source
        self.target = target
        self.requestedTarget = requestedTarget
        self.phase = phase
        self.maxDowntimeMillis = maxDowntimeMillis
        self.requestedBy = requestedBy
        self.createdMillis = createdMillis
        self.updatedMillis = updatedMillis ?? createdMillis
        self.failure = failure
        self.progress = progress
    }

    /// The blades the migration occupies (its source, and its target once it has one).
    public var blades: [String] { [source] + (target.map { [$0.blade] } ?? []) }

    /// The migration holds a slot of the limits (it has a target and is not over).
    public var holdsSlot: Bool { target != nil && !phase.isFinal }
}

/// How far a migration has got, as its source agent last reported it.
public struct MigrationProgress: Sendable, Hashable, Codable {
    /// Pre-copy rounds finished (the final round included once the source paused).
    public var round: Int
    public var sentBytes: UInt64
    /// Dirty bytes left to send at the end of the last round.
    public var remainingBytes: UInt64
    public var dirtyBytesPerSecond: UInt64
    public var linkBytesPerSecond: UInt64
    /// How long the source was paused before the target could run, as L0 measured it.
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

/// How many migrations may run at once, and the defaults of a migration.
public struct MigrationLimits: Sendable, Hashable {
    public static let defaultMaxDowntimeMillis: UInt64 = 50
    /// Migrations a blade takes part in at once (as source or target).
    public var perBlade: Int
    /// Migrations across the cluster at once.
    public var perCluster: Int

    public init(perBlade: Int = 2, perCluster: Int = 5) {
        self.perBlade = perBlade
        self.perCluster = perCluster
    }

    /// Whether a migration between `source` and `target` fits the limits beside `running`.
    public func admits(source: String, target: String, beside running: [Migration]) -> Bool {
        let holding = running.filter(\.holdsSlot)
        guard holding.count < perCluster else { return false }
        for blade in [source, target] where holding.filter({ $0.blades.contains(blade) }).count >= perBlade { return false }
        return true
    }

    /// Why a migration from `source` cannot start now, or nil when a target may still fit.
    public func blocked(source: String, beside running: [Migration]) -> String? {
        let holding = running.filter(\.holdsSlot)
        if holding.count >= perCluster { return "\(holding.count) migrations run in the cluster (at most \(perCluster) at once)" }
        let onSource = holding.filter { $0.blades.contains(source) }.count
        if onSource >= perBlade { return "blade \(source) takes part in \(onSource) migrations (at most \(perBlade) at once)" }
        return nil
    }
}

extension ClusterModel {
    /// The migration of `partition` that is not over yet, if any.
    public func activeMigration(of partition: String) -> Migration? {
        migrations.values.first { $0.partition == partition && !$0.phase.isFinal }
    }

    /// Migrations that are not over, oldest first.
    public var activeMigrations: [Migration] {
        migrations.values.filter { !$0.phase.isFinal }.sorted { ($0.createdMillis, $0.id) < ($1.createdMillis, $1.id) }
    }

    /// The target reservations on one blade (migrations coming in that hold a claim there).
    public func incomingClaims(on blade: String) -> [Claim] {
        migrations.values.compactMap { migration in
            guard let target = migration.target, target.blade == blade, !migration.phase.isFinal,
                  !migration.phase.targetOwns else { return nil }
            return target
        }.sorted { $0.partition < $1.partition }
    }
}
