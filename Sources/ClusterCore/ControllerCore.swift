/// The controller's decisions beyond the commands of `ClusterCommands`, as a value: the
/// model, the blades' leases, what each agent last reported, and the reconciliation of each
/// blade (which command goes to which agent next). Inputs go in as method calls with the time
/// they happen; directives come out for the shell to carry out: the `Controller` actor over
/// its store and its agents' connections, or the deterministic simulation over simulated
/// ones. Nothing here performs I/O or reads a clock.
///
/// Commits are the shell's: it commits what a command decided (or what `record` asks) and
/// reports the result through `committed`, or replaces the model through `reloaded` after a
/// conflict or a restart. Commands to an agent go one at a time per blade; each one's result
/// comes back through `commandFinished` with the id it was sent with, and a result for any
/// other id (a duplicate, or an answer from an older session) changes nothing.
public struct ControllerCore: Sendable {
    public struct Settings: Sendable, Equatable {
        public var suspectAfterMillis: UInt64
        public var unreachableAfterMillis: UInt64
        /// Reconciliation rounds of one blade before it waits for the next heartbeat.
        public var maxRounds: Int

        public init(suspectAfterMillis: UInt64 = 3_000, unreachableAfterMillis: UInt64 = 6_000, maxRounds: Int = 8) {
            self.suspectAfterMillis = suspectAfterMillis
            self.unreachableAfterMillis = unreachableAfterMillis
            self.maxRounds = maxRounds
        }
    }

    /// What the shell must do.
    public enum Directive: Sendable, Equatable {
        /// Commit these events (a change of a blade's health, a failed LPAR, a refused command);
        /// the result comes back through `committed`.
        case record([ClusterEvent])
        /// Send `command` to the blade's agent as command `id`, stamped with the model's
        /// generation; the result comes back through `commandFinished`.
        case send(blade: String, id: String, command: AgentCommand, generation: UInt64)
        /// Commit these changes, decided on the model at its current generation (a migration's
        /// next phase); after a conflict they are decided again from the model read back.
        case commit([StoreOp])
        /// Something an operator should see in the log.
        case log(Log)
    }

    public struct Log: Sendable, Equatable {
        public enum Level: Sendable, Equatable { case debug, notice, warning }
        public var level: Level
        public var message: String
        public var blade: String
        public var detail: String

        public init(_ level: Level, _ message: String, blade: String, detail: String) {
            self.level = level
            self.message = message
            self.blade = blade
            self.detail = detail
        }
    }

    /// How a command to an agent ended, as the shell saw it.
    public enum CommandResult: Sendable, Equatable {
        /// Done; `status` is the LPAR's report that came with the answer.
        case done(status: LPARReport?)
        /// The agent refused it (`reason`), or answered with an error.
        case refused(reason: String, status: LPARReport?)
        /// No answer: the link failed or the call timed out.
        case linkFailed(reason: String)
    }

    /// One blade's reconciliation while it runs.
    struct Reconciliation: Sendable, Equatable {
        var plan: [AgentCommand]
        var inFlight: (id: String, command: AgentCommand)?
        var refused: Set<String> = []
        var round = 1
        /// Something changed while the round ran: plan again after it.
        var again = false

        static func == (a: Reconciliation, b: Reconciliation) -> Bool {
            a.plan == b.plan && a.inFlight?.id == b.inFlight?.id && a.inFlight?.command == b.inFlight?.command
                && a.refused == b.refused && a.round == b.round && a.again == b.again
        }
    }

    public let settings: Settings
    public let commands: ClusterCommands
    public let orchestrator: MigrationOrchestrator
    /// The migrations the store held when this controller started: those not yet decided
    /// roll back (what happened meanwhile is unknown).
    let inheritedMigrations: Set<String>
    public private(set) var model: ClusterModel
    public private(set) var liveness: BladeLiveness
    /// What each blade's agent last reported, by LPAR name; nil until it reported in this session.
    public private(set) var actual: [String: [String: LPARReport]] = [:]
    /// Blades whose agent has a session (registered on a connection that is open).
    public private(set) var sessions: Set<String> = []
    var reconciliations: [String: Reconciliation] = [:]
    /// The last refusal recorded per blade and command, so that a repeated one is one event.
    var lastFailure: [String: String] = [:]
    var commandCounter: UInt64 = 0

    /// A core over `model` as the store holds it; every blade it knows gets one lease from
    /// `now` before it counts as suspect.
    public init(model: ClusterModel, settings: Settings, now: UInt64, commands: ClusterCommands = ClusterCommands(),
                orchestrator: MigrationOrchestrator = MigrationOrchestrator()) {
        self.settings = settings
        self.commands = commands
        self.orchestrator = orchestrator
        self.inheritedMigrations = Set(model.activeMigrations.map(\.id))
        self.model = model
        liveness = BladeLiveness(suspectAfterMillis: settings.suspectAfterMillis, unreachableAfterMillis: settings.unreachableAfterMillis)
        for blade in model.blades.keys.sorted() { liveness.track(blade, since: now) }
    }

