import ClusterCore
import FaultHarness
import FaultScenario

/// The controller's shell in the simulation, as the `Controller` actor is in the real one:
/// each request decided by `ClusterCommands` on the core's model and committed to the store
/// (on a conflict the model is read again and the request decided once more), agents'
/// registrations, heartbeats and command results fed to `ControllerCore`, and its directives
/// carried out over the simulated network.
extension SimWorld {
    func controllerReceive(_ index: Int, _ message: SimMessage, from: SimNode) {
        guard let controller = controllers[index] else { return }
        switch (message, from) {
        case (.register(let session, let blade), .agent(let agent)):
            switch commit(index, decide: { model throws(ClusterError) in
                try self.commands.registerBlade(blade, by: .agent(blade.id), in: model, now: self.now)
            }) {
            case .written, .unchanged: break
            case .refused, .gaveUp, .died: return
            }
            guard controller.up else { return }
            if controller.sessions[blade.id] != nil { controller.core.disconnected(blade.id) }
            controller.sessions[blade.id] = (session, agent, now)
            schedule(.sessionIdle(controller: index, incarnation: controller.incarnation, blade: blade.id, session: session),
                     after: config.idleTimeoutMillis)
            carryOut(controller.core.registered(blade.id, now: now, wallMillis: now), controller: index)
            guard controller.up else { return }
            send(.registered(session: session), from: .controller(index), to: from)
        case (.heartbeat(let session, let reports), .agent(let agent)):
            let blade = agents[agent].id
            guard controller.sessions[blade]?.session == session else { return }
            controller.sessions[blade]?.lastHeard = now
            carryOut(controller.core.heartbeat(blade, reports: reports, now: now, wallMillis: now), controller: index)
            guard controller.up else { return }
            send(.heartbeatAck(session: session), from: .controller(index), to: from)
        case (.commandResult(let session, let id, let result), .agent(let agent)):
            let blade = agents[agent].id
            guard controller.sessions[blade]?.session == session else { return }
            controller.sessions[blade]?.lastHeard = now
            carryOut(controller.core.commandFinished(blade, id: id, result, wallMillis: now), controller: index)
        case (.sessionClosed(let session), .agent(let agent)):
            let blade = agents[agent].id
            guard controller.sessions[blade]?.session == session else { return }
            controller.sessions[blade] = nil
            controller.core.disconnected(blade)
        case (.request(let id, let action), .client(let client)):
            controller.serving[client] = id
            let outcome = serve(index, action)
            guard controller.up else { return }   // it died after the commit: the answer is lost
            controller.serving[client] = nil
            send(.reply(id: id, outcome), from: .controller(index), to: from)
        default:
            break
        }
    }

    /// A client's request, decided and committed; its outcome as the client learns it.
    private func serve(_ index: Int, _ action: PlannedOperation.Action) -> HistoryEntry.Outcome {
        let workload = scenario.workload
        let now = self.now
        let commands = self.commands
        let health = controllers[index]!.core.health(at: now)
        let result: CommitOutcome
        switch action {
        case .createPartition(let tenant, let name, let groupName):
            var rule: AntiAffinityRule?
            if let groupName, let group = workload.groups.first(where: { $0.name == groupName && $0.tenant == tenant }) {
                rule = AntiAffinityRule(group: group.name, level: SpreadLevel(rawValue: group.level.rawValue) ?? .chassis, hard: group.hard, maxPerDomain: 1)
            }
            let spec = PartitionSpec(name: name, tenant: tenant, cores: workload.partitionCores, memoryBytes: workload.partitionMemory,
                                     diskBytes: 0, vmm: workload.partitionVMM, antiAffinity: rule)
            result = commit(index) { model throws(ClusterError) in
                try commands.createPartition(spec, by: .tenant(tenant), in: model, health: health, now: now).ops
            }
        case .deletePartition(let tenant, let name):
            result = commit(index) { model throws(ClusterError) in
                try commands.partitionAction(name, .delete, by: .tenant(tenant), in: model, health: health, now: now)
            }
        case .createVM(let tenant, let partition, let name):
            let vm = VM(name: name, partition: partition, vcpus: 1, memoryBytes: 64 << 20, workload: .idle)
            result = commit(index) { model throws(ClusterError) in try commands.createVM(vm, by: .tenant(tenant), in: model, now: now) }
        case .deleteVM(let tenant, let partition, let name):
            let key = VMKey(partition: partition, name: name)
            result = commit(index) { model throws(ClusterError) in try commands.deleteVM(key, by: .tenant(tenant), in: model, now: now) }
        case .cordon(let blade), .uncordon(let blade):
            let cordon = if case .cordon = action { true } else { false }
            result = commit(index) { model throws(ClusterError) in try commands.cordon(blade, cordon, by: .admin("harness"), in: model, now: now) }
        }
        switch result {
        case .written, .unchanged: return .ok
        case .refused(let error):
            switch error.kind {
            case .conflict, .unavailable: return .failed(error.message)
            default: return .refused(error.message)
            }
        case .gaveUp: return .failed("the cluster state kept changing underneath; retry")
        case .died: return .unknown
        }
    }

