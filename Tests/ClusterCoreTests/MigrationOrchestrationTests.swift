import ClusterCore
import Placement
import Testing

/// Migrations as values: the command's refusals and reservation, the orchestrator's phases
/// from the two agents' reports, the reconciler's commands on each blade, and a restart.
@Suite struct MigrationOrchestrationTests {
    static let wall: UInt64 = 1_000_000

    /// Four blades in two chassis, a running partition "erp" on one of them.
    static func cluster(limits: MigrationLimits = MigrationLimits()) throws -> (ClusterCommands, ClusterModel, [String: BladeHealth]) {
        var (commands, model, health) = smallCluster(blades: 4, admission: nil)
        commands.migrationLimits = limits
        for id in model.blades.keys { model.blades[id]?.migrationAddress = "127.0.0.1:9\(id.suffix(1))00" }
        let spec = PartitionSpec(name: "erp", tenant: "acme", cores: 4, memoryBytes: 2 << 30, diskBytes: 0, vmm: true)
        commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        return (commands, model, health)
    }

    static func report(_ state: LPARReport.State, _ id: String, _ role: LPARMigrationReport.Role, _ stage: LPARMigrationReport.Stage,
                       round: Int = 1) -> LPARReport {
        LPARReport(name: "erp", state: state, migration: LPARMigrationReport(id: id, role: role, stage: stage, progress: MigrationProgress(round: round)))
    }

