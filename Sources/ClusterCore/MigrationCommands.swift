import Placement
import Sizes

/// The migration commands of `ClusterCommands`: start one, cancel one, read them.
extension ClusterCommands {
    /// The longest downtime budget a migration may be given.
    public static let maxDowntimeLimitMillis: UInt64 = 60_000

    /// Starts a live migration of a running partition: to `target` when named (refused with
    /// the reason when it breaks a rule), else to the blade placement chooses, with every
    /// hard rule and N+1. The target's claim is taken in the same transaction; when the
    /// per-blade or per-cluster limit is reached, the migration waits as `pending` without one.
    public func migrate(_ name: String, to target: String?, maxDowntimeMillis: UInt64?, by caller: Caller, in model: ClusterModel,
                        health: [String: BladeHealth], now: UInt64, requestedBy: String? = nil,
                        id: String? = nil) throws(ClusterError) -> (ops: [StoreOp], migration: Migration) {
        let partition = try accessible(name, by: caller, in: model, for: "to migrate")
        if let target {
            guard caller.isAdmin else { throw .denied("\(caller) cannot choose a blade (--to); placement chooses the target") }
            try Self.checkName(target, "blade", field: "targetBlade")
        }
        let downtime = maxDowntimeMillis ?? MigrationLimits.defaultMaxDowntimeMillis
        guard (1...Self.maxDowntimeLimitMillis).contains(downtime) else {
            throw .invalid("--max-downtime \(downtime)ms is not within 1ms...\(Self.maxDowntimeLimitMillis / 1000)s", field: "maxDowntimeMillis")
        }
        guard let claim = model.claims[name] else {
            throw .precondition("partition \(name) is not placed on any blade\(partition.evictedBecause.map { " (\($0))" } ?? ""); start it to place it")
        }
        guard partition.desired == .running else {
            throw .precondition("partition \(name) is stopped; only a running partition is live-migrated (a stopped one moves when it is started again)")
        }
        if let running = model.activeMigration(of: name) {
            throw .precondition("partition \(name) is already migrating (migration \(running.id), phase \(running.phase.rawValue))")
        }
        let sourceHealth = health[claim.blade] ?? .unreachable
        guard sourceHealth == .ready else {
            throw .precondition("partition \(name) runs on blade \(claim.blade), which is \(sourceHealth.rawValue): a migration needs the source's agent")
        }
        if let target {
            guard let blade = model.blades[target] else { throw .notFound("blade \(target) is not registered") }
            if target == claim.blade { throw .precondition("partition \(name) already runs on blade \(target)") }
            if blade.cordoned { throw .precondition("blade \(target) is cordoned: it takes no partitions") }
            let targetHealth = health[target] ?? .unreachable
            guard targetHealth == .ready else { throw .precondition("blade \(target) is \(targetHealth.rawValue)") }
        }
        let id = id ?? "m\(model.generation + 1)"
        let running = model.activeMigrations
        // The target is chosen (and a named one checked) now, so that a bad request is refused
        // at once; it is kept only when the limits leave a slot.
        let chosen = try targetClaim(for: partition, from: claim.blade, requested: target, in: model, health: health, by: caller)
        var migration = Migration(id: id, partition: name, tenant: partition.spec.tenant, source: claim.blade, target: chosen,
                                  requestedTarget: target, maxDowntimeMillis: downtime, requestedBy: requestedBy ?? "\(caller)",
                                  createdMillis: now)
        var message = "from \(claim.blade) to \(chosen.blade) (\(chosen.reason)); downtime budget \(downtime) ms"
        if !migrationLimits.admits(source: claim.blade, target: chosen.blade, beside: running) {
            migration.target = nil
            message = "from \(claim.blade): waits for a slot (at most \(migrationLimits.perBlade) migrations per blade, \(migrationLimits.perCluster) in the cluster)"
        }
        return ([.putMigration(migration), .event(ClusterEvent(timeMillis: now, kind: "migration.requested", subject: name,
                                                               message: "migration \(id) \(message)", tenant: partition.spec.tenant))],
                migration)
    }