    /// Every blade's health now.
    public func health(at now: UInt64) -> [String: BladeHealth] {
        Dictionary(uniqueKeysWithValues: model.blades.keys.map { ($0, liveness.health(of: $0, at: now)) })
    }

    /// Whether a blade's reconciliation is running (for tests and diagnostics).
    public func isReconciling(_ blade: String) -> Bool { reconciliations[blade] != nil }

    // MARK: The model

    /// The store accepted `ops` at `generation`: the model follows, and each blade whose
    /// desired state the ops changed (and that has a session) is reconciled toward it.
    public mutating func committed(_ ops: [StoreOp], generation: UInt64, lastEventSequence: UInt64) -> [Directive] {
        var affected = Self.blades(touchedBy: ops, in: model)
        model.apply(ops, generation: generation, lastEventSequence: lastEventSequence)
        affected.formUnion(Self.blades(touchedBy: ops, in: model))
        var directives: [Directive] = []
        for blade in affected.intersection(sessions).sorted() { directives += reconcile(blade) }
        return directives
    }

    /// The blades whose desired state `ops` change, as `model` places them: where a claim is
    /// (or was), where a partition whose spec or VMs change runs, a blade re-registered.
    static func blades(touchedBy ops: [StoreOp], in model: ClusterModel) -> Set<String> {
        var blades: Set<String> = []
        for op in ops {
            switch op {
            case .putClaim(let claim):
                blades.insert(claim.blade)
                if let blade = model.claims[claim.partition]?.blade { blades.insert(blade) }
            case .deleteClaim(let name), .deletePartition(let name):
                if let blade = model.claims[name]?.blade { blades.insert(blade) }
            case .putPartition(let partition):
                if let blade = model.claims[partition.name]?.blade { blades.insert(blade) }
            case .putVM(let vm):
                if let blade = model.claims[vm.partition]?.blade { blades.insert(blade) }
            case .deleteVM(let key):
                if let blade = model.claims[key.partition]?.blade { blades.insert(blade) }
            case .putBlade(let blade):
                blades.insert(blade.id)
            case .putMigration(let migration):
                blades.insert(migration.source)
                if let target = migration.target { blades.insert(target.blade) }
                if let earlier = model.migrations[migration.id]?.target { blades.insert(earlier.blade) }
            case .putTenant, .deleteTenant, .event:
                break
            }
        }
        return blades
    }

    /// The model as the store holds it now, read again because another writer changed it (a
    /// conflict, or the store's generation moved): every blade with a session is reconciled
    /// toward it, since any of them may have changed.
    public mutating func reloaded(_ model: ClusterModel, now: UInt64) -> [Directive] {
        self.model = model
        for blade in model.blades.keys.sorted() { liveness.track(blade, since: now) }
        var directives: [Directive] = []
        for blade in sessions.sorted() { directives += reconcile(blade) }
        return directives
    }

    // MARK: Agents

    /// A blade's agent registered on a new connection (its registration is committed): the
    /// session starts over, with nothing reported yet and no command outstanding.
    public mutating func registered(_ blade: String, now: UInt64, wallMillis: UInt64) -> [Directive] {
        sessions.insert(blade)
        actual[blade] = nil
        reconciliations[blade] = nil
        return heard(from: blade, now: now, wallMillis: wallMillis)
    }

    /// The blade's agent's connection closed: commands in flight are void.
    public mutating func disconnected(_ blade: String) {
        sessions.remove(blade)
        reconciliations[blade] = nil
    }

    /// A heartbeat of a blade with a session: what it holds, by LPAR. A failed LPAR is
    /// recorded once, the lease renewed, and the blade reconciled.
    public mutating func heartbeat(_ blade: String, reports: [String: LPARReport], now: UInt64, wallMillis: UInt64) -> [Directive] {
        guard sessions.contains(blade) else { return [] }
        var failures: [ClusterEvent] = []
        for (name, report) in reports.sorted(by: { $0.key < $1.key }) where report.state == .failed {
            guard actual[blade]?[name]?.state != .failed, let partition = model.partitions[name] else { continue }
            failures.append(ClusterEvent(timeMillis: wallMillis, kind: "partition.failed", subject: name,
                                         message: "on \(blade): \(report.failureReason ?? "failed")", tenant: partition.spec.tenant))
        }
        actual[blade] = reports
        var directives: [Directive] = failures.isEmpty ? [] : [.record(failures)]
        directives += heard(from: blade, now: now, wallMillis: wallMillis)
        directives += reconcile(blade)
        directives += advanceMigrations(now: now, wallMillis: wallMillis)
        return directives
    }

