import AgentCore
import Partitioner
import Testing

/// The agent's core in a migration, on both blades: what it asks of its shell, what it
/// refuses, and where the LPAR ends.
@Suite struct MigrationCoreTests {
    static func running() throws -> AgentCore {
        var core = try newCore()
        for input in paths[.running]! { _ = core.handle(input) }
        return core
    }

    static let migrateOut = AgentInput.command(id: "m", .migrateOut(lpar: "a", migration: "m7", target: "b2", address: "127.0.0.1:9",
                                                                   maxDowntimeMillis: 50))

    @Test func theSourceSendsWhileItRunsAndResumesWhenCancelled() throws {
        var core = try Self.running()
        let directives = core.handle(Self.migrateOut)
        #expect(replies(directives)["m"] == .ok)
        guard case .sendMigration(let outgoing)? = directives.first else { Issue.record("no send: \(directives)"); return }
        #expect(outgoing.id == "m7" && outgoing.target == "b2" && outgoing.address == "127.0.0.1:9" && outgoing.maxDowntimeMillis == 50)
        #expect(core.state(of: "a") == .migrating && core.migration(of: "a")?.role == .source)
        // A repeat is answered ok; another migration of the same LPAR is refused.
        #expect(replies(core.handle(Self.migrateOut))["m"] == .ok)
        let other = core.handle(.command(id: "o", .migrateOut(lpar: "a", migration: "m8", target: "b3", address: "x:1", maxDowntimeMillis: 50)))
        #expect(replies(other)["o"] == .refused("LPAR a takes part in migration m7 already"))
        // It may not be removed before it hands over, nor deactivated.
        #expect(replies(core.handle(.command(id: "r", .remove(lpar: "a"))))["r"] == .refused("LPAR a is the source of a migration that has not handed over; cancel the migration first"))
        // Progress, then a cancel: the guest runs on, the sender stops.
        _ = core.handle(.driver(lpar: "a", .migration(id: "m7", .progress(.copying, MigrationFigures(round: 2)))))
        #expect(core.migration(of: "a")?.figures.round == 2)
        let cancelled = core.handle(.command(id: "c", .cancelMigration(lpar: "a", migration: "m7")))
        #expect(replies(cancelled)["c"] == .ok)
        #expect(cancelled.contains(.endMigration(lpar: "a", id: "m7", resumeSource: true)))
        #expect(core.state(of: "a") == .running && core.migration(of: "a") == nil)
    }

    @Test func aSourceThatHandedOverIsRemovedAndAStoppedOneIsNotMigrated() throws {
        var core = try Self.running()
        _ = core.handle(Self.migrateOut)
        _ = core.handle(.driver(lpar: "a", .migration(id: "m7", .progress(.handedOver, MigrationFigures(round: 3, downtimeMillis: 4)))))
        #expect(core.report(of: "a", observation: nil)?.migration?.stage == .handedOver)
        let removed = core.handle(.command(id: "r", .remove(lpar: "a")))
        #expect(removed == [.endMigration(lpar: "a", id: "m7", resumeSource: false), .stop(lpar: "a")])
        let after = core.handle(.driver(lpar: "a", .stopped))
        #expect(replies(after)["r"] == .ok && core.state(of: "a") == nil)
        var stopped = try newCore()
        for input in paths[.stopped]! { _ = stopped.handle(input) }
        #expect(replies(stopped.handle(Self.migrateOut))["m"] == .refused("LPAR a is stopped: only a running LPAR is migrated"))
    }

    @Test func theTargetsShellReceivesThenStartsFromWhatArrived() throws {
        var core = try newCore()
        let prepare = AgentInput.command(id: "p", .prepareIncoming(definition("a", index: 1), migration: "m7", source: "b1"))
        let directives = core.handle(prepare)
        #expect(replies(directives)["p"] == .ok)
        guard case .expectMigration(let incoming)? = directives.first(where: { if case .expectMigration = $0 { true } else { false } }) else {
            Issue.record("no expectation: \(directives)"); return
        }
        #expect(incoming.id == "m7" && incoming.source == "b1" && incoming.spec.memory.size == 1 << 30)
        #expect(core.state(of: "a") == .migrating && core.migration(of: "a")?.stage == .incoming)
        #expect(replies(core.handle(prepare))["p"] == .ok, "a repeat is a no-op")
        // Not activated before it has everything.
        #expect(replies(core.handle(.command(id: "s", .activate(lpar: "a"))))["s"] == .refused("LPAR a is the target of migration m7, incoming: only a target that received everything is activated"))
        let vm = VMRequest(partition: "a", name: "db", vcpus: 2, workload: .sysbenchOLTP)
        _ = core.handle(.driver(lpar: "a", .migration(id: "m7", .ready(vms: [vm], MigrationFigures(round: 3)))))
        #expect(core.vmState("db", in: "a") == .creating)
        let start = core.handle(.command(id: "s", .activate(lpar: "a")))
        guard case .resumeIncoming(let launch, let id)? = start.first else { Issue.record("no resume: \(start)"); return }
        #expect(id == "m7" && launch.spec.name == "a")
        let up = core.handle(.driver(lpar: "a", .started))
        #expect(replies(up)["s"] == .ok && core.state(of: "a") == .running && core.migration(of: "a") == nil)
        // A cancel is for sources only.
        var other = try newCore()
        _ = other.handle(prepare)
        #expect(replies(other.handle(.command(id: "c", .cancelMigration(lpar: "a", migration: "m7"))))["c"]
                == .refused("LPAR a is the target of migration m7: a target's shell is removed, not cancelled"))
        // Rolling back removes the shell.
        #expect(other.handle(.command(id: "r", .remove(lpar: "a"))) == [.endMigration(lpar: "a", id: "m7", resumeSource: false), .stop(lpar: "a")])
        _ = other.handle(.driver(lpar: "a", .stopped))
        #expect(other.state(of: "a") == nil)
    }

    @Test func aShellIsNotMadeWhereTheLPARExistsAndAFailureIsKept() throws {
        var core = try Self.running()
        let prepare = core.handle(.command(id: "p", .prepareIncoming(definition("a", index: 1), migration: "m7", source: "b1")))
        #expect(replies(prepare)["p"] == .refused("LPAR a already exists here (running); it cannot receive migration m7"))
        _ = core.handle(Self.migrateOut)
        _ = core.handle(.driver(lpar: "a", .migration(id: "m7", .failed(reason: "the target refused the migration: checksum"))))
        _ = core.handle(.driver(lpar: "a", .migration(id: "m7", .progress(.copying, MigrationFigures(round: 9)))))
        #expect(core.migration(of: "a")?.stage == .failed, "a failure is final")
        #expect(core.migration(of: "a")?.failureReason == "the target refused the migration: checksum")
        #expect(core.handle(.driver(lpar: "a", .migration(id: "other", .failed(reason: "x")))).isEmpty, "another migration's report changes nothing")
    }
}