    /// The claim a migration of `partition` takes on its target: the named blade, or the one
    /// placement chooses among all but the source. The partition's own claim is left out of
    /// placement's view (it is leaving), and the source is not a candidate.
    func targetClaim(for partition: Partition, from source: String, requested: String?, in model: ClusterModel,
                     health: [String: BladeHealth], by caller: Caller) throws(ClusterError) -> Claim {
        var state = placementState(model, health: health)
        state.remove(partition.name)
        let request = partition.spec.placementRequest
        var fragmented = 0
        while true {
            switch state.decide(request, among: requested.map { [$0] }, excluding: [source]) {
            case .failure(let refusal):
                let shown = Self.shown(refusal.rejections, tenant: partition.spec.tenant, toTenant: caller.confinedTenant != nil)
                var text = PlacementRefusal(blades: refusal.blades, rejections: shown).description
                if fragmented > 0 { text += "; \(fragmented) memory too fragmented" }
                if let requested { text = "blade \(requested) cannot take partition \(partition.name): " + text }
                throw .precondition(text)
            case .success(let decision):
                guard let blade = model.blades[decision.blade] else { throw ClusterError(.conflict, "blade \(decision.blade) vanished") }
                if let claim = concreteClaim(for: partition.spec, on: blade, model: model, decision: decision) { return claim }
                fragmented += 1
                state.setCondition(.cordoned, of: blade.id)
            }
        }
    }

    /// Cancels a migration that has not paused its source: it rolls back (the target's shell
    /// and claim go, the source runs on). One that waits for a slot simply ends.
    public func cancelMigration(_ id: String, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        var migration = try visibleMigration(id, to: caller, in: model)
        let next: MigrationPhase
        switch MigrationPhases.next(migration.phase, on: .cancel) {
        case .success(let phase): next = phase
        case .failure(let error): throw .precondition("migration \(id): \(error)")
        }
        migration.failure = "cancelled by \(caller)"
        migration.updatedMillis = now
        migration.phase = migration.target == nil ? .failed : next
        return [.putMigration(migration), .event(ClusterEvent(
            timeMillis: now, kind: "migration.cancelled", subject: migration.partition,
            message: "migration \(id) cancelled by \(caller) in phase \(migration.phase == .failed ? "pending" : "before switchover"); \(migration.phase == .failed ? "nothing was reserved" : "rolling back, the partition runs on \(migration.source)")",
            tenant: migration.tenant))]
    }

    /// A migration by id, as `caller` may see it (a tenant sees those of its partitions).
    public func visibleMigration(_ id: String, to caller: Caller, in model: ClusterModel) throws(ClusterError) -> Migration {
        try Self.checkName(id, "migration", field: "migrationID")
        guard let migration = model.migrations[id] else { throw .notFound("migration \(id) does not exist") }
        guard caller.mayAccess(tenant: migration.tenant) else {
            throw .hidden("migration \(id) does not exist", audit: "\(caller) asked for migration \(id) of tenant \(migration.tenant)")
        }
        return migration
    }

    /// The migrations `caller` may see, newest first; `activeOnly` leaves out those over.
    public func visibleMigrations(to caller: Caller, in model: ClusterModel, partition: String? = nil, activeOnly: Bool = false) throws(ClusterError) -> [Migration] {
        if let partition { _ = try accessible(partition, by: caller, in: model, for: "to list the migrations of") }
        return model.migrations.values.filter { migration in
            caller.mayAccess(tenant: migration.tenant) && (partition == nil || migration.partition == partition)
                && (!activeOnly || !migration.phase.isFinal)
        }.sorted { ($0.createdMillis, $0.id) > ($1.createdMillis, $1.id) }
    }
}