    /// The next phase of every migration whose agents' reports moved it, as one commit.
    public func advanceMigrations(now: UInt64, wallMillis: UInt64) -> [Directive] {
        guard !model.activeMigrations.isEmpty else { return [] }
        let ops = orchestrator.steps(model: model, actual: actual, health: health(at: now), commands: commands,
                                     restarted: inheritedMigrations, wallMillis: wallMillis)
        return ops.isEmpty ? [] : [.commit(ops)]
    }

    private mutating func heard(from blade: String, now: UInt64, wallMillis: UInt64) -> [Directive] {
        guard let change = liveness.heard(from: blade, at: now), let from = change.from else { return [] }
        return [.record([ClusterEvent(timeMillis: wallMillis, kind: "blade.\(change.to.rawValue)", subject: blade,
                                      message: "heartbeats again (was \(from.rawValue))")])]
    }

    /// The lease timer: each blade that turned suspect or unreachable is recorded.
    public mutating func tick(now: UInt64, wallMillis: UInt64) -> [Directive] {
        let events = liveness.evaluate(at: now).map { change in
            ClusterEvent(timeMillis: wallMillis, kind: "blade.\(change.to.rawValue)", subject: change.blade,
                         message: change.to == .ready ? "heartbeats again" :
                            "no heartbeat for \(change.to == .suspect ? settings.suspectAfterMillis : settings.unreachableAfterMillis) ms (was \(change.from.rawValue))")
        }
        return (events.isEmpty ? [] : [.record(events)]) + advanceMigrations(now: now, wallMillis: wallMillis)
    }

    // MARK: Reconciliation

    /// Drives the blade toward the model, one command at a time; asked while a round runs, it
    /// plans again once the round is over.
    public mutating func reconcile(_ blade: String) -> [Directive] {
        guard sessions.contains(blade), actual[blade] != nil else { return [] }
        if reconciliations[blade] != nil {
            reconciliations[blade]?.again = true
            return []
        }
        let plan = Reconciler.commands(for: blade, model: model, actual: actual[blade] ?? [:])
        guard !plan.isEmpty else { return [] }
        reconciliations[blade] = Reconciliation(plan: plan)
        return next(blade)
    }

    /// The result of command `id` to `blade`.
    public mutating func commandFinished(_ blade: String, id: String, _ result: CommandResult, wallMillis: UInt64) -> [Directive] {
        guard let inFlight = reconciliations[blade]?.inFlight, inFlight.id == id else { return [] }
        reconciliations[blade]?.inFlight = nil
        let command = inFlight.command
        let key = "\(blade) \(command)"
        var directives: [Directive] = []
        switch result {
        case .done(let status):
            if let status {
                actual[blade, default: [:]][status.name] = status
            } else if case .remove(let name) = command {
                actual[blade]?[name] = nil
            }
            lastFailure[key] = nil
            directives.append(.log(Log(.debug, "agent did a command", blade: blade, detail: "\(command)")))
        case .refused(let reason, let status):
            if let status { actual[blade, default: [:]][status.name] = status }
            reconciliations[blade]?.refused.insert(command.lpar)
            directives.append(.log(Log(.warning, "agent refused a command", blade: blade, detail: "\(command): \(reason)")))
            if lastFailure[key] != reason {
                lastFailure[key] = reason
                directives.append(.record([ClusterEvent(timeMillis: wallMillis, kind: "agent.command-failed", subject: blade,
                                                        message: "\(command): \(reason)", tenant: model.partitions[command.lpar]?.spec.tenant)]))
            }
        case .linkFailed(let reason):
            reconciliations[blade] = nil
            return [.log(Log(.warning, "command to agent failed", blade: blade, detail: "\(command): \(reason)"))]
        }
        return directives + next(blade)
    }

    /// The next command of the blade's plan, or the next round, or the end.
    private mutating func next(_ blade: String) -> [Directive] {
        while var state = reconciliations[blade] {
            while let command = state.plan.first {
                state.plan.removeFirst()
                guard !state.refused.contains(command.lpar) else { continue }
                commandCounter += 1
                let id = "c\(commandCounter)"
                state.inFlight = (id, command)
                reconciliations[blade] = state
                return [.send(blade: blade, id: id, command: command, generation: model.generation)]
            }
            // The round is over: plan again when something changed meanwhile, or once after a
            // first round that refused nothing (to see that it converged).
            let done = (!state.again && (state.round > 1 || !state.refused.isEmpty)) || state.round >= settings.maxRounds
            let plan = done ? [] : Reconciler.commands(for: blade, model: model, actual: actual[blade] ?? [:])
            if plan.isEmpty {
                reconciliations[blade] = nil
                return []
            }
            reconciliations[blade] = Reconciliation(plan: plan, round: state.round + 1)
        }
        return []
    }
}

extension ControllerCore.CommandResult: CustomStringConvertible {
    public var description: String {
        switch self {
        case .done(let status): return "done\(status.map { " (\($0.name) \($0.state.rawValue))" } ?? "")"
        case .refused(let reason, _): return "refused: \(reason)"
        case .linkFailed(let reason): return "no answer: \(reason)"
        }
    }
}
