import Sizes

/// Moves migrations along their phases from what the two agents report, as store changes:
/// a value function of the model, the agents' last reports, the blades' health and the
/// time, so that the controller and the simulation run the same decisions.
///
/// What the agents do in each phase comes from the reconciler (`prepareIncoming` on the
/// target, `migrateOut` on the source, `activate` on the target once decided, `remove` on
/// the source, `cancelMigration` when rolling back); this decides when a phase is over.
public struct MigrationOrchestrator: Sendable {
    /// How long a migration may stay in a phase that waits on an agent without hearing of
    /// progress (the shell's creation, the first round) before it rolls back.
    public var stallMillis: UInt64

    /// How long a target's failure waits for the source's own account of it.
    static let sourceReasonWaitMillis: UInt64 = 5_000

    public init(stallMillis: UInt64 = 60_000) {
        self.stallMillis = stallMillis
    }

    /// The changes that move each active migration on; `restarted`: migrations this
    /// controller found in the store when it started, which roll back when they had not
    /// reached the decision.
    public func steps(model: ClusterModel, actual: [String: [String: LPARReport]], health: [String: BladeHealth],
                      commands: ClusterCommands, restarted: Set<String>, wallMillis: UInt64) -> [StoreOp] {
        var ops: [StoreOp] = []
        var view = model
        for migration in model.activeMigrations {
            let changes = step(migration, model: view, actual: actual, health: health, commands: commands,
                               restarted: restarted.contains(migration.id), wallMillis: wallMillis)
            // Later migrations see the earlier ones' new claims (slots, reservations).
            view.apply(changes, generation: view.generation, lastEventSequence: view.lastEventSequence)
            ops += changes
        }
        return ops
    }