    @Test func theTargetIsReservedAtOnceAndCountedByPlacement() throws {
        var (commands, model, health) = try Self.cluster()
        let source = model.claims["erp"]!.blade
        let (ops, migration) = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: 5)
        commit(ops, to: &model)
        let target = try #require(migration.target)
        #expect(target.blade != source && migration.phase == .pending && migration.maxDowntimeMillis == 50)
        #expect(model.claims["erp"]?.blade == source, "the claim moves only at the decision")
        #expect(model.incomingClaims(on: target.blade) == [target])
        // A partition placed meanwhile never shares a core with the reservation.
        for index in 0..<3 {
            let spec = PartitionSpec(name: "p\(index)", tenant: "acme", cores: 4, memoryBytes: 1 << 30, diskBytes: 0)
            commit(try commands.createPartition(spec, by: .admin("ops"), in: model, health: health, now: 6).ops, to: &model)
        }
        for claim in model.claims(on: target.blade) {
            #expect(Set(claim.cores).isDisjoint(with: target.cores))
            #expect(claim.memoryBase + claim.memoryBytes <= target.memoryBase || target.memoryBase + target.memoryBytes <= claim.memoryBase)
        }
    }

    @Test func hardAntiAffinityHoldsOnTheTarget() throws {
        var (commands, model, health) = smallCluster(blades: 4, admission: nil)
        let rule = AntiAffinityRule(group: "db", level: .chassis, hard: true)
        for name in ["db-a", "db-b"] {
            let spec = PartitionSpec(name: name, tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0, antiAffinity: rule)
            commit(try commands.createPartition(spec, by: .admin("ops"), in: model, health: health, now: 1).ops, to: &model)
        }
        let chassis = model.blades[model.claims["db-a"]!.blade]!.chassis
        let (_, migration) = try commands.migrate("db-a", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: 2)
        #expect(model.blades[migration.target!.blade]!.chassis == chassis, "the other chassis holds db-b")
        let other = model.claims["db-b"]!.blade
        #expect(throws: ClusterError.self) {
            try commands.migrate("db-a", to: other, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: 2)
        }
        do {
            _ = try commands.migrate("db-a", to: other, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: 2)
        } catch {
            #expect(error.message == "blade \(other) cannot take partition db-a: no blade fits: 1 blade; 1 chassis anti-affinity (group db)")
        }
    }

    @Test func refusalsAndLimits() throws {
        var (commands, model, health) = try Self.cluster(limits: MigrationLimits(perBlade: 1, perCluster: 5))
        let source = model.claims["erp"]!.blade
        func refusal(_ caller: Caller = .admin("ops"), _ name: String = "erp", to: String? = nil, downtime: UInt64? = nil) -> String? {
            do { _ = try commands.migrate(name, to: to, maxDowntimeMillis: downtime, by: caller, in: model, health: health, now: 9); return nil }
            catch { return error.message }
        }
        #expect(refusal(to: source) == "partition erp already runs on blade \(source)")
        #expect(refusal(to: "blade-9") == "blade blade-9 is not registered")
        #expect(refusal(.tenant("globex")) == "partition erp does not exist")
        #expect(refusal(.tenant("acme"), to: "blade-1")?.contains("cannot choose a blade") == true)
        #expect(refusal(downtime: 0)?.contains("--max-downtime") == true)
        var unhealthy = health
        unhealthy[source] = .suspect
        do { _ = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: unhealthy, now: 9) }
        catch { #expect(error.message.contains("which is suspect")) }
        let first = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: 9)
        commit(first.ops, to: &model)
        #expect(refusal()?.contains("already migrating (migration \(first.migration.id), phase pending)") == true)
        #expect((try? commands.partitionAction("erp", .stop, by: .admin("ops"), in: model, health: health, now: 9)) == nil)
        // A second partition on the same source waits for a slot (one per blade here).
        let spec = PartitionSpec(name: "crm", tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0)
        var placed = try commands.createPartition(spec, by: .admin("ops"), in: model, health: health, now: 10)
        if placed.claim.blade != source {
            // Put it on the source so that the source's limit applies.
            placed.claim = model.claims["erp"].map { Claim(partition: "crm", blade: $0.blade, cores: [12, 13], memoryBase: 40 << 30, memoryBytes: 1 << 30, diskBytes: 0, reason: "test") }!
            placed.ops = placed.ops.map { if case .putClaim = $0 { .putClaim(placed.claim) } else { $0 } }
        }
        commit(placed.ops, to: &model)
        let second = try commands.migrate("crm", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: 11)
        #expect(second.migration.target == nil && second.migration.phase == .pending)
        commit(second.ops, to: &model)
        // Cancel: the waiting one ends at once, the reserved one rolls back.
        commit(try commands.cancelMigration(second.migration.id, by: .admin("ops"), in: model, now: 12), to: &model)
        #expect(model.migrations[second.migration.id]?.phase == .failed)
        commit(try commands.cancelMigration(first.migration.id, by: .tenant("acme"), in: model, now: 12), to: &model)
        #expect(model.migrations[first.migration.id]?.phase == .rollingBack)
        #expect((try? commands.cancelMigration(first.migration.id, by: .tenant("globex"), in: model, now: 12)) == nil)
    }

    /// The happy path, phase by phase, from the agents' reports alone.
    @Test func phasesFollowTheAgentsReportsAndTheClaimMovesAtTheDecision() throws {
        var (commands, model, health) = try Self.cluster()
        let source = model.claims["erp"]!.blade
        let (ops, migration) = try commands.migrate("erp", to: nil, maxDowntimeMillis: 30, by: .admin("ops"), in: model, health: health, now: Self.wall)
        commit(ops, to: &model)
        let target = migration.target!.blade
        let id = migration.id
        var actual: [String: [String: LPARReport]] = [source: ["erp": LPARReport(name: "erp", state: .running)], target: [:]]
        for blade in model.blades.keys where actual[blade] == nil { actual[blade] = [:] }
        let orchestrator = MigrationOrchestrator()
        func step() -> MigrationPhase {
            let changes = orchestrator.steps(model: model, actual: actual, health: health, commands: commands, restarted: [], wallMillis: Self.wall + 10)
            commit(changes, to: &model)
            return model.migrations[id]!.phase
        }
        // The reconciler asks the target for the shell first, the source for nothing yet.
        #expect(Reconciler.commands(for: target, model: model, actual: actual[target]!).map(\.description) == ["prepare erp for migration \(id) from \(source)"])
        #expect(Reconciler.commands(for: source, model: model, actual: actual[source]!).isEmpty)
        #expect(step() == .pending, "nothing reported yet")
        actual[target] = ["erp": Self.report(.migrating, id, .target, .incoming)]
        #expect(step() == .targetPrepared)
        #expect(Reconciler.commands(for: source, model: model, actual: actual[source]!).map(\.description) == ["migrate erp to \(target) (migration \(id))"])
        actual[source] = ["erp": Self.report(.migrating, id, .source, .copying)]
        #expect(step() == .preCopy)
        actual[source] = ["erp": Self.report(.migrating, id, .source, .copying, round: 3)]
        #expect(step() == .preCopy && model.migrations[id]?.progress.round == 3)
        actual[source] = ["erp": Self.report(.migrating, id, .source, .switchover, round: 4)]
        #expect(step() == .switchover)
        actual[source] = ["erp": Self.report(.migrating, id, .source, .handedOver, round: 4)]
        #expect(step() == .switchover, "the target has not said it can run")
        #expect(model.claims["erp"]?.blade == source)
        actual[target] = ["erp": Self.report(.migrating, id, .target, .ready)]
        #expect(step() == .resumedOnTarget)
        #expect(model.claims["erp"]?.blade == target)
        #expect(Reconciler.commands(for: target, model: model, actual: actual[target]!).map(\.description) == ["activate erp"])
        #expect(Reconciler.commands(for: source, model: model, actual: actual[source]!).map(\.description) == ["remove erp"])
        actual[source] = [:]
        #expect(step() == .sourceReleased)
        actual[target] = ["erp": LPARReport(name: "erp", state: .running)]
        #expect(step() == .succeeded)
        #expect(model.incomingClaims(on: target).isEmpty && model.activeMigration(of: "erp") == nil)
    }

    @Test func aFailureBeforeTheDecisionRollsBackAndFreesTheTarget() throws {
        var (commands, model, health) = try Self.cluster()
        let source = model.claims["erp"]!.blade
        let (ops, migration) = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: Self.wall)
        commit(ops, to: &model)
        let target = migration.target!.blade, id = migration.id
        var actual: [String: [String: LPARReport]] = [source: ["erp": Self.report(.migrating, id, .source, .copying)],
                                                     target: ["erp": Self.report(.migrating, id, .target, .failed)]]
        let orchestrator = MigrationOrchestrator()
        func step(_ health: [String: BladeHealth], at millis: UInt64 = Self.wall + 5) -> Migration {
            commit(orchestrator.steps(model: model, actual: actual, health: health, commands: commands, restarted: [], wallMillis: millis), to: &model)
            return model.migrations[id]!
        }
        model.migrations[id]?.phase = .preCopy
        // The source's own account is waited for a while (it says why the stream broke)...
        #expect(step(health).phase == .preCopy)
        // ...and then the target's reason is taken.
        #expect(step(health, at: Self.wall + 6_000).phase == .rollingBack)
        #expect(model.migrations[id]?.failure?.contains("the target failed it") == true)
        #expect(Reconciler.commands(for: target, model: model, actual: actual[target]!).map(\.description) == ["remove erp"])
        #expect(Reconciler.commands(for: source, model: model, actual: actual[source]!).map(\.description) == ["cancel migration \(id) of erp"])
        #expect(step(health).phase == .rollingBack, "the shell is still there")
        actual[target] = [:]
        actual[source] = ["erp": LPARReport(name: "erp", state: .running)]
        #expect(step(health).phase == .failed)
        #expect(model.claims["erp"]?.blade == source && model.incomingClaims(on: target).isEmpty)
        // A lost target blade rolls a migration back too.
        let again = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: Self.wall)
        commit(again.ops, to: &model)
        var lost = health
        lost[again.migration.target!.blade] = .unreachable
        commit(orchestrator.steps(model: model, actual: actual, health: lost, commands: commands, restarted: [], wallMillis: Self.wall), to: &model)
        #expect(model.migrations[again.migration.id]?.failure == "the target blade \(again.migration.target!.blade) is unreachable")
    }

    /// A heartbeat built before the migrateOut command crossed its answer shows the source
    /// running without the migration: that is no failure; a source without the LPAR is.
    @Test func aStaleReportIsNoFailureButALostLPARIs() throws {
        var (commands, model, health) = try Self.cluster()
        let source = model.claims["erp"]!.blade
        let (ops, migration) = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: Self.wall)
        commit(ops, to: &model)
        model.migrations[migration.id]?.phase = .preCopy
        let target = migration.target!.blade
        let orchestrator = MigrationOrchestrator()
        var actual: [String: [String: LPARReport]] = [source: ["erp": LPARReport(name: "erp", state: .running)],
                                                     target: ["erp": Self.report(.migrating, migration.id, .target, .receiving)]]
        #expect(orchestrator.steps(model: model, actual: actual, health: health, commands: commands, restarted: [], wallMillis: Self.wall + 10).isEmpty)
        actual[source] = [:]
        commit(orchestrator.steps(model: model, actual: actual, health: health, commands: commands, restarted: [], wallMillis: Self.wall + 20), to: &model)
        #expect(model.migrations[migration.id]?.phase == .rollingBack)
        #expect(model.migrations[migration.id]?.failure?.contains("no longer holds the migrating LPAR") == true)
    }

    @Test func aControllerThatRestartsRollsBackBeforeTheDecisionAndForwardAfterIt() throws {
        var (commands, model, health) = try Self.cluster()
        let (ops, migration) = try commands.migrate("erp", to: nil, maxDowntimeMillis: nil, by: .admin("ops"), in: model, health: health, now: Self.wall)
        commit(ops, to: &model)
        model.migrations[migration.id]?.phase = .preCopy
        let core = ControllerCore(model: model, settings: .init(), now: 0, commands: commands)
        let directives = core.advanceMigrations(now: 0, wallMillis: Self.wall)
        guard case .commit(let changes)? = directives.first else { Issue.record("no commit: \(directives)"); return }
        commit(changes, to: &model)
        #expect(model.migrations[migration.id]?.phase == .rollingBack)
        #expect(model.migrations[migration.id]?.failure?.contains("the controller restarted in phase pre-copy") == true)
        // After the decision the new controller carries it on: nothing rolls back.
        model.migrations[migration.id]?.phase = .resumedOnTarget
        model.migrations[migration.id]?.failure = nil
        let later = ControllerCore(model: model, settings: .init(), now: 0, commands: commands)
        for case .commit(let changes) in later.advanceMigrations(now: 0, wallMillis: Self.wall) {
            for case .putMigration(let m) in changes { #expect(m.phase != .rollingBack) }
        }
    }
}

