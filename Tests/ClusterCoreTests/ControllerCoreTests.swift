import ClusterCore
import Testing

/// The controller's core driven by hand: sessions, heartbeats, leases and reconciliation one
/// command at a time, with stale and duplicate results ignored.
@Suite struct ControllerCoreTests {
    static func core() throws -> ControllerCore {
        var (commands, model, health) = smallCluster(blades: 2, admission: nil)
        let spec = PartitionSpec(name: "p1", tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0)
        commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        return ControllerCore(model: model, settings: .init(suspectAfterMillis: 300, unreachableAfterMillis: 500), now: 0)
    }

    static func sends(_ directives: [ControllerCore.Directive]) -> [(String, String, String)] {
        directives.compactMap { if case .send(let blade, let id, let command, _) = $0 { (blade, id, command.description) } else { nil } }
    }

    @Test func aBladeIsReconciledOneCommandAtATimeOnceItHasReported() throws {
        var core = try Self.core()
        let blade = core.model.claims["p1"]!.blade
        #expect(core.registered(blade, now: 10, wallMillis: 10).isEmpty, "nothing to send before the first heartbeat")
        let first = Self.sends(core.heartbeat(blade, reports: [:], now: 20, wallMillis: 20))
        #expect(first.map(\.2) == ["define p1"])
        // A second heartbeat while the command is out sends nothing more.
        #expect(Self.sends(core.heartbeat(blade, reports: [:], now: 30, wallMillis: 30)).isEmpty)
        let defined = LPARReport(name: "p1", state: .defined)
        let second = Self.sends(core.commandFinished(blade, id: first[0].1, .done(status: defined), wallMillis: 40))
        #expect(second.map(\.2) == ["activate p1"])
        // The same result again (a duplicate) changes nothing.
        #expect(core.commandFinished(blade, id: first[0].1, .done(status: defined), wallMillis: 41).isEmpty)
        let running = LPARReport(name: "p1", state: .running)
        let after = core.commandFinished(blade, id: second[0].1, .done(status: running), wallMillis: 50)
        #expect(Self.sends(after).isEmpty, "converged after the second round plans nothing")
        #expect(!core.isReconciling(blade))
        #expect(core.actual[blade]?["p1"]?.state == .running)
    }

    @Test func aRefusalIsRecordedOnceAndALinkFailureEndsTheRound() throws {
        var core = try Self.core()
        let blade = core.model.claims["p1"]!.blade
        _ = core.registered(blade, now: 0, wallMillis: 0)
        let first = Self.sends(core.heartbeat(blade, reports: [:], now: 10, wallMillis: 10))
        let refused = core.commandFinished(blade, id: first[0].1, .refused(reason: "no room", status: nil), wallMillis: 20)
        #expect(refused.contains { if case .record(let events) = $0 { events.first?.kind == "agent.command-failed" } else { false } })
        #expect(!core.isReconciling(blade), "a refused round does not plan again by itself")
        let again = Self.sends(core.heartbeat(blade, reports: [:], now: 30, wallMillis: 30))
        let twice = core.commandFinished(blade, id: again[0].1, .refused(reason: "no room", status: nil), wallMillis: 40)
        #expect(!twice.contains { if case .record = $0 { true } else { false } }, "the same refusal is one event")
        let third = Self.sends(core.heartbeat(blade, reports: [:], now: 50, wallMillis: 50))
        #expect(Self.sends(core.commandFinished(blade, id: third[0].1, .linkFailed(reason: "timeout"), wallMillis: 60)).isEmpty)
        #expect(!core.isReconciling(blade))
    }

    @Test func aNewSessionVoidsTheCommandsOfTheOldOne() throws {
        var core = try Self.core()
        let blade = core.model.claims["p1"]!.blade
        _ = core.registered(blade, now: 0, wallMillis: 0)
        let old = Self.sends(core.heartbeat(blade, reports: [:], now: 10, wallMillis: 10))
        core.disconnected(blade)
        #expect(core.heartbeat(blade, reports: [:], now: 20, wallMillis: 20).isEmpty, "no session, no heartbeat")
        _ = core.registered(blade, now: 30, wallMillis: 30)
        let fresh = Self.sends(core.heartbeat(blade, reports: [:], now: 40, wallMillis: 40))
        #expect(fresh.map(\.2) == ["define p1"] && fresh[0].1 != old[0].1)
        #expect(core.commandFinished(blade, id: old[0].1, .done(status: nil), wallMillis: 50).isEmpty, "the old session's answer is ignored")
    }

    @Test func leasesTurnBladesSuspectThenUnreachableAndAHeartbeatBringsThemBack() throws {
        var core = try Self.core()
        let kinds = { (directives: [ControllerCore.Directive]) -> [String] in
            var lines: [String] = []
            for case .record(let events) in directives { lines += events.map { "\($0.subject) \($0.kind)" } }
            return lines
        }
        #expect(kinds(core.tick(now: 100, wallMillis: 100)).isEmpty)
        #expect(kinds(core.tick(now: 300, wallMillis: 300)) == ["blade-0 blade.suspect", "blade-1 blade.suspect"])
        #expect(kinds(core.tick(now: 500, wallMillis: 500)) == ["blade-0 blade.unreachable", "blade-1 blade.unreachable"])
        #expect(core.health(at: 500)["blade-0"] == .unreachable)
        #expect(kinds(core.registered("blade-0", now: 600, wallMillis: 600)) == ["blade-0 blade.ready"])
        #expect(core.health(at: 600)["blade-0"] == .ready)
    }

    @Test func aFailedLPARIsRecordedOnce() throws {
        var core = try Self.core()
        let blade = core.model.claims["p1"]!.blade
        _ = core.registered(blade, now: 0, wallMillis: 0)
        let failed = ["p1": LPARReport(name: "p1", state: .failed, failureReason: "triple fault")]
        let first = core.heartbeat(blade, reports: failed, now: 10, wallMillis: 10)
        #expect(first.contains { if case .record(let events) = $0 { events.first?.message == "on \(blade): triple fault" } else { false } })
        #expect(!core.heartbeat(blade, reports: failed, now: 20, wallMillis: 20).contains { if case .record = $0 { true } else { false } })
    }
}

@Suite struct ControllerCoreCommitTests {
    /// A commit reconciles the blades it changes, and only those.
    @Test func aCommitReconcilesOnlyTheBladesItTouches() throws {
        var (commands, model, health) = smallCluster(blades: 2, admission: nil)
        var core = ControllerCore(model: model, settings: .init(), now: 0)
        for blade in ["blade-0", "blade-1"] {
            _ = core.registered(blade, now: 0, wallMillis: 0)
            _ = core.heartbeat(blade, reports: [:], now: 1, wallMillis: 1)
        }
        let spec = PartitionSpec(name: "p1", tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0)
        let decision = try commands.createPartition(spec, by: .tenant("acme"), in: core.model, health: health, now: 2)
        let directives = core.committed(decision.ops, generation: 2, lastEventSequence: 1)
        let sent = directives.compactMap { if case .send(let blade, _, let command, _) = $0 { "\(blade) \(command)" } else { nil } }
        #expect(sent == ["\(decision.claim.blade) define p1"])
        // An event alone touches no blade.
        let event = ClusterEvent(timeMillis: 3, kind: "x", subject: "y", message: "z")
        #expect(core.committed([.event(event)], generation: 3, lastEventSequence: 2).isEmpty)
    }
}