    enum CommitOutcome {
        case written
        /// Decided, and nothing to change.
        case unchanged
        case refused(ClusterError)
        /// Two conflicts in a row.
        case gaveUp
        /// The controller died after the write, before it could answer.
        case died
    }

    /// Decides on the model and commits, as `Controller.perform` does: on a conflict the
    /// model is read again from the store and the decision made once more.
    func commit(_ index: Int, decide: (ClusterModel) throws(ClusterError) -> [StoreOp]) -> CommitOutcome {
        guard let controller = controllers[index], controller.up else { return .died }
        for _ in 0..<2 {
            let ops: [StoreOp]
            do { ops = try decide(controller.core.model) } catch { return .refused(error) }
            if ops.isEmpty { return .unchanged }
            switch store.commit(ops, expectedGeneration: controller.core.model.generation) {
            case .written(let generation, let sequence):
                let directives = controller.core.committed(ops, generation: generation, lastEventSequence: sequence)
                if controller.crashAfterCommit {
                    log("\(SimNode.controller(index)) dies right after commit \(generation)")
                    crashController(index)
                    return .died
                }
                carryOut(directives, controller: index)
                return controller.up ? .written : .died
            case .conflict(let found):
                log("\(SimNode.controller(index)) conflict at generation \(controller.core.model.generation) (store at \(found)); reading again")
                carryOut(controller.core.reloaded(store.model, now: now), controller: index)
                guard controller.up else { return .died }
            }
        }
        return .gaveUp
    }

    func carryOut(_ directives: [ControllerCore.Directive], controller index: Int) {
        for directive in directives {
            guard let controller = controllers[index], controller.up else { return }
            switch directive {
            case .record(let events):
                _ = commit(index) { _ throws(ClusterError) in events.map { StoreOp.event($0) } }
            case .commit(let ops):
                // Decided on the model at this generation: after a conflict it is not retried.
                let generation = controller.core.model.generation
                _ = commit(index) { model throws(ClusterError) in model.generation == generation ? ops : [] }
            case .send(let blade, let id, let command, _):
                guard let session = controller.sessions[blade] else {
                    carryOut(controller.core.commandFinished(blade, id: id, .linkFailed(reason: "not connected"), wallMillis: now), controller: index)
                    continue
                }
                log("\(SimNode.controller(index)) -> \(blade): \(id) \(command)")
                send(.command(session: session.session, id: id, command), from: .controller(index), to: .agent(session.agent))
                schedule(.commandTimeout(controller: index, incarnation: controller.incarnation, blade: blade, id: id), after: 10_000)
            case .log(let entry):
                if entry.level != .debug { log("\(SimNode.controller(index)) \(entry.message): \(entry.blade) \(entry.detail)") }
            }
        }
    }

    // MARK: Faults of a controller

    /// kill -9: the model in memory, the sessions and the requests in flight are gone; the
    /// store keeps what was committed. Each connection sees a reset, when the network lets it
    /// through: agents dial again, a client's request in flight has an unknown outcome.
    func crashController(_ index: Int) {
        guard let controller = controllers[index], controller.up else { return }
        controller.up = false
        controller.incarnation += 1
        for (_, session) in controller.sessions.sorted(by: { $0.key < $1.key }) {
            send(.sessionClosed(session: session.session), from: .controller(index), to: .agent(session.agent))
        }
        controller.sessions = [:]
        for (client, request) in controller.serving.sorted(by: { $0.key < $1.key }) {
            send(.reply(id: request, .unknown), from: .controller(index), to: .client(client))
        }
        controller.serving = [:]
    }

    /// The controller starts again from the store.
    func restartController() {
        guard let controller = controllers[0], !controller.up else { return }
        controller.up = true
        controller.crashAfterCommit = false
        controller.core = ControllerCore(model: store.model, settings: config.controllerSettings, now: now, commands: commands)
        schedule(.controllerTick(controller: 0, incarnation: controller.incarnation), after: 250)
    }

    /// A second controller on the same store (the test switch `shared-store`): it serves the
    /// odd-numbered clients while it runs; agents stay with the first.
    func startSecondController() {
        guard controllers[1] == nil else { return }
        controllers[1] = Controller(index: 1, incarnation: 1, core: ControllerCore(model: store.model, settings: config.controllerSettings, now: now, commands: commands))
        schedule(.controllerTick(controller: 1, incarnation: 1), after: 250)
    }

    func stopSecondController() {
        guard controllers[1] != nil else { return }
        crashController(1)
        controllers[1] = nil
    }
}