    func step(_ migration: Migration, model: ClusterModel, actual: [String: [String: LPARReport]], health: [String: BladeHealth],
              commands: ClusterCommands, restarted: Bool, wallMillis: UInt64) -> [StoreOp] {
        var next = migration
        next.updatedMillis = wallMillis
        func move(_ event: MigrationEvent, _ message: String, kind: String? = nil) -> [StoreOp] {
            guard case .success(let phase) = MigrationPhases.next(migration.phase, on: event) else { return [] }
            next.phase = phase
            if case .failure(let reason) = event, next.failure == nil { next.failure = reason }
            return [.putMigration(next), .event(ClusterEvent(
                timeMillis: wallMillis, kind: kind ?? "migration.\(phase.rawValue)", subject: migration.partition,
                message: "migration \(migration.id): \(message)", tenant: migration.tenant))]
        }
        func fail(_ reason: String) -> [StoreOp] {
            move(.failure(reason), "\(reason); rolling back, the partition runs on \(migration.source)", kind: "migration.rolling-back")
        }

        if restarted && migration.phase.rollsBackOnFailure {
            return fail("the controller restarted in phase \(migration.phase.rawValue), before the decision")
        }
        // Waiting for a slot: take a target once the limits leave one.
        guard let target = migration.target else {
            guard let partition = model.partitions[migration.partition], model.claims[migration.partition]?.blade == migration.source else {
                next.phase = .failed
                next.failure = "the partition left blade \(migration.source) before the migration started"
                return [.putMigration(next), .event(ClusterEvent(
                    timeMillis: wallMillis, kind: "migration.failed", subject: migration.partition,
                    message: "migration \(migration.id): \(next.failure ?? "")", tenant: migration.tenant))]
            }
            if commands.migrationLimits.blocked(source: migration.source, beside: model.activeMigrations) != nil { return [] }
            do {
                let claim = try commands.targetClaim(for: partition, from: migration.source, requested: migration.requestedTarget,
                                                     in: model, health: health, by: .admin("controller"))
                guard commands.migrationLimits.admits(source: migration.source, target: claim.blade, beside: model.activeMigrations) else { return [] }
                next.target = claim
                return [.putMigration(next), .event(ClusterEvent(
                    timeMillis: wallMillis, kind: "migration.started", subject: migration.partition,
                    message: "migration \(migration.id): a slot is free; from \(migration.source) to \(claim.blade) (\(claim.reason))",
                    tenant: migration.tenant))]
            } catch {
                next.phase = .failed
                next.failure = error.message
                return [.putMigration(next), .event(ClusterEvent(
                    timeMillis: wallMillis, kind: "migration.failed", subject: migration.partition,
                    message: "migration \(migration.id): \(error.message)", tenant: migration.tenant))]
            }
        }

        let sourceReport = actual[migration.source]?[migration.partition]
        let targetReport = actual[target.blade]?[migration.partition]
        let sourceSide = sourceReport?.migration?.id == migration.id ? sourceReport?.migration : nil
        let targetSide = targetReport?.migration?.id == migration.id ? targetReport?.migration : nil
        let sourceHealth = health[migration.source] ?? .unreachable
        let targetHealth = health[target.blade] ?? .unreachable
        let stalled = wallMillis >= migration.updatedMillis && wallMillis - migration.updatedMillis > stallMillis

        if migration.phase.rollsBackOnFailure {
            if sourceHealth == .unreachable { return fail("the source blade \(migration.source) is unreachable") }
            if targetHealth == .unreachable { return fail("the target blade \(target.blade) is unreachable") }
            if let side = sourceSide, side.stage == .failed { return fail("the source failed it: \(side.failureReason ?? "no reason given")") }
            // A target's failure ends the source's stream, and the source then says why in its
            // own words (which carry the target's refusal): its reason is waited for a while.
            if let side = targetSide, side.stage == .failed, sourceSide == nil || wallMillis >= migration.updatedMillis + Self.sourceReasonWaitMillis {
                return fail("the target failed it: \(side.failureReason ?? "no reason given")")
            }
            if let report = sourceReport, report.state == .failed {
                return fail("the partition's LPAR failed on \(migration.source): \(report.failureReason ?? "no reason given")")
            }
        }

        switch migration.phase {
        case .pending:
            if targetSide?.stage == .incoming || targetSide?.stage == .receiving {
                return move(.targetPrepared, "the shell LPAR on \(target.blade) holds \(ByteSize.format(target.memoryBytes)) and waits")
            }
            if stalled { return fail("the target blade \(target.blade) prepared no shell within \(stallMillis / 1000) s") }
        case .targetPrepared:
            if let side = sourceSide, side.stage != .failed {
                next.progress = side.progress
                return move(.copyStarted, "copying memory to \(target.blade)")
            }
            if model.blades[target.blade]?.migrationAddress == nil {
                return fail("blade \(target.blade) takes no migrations (its agent announced no migration address)")
            }
            if stalled { return fail("the source started no copy within \(stallMillis / 1000) s") }
        case .preCopy:
            guard let side = sourceSide else {
                // A report without the migration may be older than the command that started it
                // (a heartbeat built before it crossed its answer): only a source that holds no
                // LPAR any more, or nothing for the stall time, has lost it.
                if (actual[migration.source] != nil && sourceReport == nil) || stalled {
                    return fail("the source no longer holds the migrating LPAR (its agent restarted?)")
                }
                return []
            }
            if side.stage == .switchover || side.stage == .handedOver {
                next.progress = side.progress
                return move(.switchoverStarted, "switchover: the source is paused, \(ByteSize.approximate(side.progress.remainingBytes)) and the state left to send")
            }
            if side.progress.round != migration.progress.round {
                next.progress = side.progress
                return [.putMigration(next)]
            }
        case .switchover:
            if sourceSide == nil, (actual[migration.source] != nil && sourceReport == nil) || stalled {
                return fail("the source no longer holds the migrating LPAR (its agent restarted?)")
            }
            guard sourceSide?.stage == .handedOver, targetSide?.stage == .ready else { return [] }
            // The decision: the claim moves to the target in this transaction.
            next.progress = sourceSide?.progress ?? next.progress
            var claim = target
            claim.reason = "migrated from \(migration.source) (migration \(migration.id))"
            let downtime = next.progress.downtimeMillis.map { ", source paused \($0) ms so far" } ?? ""
            return [.putClaim(claim)] + move(.decided, "decided for \(target.blade): the claim is the target's; it resumes there\(downtime)")
        case .resumedOnTarget:
            // The source's LPAR is gone once its agent reports without it.
            if actual[migration.source] != nil, sourceReport == nil {
                return move(.sourceReleased, "the source's LPAR on \(migration.source) is removed and its resources free")
            }
        case .sourceReleased:
            if targetReport?.state == .running {
                return move(.completed, "running on \(target.blade)", kind: "migration.succeeded")
            }
        case .rollingBack:
            let targetClear = targetHealth == .unreachable || (actual[target.blade] != nil && targetReport == nil)
            let sourceBack = sourceReport.map { $0.state != .migrating } ?? (sourceHealth == .unreachable || actual[migration.source] != nil)
            if targetClear && sourceBack {
                return move(.rolledBack, "rolled back: nothing is left on \(target.blade); the partition runs on \(migration.source)",
                            kind: "migration.failed")
            }
        case .succeeded, .failed:
            break
        }
        return []
    }
}
