import AgentCore
import ClusterCore
import Partitioner

/// The agent's shell in the simulation, as `AgentService` and `BladeRuntime` are on a real
/// blade: dial and register (again with backoff after a failure), heartbeat once per interval
/// after the previous one was answered, carry out the core's directives through a simulated
/// LPAR driver whose operations take a few milliseconds.
extension SimWorld {
    func agentTimer(_ index: Int, _ timer: AgentTimer) {
        switch timer {
        case .register:
            guard agents[index].session == nil, agents[index].pendingSession == nil else { return }
            agents[index].sessionCounter += 1
            let session = agents[index].incarnation * 1_000_000 + agents[index].sessionCounter
            agents[index].pendingSession = session
            send(.register(session: session, blade: agents[index].blade), from: .agent(index), to: .controller(0))
            schedule(.agentTimer(agent: index, incarnation: agents[index].incarnation, .registerTimeout(session: session)), after: 5_000)
        case .registerTimeout(let session):
            guard agents[index].pendingSession == session else { return }
            agents[index].pendingSession = nil
            linkDown(index, reason: "no answer to the registration")
        case .heartbeat:
            guard let session = agents[index].session, agents[index].awaitingHeartbeat == nil else { return }
            for directive in agents[index].core.handle(.tick) {
                guard case .sendHeartbeat(let sequence) = directive else { carryOut(directive, agent: index); continue }
                agents[index].awaitingHeartbeat = sequence
                send(.heartbeat(session: session, reports: reports(index)), from: .agent(index), to: .controller(0))
                schedule(.agentTimer(agent: index, incarnation: agents[index].incarnation, .heartbeatTimeout(session: session, sequence: sequence)),
                         after: 5_000)
            }
        case .heartbeatTimeout(let session, let sequence):
            guard agents[index].session == session, agents[index].awaitingHeartbeat == sequence else { return }
            linkDown(index, reason: "no answer to heartbeat \(sequence)")
        }
    }

    func agentReceive(_ index: Int, _ message: SimMessage) {
        switch message {
        case .registered(let session):
            guard agents[index].pendingSession == session else { return }
            agents[index].pendingSession = nil
            agents[index].session = session
            agents[index].backoffMillis = 200
            agentInput(index, .link(.up))
            schedule(.agentTimer(agent: index, incarnation: agents[index].incarnation, .heartbeat), after: 0)
        case .heartbeatAck(let session):
            guard agents[index].session == session, agents[index].awaitingHeartbeat != nil else { return }
            agents[index].awaitingHeartbeat = nil
            schedule(.agentTimer(agent: index, incarnation: agents[index].incarnation, .heartbeat), after: config.heartbeatMillis)
        case .sessionClosed(let session):
            guard agents[index].session == session || agents[index].pendingSession == session else { return }
            agents[index].pendingSession = nil
            linkDown(index, reason: "the controller closed the connection")
        case .command(let session, let id, let command):
            // A command on another connection than the current one never reaches this one.
            guard agents[index].session == session else { return }
            agentInput(index, .command(id: id, Self.bladeCommand(command)))
        case .register, .heartbeat, .commandResult, .request, .reply:
            break
        }
    }

    /// The link is down: the core is told, the connection closed, and the agent dials again
    /// after its backoff (0.2 s doubling to 5 s, plus up to 0.1 s).
    private func linkDown(_ index: Int, reason: String) {
        if let session = agents[index].session {
            send(.sessionClosed(session: session), from: .agent(index), to: .controller(0))
        }
        agents[index].session = nil
        agents[index].awaitingHeartbeat = nil
        agentInput(index, .link(.down))
        log("\(agents[index].id) link down (\(reason)); dialing again in \(agents[index].backoffMillis) ms")
        let delay = agents[index].backoffMillis + UInt64(driverRandom.below(101))
        agents[index].backoffMillis = min(agents[index].backoffMillis * 2, 5_000)
        schedule(.agentTimer(agent: index, incarnation: agents[index].incarnation, .register), after: delay)
    }

    func agentInput(_ index: Int, _ input: AgentInput) {
        for directive in agents[index].core.handle(input) { carryOut(directive, agent: index) }
    }

    /// One directive of the agent's core, through the simulated driver.
    private func carryOut(_ directive: AgentDirective, agent index: Int) {
        let incarnation = agents[index].incarnation
        func later(_ lpar: String, _ report: DriverReport, within range: ClosedRange<Int>) {
            let delay = UInt64(range.lowerBound + driverRandom.below(range.count))
            schedule(.driver(agent: index, incarnation: incarnation, lpar: lpar, report), after: delay)
        }
        switch directive {
        case .start(let launch): later(launch.spec.name, .started, within: 20...200)
        case .stop(let lpar): later(lpar, .stopped, within: 10...100)
        case .releaseDisk(let lpar, _): later(lpar, .diskReleased, within: 5...50)
        case .createVM(let vm, _): later(vm.partition, .vm(name: vm.name, .started), within: 10...100)
        case .deleteVM, .setPool, .saveLUNs, .sendHeartbeat, .expectMigration, .endMigration:
            break
        case .resumeIncoming(let launch, _): later(launch.spec.name, .started, within: 5...50)
        case .sendMigration(let migration):
            // The simulation does not model the data path of a migration yet: it fails, and
            // the controller rolls it back.
            later(migration.spec.name, .migration(id: migration.id, .failed(reason: "the simulation models no migration data path")), within: 5...50)
        case .reply(let id, let outcome, let lpar):
            guard let session = agents[index].session else { return }   // the connection is gone with its answer
            let status = lpar.flatMap { agents[index].core.report(of: $0, observation: nil) }.map(Self.report)
            let result: ControllerCore.CommandResult = switch outcome {
            case .ok: .done(status: status)
            case .refused(let reason): .refused(reason: reason, status: status)
            }
            send(.commandResult(session: session, id: id, result), from: .agent(index), to: .controller(0))
        case .log(let entry):
            log("\(agents[index].id): \(entry.message)")
        }
    }