/// A drain: every partition of the blade moves within the rules, a second drain is refused
/// while the first runs, uncordoning stops what has not switched over.
@Suite struct DrainTests {
    @Test func aDrainMovesEveryPartitionWithinTheRulesAndUncordonStopsIt() throws {
        var (commands, model, health) = smallCluster(blades: 6, admission: nil)
        // Three chassis of two blades.
        for index in 0..<6 { model.blades["blade-\(index)"]?.chassis = "chassis-\(index / 2)" }
        commands.migrationLimits = MigrationLimits(perBlade: 2, perCluster: 5)
        let web = AntiAffinityRule(group: "web", level: .chassis, hard: true)
        func create(_ name: String, _ rule: AntiAffinityRule?, only: String?, desired: DesiredState = .running) throws {
            var view = model
            if let only { for id in view.blades.keys where id != only { view.blades[id]?.cordoned = true } }
            let spec = PartitionSpec(name: name, tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0, antiAffinity: rule)
            let placed = try commands.createPartition(spec, by: .admin("ops"), in: view, health: health, now: 1)
            commit(placed.ops, to: &model)
            model.partitions[name]?.desired = desired
        }
        try create("web-0", web, only: "blade-0")
        try create("app-0", nil, only: "blade-0")
        try create("app-1", nil, only: "blade-0")
        try create("old", nil, only: "blade-0", desired: .stopped)
        try create("web-1", web, only: "blade-2")
        try create("web-2", web, only: "blade-4")
        let (ops, outcome) = try commands.drain("blade-0", by: .admin("ops"), in: model, health: health, now: 2)
        commit(ops, to: &model)
        #expect(model.blades["blade-0"]?.cordoned == true)
        #expect(outcome.migrating.map(\.partition) == ["app-0", "app-1", "web-0"])
        #expect(outcome.moved.map(\.partition) == ["old"] && model.claims["old"]?.blade != "blade-0")
        // Two start (the source's limit), one waits; web-0 may only go to its own chassis.
        let migrations = model.activeMigrations
        #expect(migrations.filter { $0.target != nil }.count == 2)
        for migration in migrations {
            if let target = migration.target { #expect(target.blade != "blade-0") }
            if migration.partition == "web-0", let target = migration.target { #expect(target.blade == "blade-1") }
        }
        #expect(throws: ClusterError.self) { try commands.drain("blade-0", by: .admin("ops"), in: model, health: health, now: 3) }
        #expect(throws: ClusterError.self) { try commands.drain("blade-0", by: .tenant("acme"), in: model, health: health, now: 3) }
        // Uncordon: every migration of the drain that has not switched over stops.
        commit(try commands.cordon("blade-0", false, by: .admin("ops"), in: model, now: 4), to: &model)
        #expect(model.activeMigrations.allSatisfy { $0.phase == .rollingBack })
        #expect(model.migrations.values.filter { $0.phase == .failed }.count == 1, "the waiting one simply ends")
    }
}