    /// Every LPAR's report, as a heartbeat carries it.
    func reports(_ index: Int) -> [String: LPARReport] {
        var reports: [String: LPARReport] = [:]
        for value in agents[index].core.reports(observations: [:]) { reports[value.name] = Self.report(value) }
        return reports
    }

    static func report(_ value: LPARReportValue) -> LPARReport {
        let state = LPARReport.State(rawValue: value.state.rawValue) ?? .failed
        return LPARReport(name: value.name, state: state, failureReason: value.failureReason, vms: value.vms.map { vm in
            let vmState: LPARReport.VMReport.State = switch vm.state {
            case .creating: .creating
            case .running: .running
            case .failed: .failed
            }
            return LPARReport.VMReport(name: vm.name, state: vmState, failureReason: vm.state.failureReason, operations: vm.operations)
        }, migration: value.migration.map { migration in
            LPARMigrationReport(
                id: migration.id, role: migration.role == .source ? .source : .target,
                stage: LPARMigrationReport.Stage(rawValue: migration.stage.rawValue) ?? .failed, failureReason: migration.failureReason,
                progress: MigrationProgress(round: migration.figures.round, sentBytes: migration.figures.sentBytes,
                                            remainingBytes: migration.figures.remainingBytes,
                                            dirtyBytesPerSecond: migration.figures.dirtyBytesPerSecond,
                                            linkBytesPerSecond: migration.figures.linkBytesPerSecond,
                                            downtimeMillis: migration.figures.downtimeMillis))
        })
    }

    /// An LPAR plan as the agent's core takes it (what the wire's LPARDefinition carries).
    static func definitionInput(_ plan: LPARPlan) -> LPARDefinitionInput {
        let shared = plan.serviceRatio != nil
        return LPARDefinitionInput(
            name: plan.name, dedicatedCores: shared ? [] : plan.cores, sharedCPUs: shared ? plan.logicalCPUs : nil,
            serviceRatio: plan.serviceRatio, capped: shared ? true : nil, memoryBase: plan.memoryBase, memoryBytes: plan.memoryBytes,
            vmm: plan.vmm, vmcsShadowing: plan.shadowVMCS, diskBytes: plan.diskBytes, poolCores: shared ? plan.cores : [],
            tenant: plan.tenant)
    }

    /// The controller's command as the agent's core takes it (what the wire mapping does on a
    /// real blade).
    static func bladeCommand(_ command: AgentCommand) -> BladeCommand {
        switch command {
        case .define(let plan): return .define(definitionInput(plan))
        case .activate(let name): return .activate(lpar: name)
        case .deactivate(let name): return .deactivate(lpar: name)
        case .remove(let name): return .remove(lpar: name)
        case .createVM(let vm):
            return .createVM(VMRequest(partition: vm.partition, name: vm.name, vcpus: vm.vcpus, memoryBytes: vm.memoryBytes, workload: .idle))
        case .deleteVM(let key): return .deleteVM(partition: key.partition, name: key.name)
        case .prepareIncoming(let plan, let migration, let source):
            return .prepareIncoming(definitionInput(plan), migration: migration, source: source)
        case .migrateOut(let name, let migration, let target, let address, let downtime):
            return .migrateOut(lpar: name, migration: migration, target: target, address: address, maxDowntimeMillis: downtime)
        case .cancelMigration(let name, let migration): return .cancelMigration(lpar: name, migration: migration)
        }
    }

    // MARK: Faults of an agent

    /// kill -9: the process and the LPARs it runs are gone; the controller's connection sees
    /// a reset, when the network lets it through.
    func crashAgent(_ index: Int) {
        guard agents[index].alive else { return }
        if let session = agents[index].session ?? agents[index].pendingSession {
            send(.sessionClosed(session: session), from: .agent(index), to: .controller(0))
        }
        agents[index].alive = false
        agents[index].paused = false
        agents[index].deferred = []
        agents[index].incarnation += 1
        agents[index].session = nil
        agents[index].pendingSession = nil
        agents[index].awaitingHeartbeat = nil
        agents[index].core = Self.agentCore(agents[index].resources)
    }

    func restartAgent(_ index: Int) {
        guard !agents[index].alive else { return }
        agents[index].alive = true
        agents[index].backoffMillis = 200
        schedule(.agentTimer(agent: index, incarnation: agents[index].incarnation, .register), after: UInt64(50 + driverRandom.below(200)))
    }

    func pauseAgent(_ index: Int) {
        guard agents[index].alive else { return }
        agents[index].paused = true
    }

    /// SIGCONT: what arrived or fired during the pause happens now, in order.
    func resumeAgent(_ index: Int) {
        guard agents[index].alive, agents[index].paused else { return }
        agents[index].paused = false
        let deferred = agents[index].deferred
        agents[index].deferred = []
        for event in deferred { queue.schedule(event, at: now) }
    }
}
