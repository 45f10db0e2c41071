import AgentCore
import ClusterCore
public import FaultHarness
import FaultScenario
import Partitioner
import Placement
import SeededRandom

/// One simulated cluster run: the pure cores of a controller (`ControllerCore` with
/// `ClusterCommands`) and of every agent (`AgentCore` with a simulated LPAR driver), clients
/// running the workload's plan, a simulated network, store and clock, and the nemesis — all
/// driven by one event queue in virtual time from one seed. The same seed gives the same run,
/// event for event.
final class SimWorld {
    struct Agent {
        let index: Int
        let id: String
        let blade: Blade
        let resources: BladeResources
        var incarnation: UInt64 = 1
        var alive = true
        var paused = false
        /// What arrived or fired while the agent was paused, in order.
        var deferred: [SimEvent] = []
        var core: AgentCore
        /// The session the controller acknowledged; nil while unregistered.
        var session: UInt64?
        /// The registration waiting for its answer.
        var pendingSession: UInt64?
        var sessionCounter: UInt64 = 0
        var backoffMillis: UInt64 = 200
        var awaitingHeartbeat: UInt64?
    }

    /// A controller process (a class: its core is mutated in place, never copied).
    final class Controller {
        let index: Int
        var incarnation: UInt64
        var up = true
        var core: ControllerCore
        /// The session each agent registered on, the agent, and when it was last heard.
        var sessions: [String: (session: UInt64, agent: Int, lastHeard: UInt64)] = [:]
        var crashAfterCommit = false
        /// Requests received and not yet answered, by client.
        var serving: [Int: UInt64] = [:]

        init(index: Int, incarnation: UInt64, core: ControllerCore) {
            self.index = index
            self.incarnation = incarnation
            self.core = core
        }
    }

    struct Client {
        var operations: [PlannedOperation]
        var next = 0
        /// The request in flight: its id, when it was sent, and what it does.
        var inFlight: (id: UInt64, invoked: UInt64, operation: PlannedOperation)?
    }

    let config: SimulationConfig
    let seed: UInt64
    let scenario: Scenario
    var queue = EventQueue<SimEvent>()
    private(set) var now: UInt64 = 0
    var store: SimStore
    var controllers: [Controller?] = [nil, nil]
    var agents: [Agent] = []
    var clients: [Client] = []
    var network: SimNetwork
    var history: [HistoryEntry] = []
    var violations: [Violation] = []
    private var seen: Set<String> = []
    /// Partitions whose LPAR the nemesis failed.
    var crashed: Set<String> = []
    var faultsInjected = 0
    var requestCounter: UInt64 = 0
    var networkRandom: SplitMix64
    var driverRandom: SplitMix64
    let commands: ClusterCommands
    /// Every event, when tracing.
    var trace: ((UInt64, String) -> Void)?
    var eventsHandled: UInt64 = 0
    /// The workload and the faults end here; then everything heals.
    var healed = false

    init(config: SimulationConfig, seed: UInt64) {
        self.config = config
        self.seed = seed
        scenario = config.scenario
        let root = SplitMix64(seed: seed)
        networkRandom = root.fork(1)
        driverRandom = root.fork(2)
        network = SimNetwork(agents: config.blades)
        store = SimStore(comparesGeneration: !config.testSwitches.contains(.noStoreCAS))
        let admission: SpreadLevel? = switch config.admission {
        case .blade?: .blade
        case .chassis?: .chassis
        case .rack?: .rack
        case .power?: .power
        case nil: nil
        }
        var policy = PlacementPolicy(admissionLevel: admission?.domainLevel)
        policy.testSkipsHardAntiAffinity = config.testSwitches.contains(.skipHardAntiAffinity)
        commands = ClusterCommands(placementPolicy: policy)
        // The tenants exist before the run, as the real harness creates them first.
        var tenantOps: [StoreOp] = []
        for tenant in scenario.tenants {
            tenantOps.append(.putTenant(Tenant(name: tenant.name, maxCores: tenant.quotaCores, maxMemoryBytes: tenant.quotaMemory,
                                               maxDiskBytes: 1 << 40, maxPartitions: tenant.quotaPartitions)))
        }
        _ = store.commit(tenantOps, expectedGeneration: 0)
        for index in 0..<config.blades {
            let id = "blade-\(index + 1)"
            let domains = scenario.cluster.domains(ofBlade: index)
            let resources = BladeResources(coreCount: config.coresPerBlade, memoryBytes: config.memoryPerBlade, l0ReservedBytes: config.l0ReservedBytes,
                                           disks: [BladeDisk(id: "fc0", lunCount: 64, shared: true)], nics: [BladeNIC(id: "eth0", shared: true)],
                                           nestedCapable: true)
            let blade = Blade(id: id, cores: config.coresPerBlade, memoryBytes: config.memoryPerBlade - config.l0ReservedBytes, diskBytes: 1 << 40,
                              nestedCapable: true, chassis: domains["chassis"]!, rack: domains["rack"]!, powerDomain: domains["power"]!,
                              backend: "sim", disks: [BladeDiskInfo(id: "fc0", luns: 64, shared: true)], nics: ["eth0"])
            agents.append(Agent(index: index, id: id, blade: blade, resources: resources, core: Self.agentCore(resources)))
        }
        controllers[0] = Controller(index: 0, incarnation: 1, core: ControllerCore(model: store.model, settings: config.controllerSettings, now: 0, commands: commands))
        let plan = WorkloadPlanner.plan(scenario, seed: seed)
        clients = (0..<scenario.workload.clients).map { client in Client(operations: plan.filter { $0.client == client }) }
    }

    static func agentCore(_ resources: BladeResources) -> AgentCore {
        // The resources are the simulation's own and valid: a core over them cannot be refused.
        try! AgentCore(resources: resources, configuration: .init(l0ReservedBytes: resources.l0ReservedBytes))
    }

    func log(_ text: @autoclosure () -> String) {
        if let trace { trace(now, text()) }
    }

    func schedule(_ event: SimEvent, after delay: UInt64) {
        queue.schedule(event, at: now + delay)
    }

    // MARK: Running

    /// Runs the workload and the faults for the configured time, heals everything, runs
    /// until the cluster settles (or the bound), and judges the end.
    func run() -> SimSeedResult {
        for agent in agents.indices { schedule(.agentTimer(agent: agent, incarnation: 1, .register), after: UInt64(driverRandom.below(500))) }
        schedule(.controllerTick(controller: 0, incarnation: 1), after: 250)
        for client in clients.indices { schedule(.clientNext(client: client), after: 0) }
        for (time, fault) in SimFaultPlanner.plan(config: config, seed: seed) { queue.schedule(.fault(fault), at: time) }
        schedule(.sample, after: config.sampleMillis)
        let end = config.durationMillis
        runUntil(end)
        heal()
        let settleDeadline = end + config.settleMillis
        var settled = false
        while now < settleDeadline {
            runUntil(min(now + 1_000, settleDeadline))
            if clientsIdle && unsettled().isEmpty { settled = true; break }
        }
        let observation = observe()
        record(InvariantChecker.checkFinal(observation, history: history, crashed: crashed))
        if !settled {
            record([Violation(.notSettled, at: now, "the cluster did not settle within \(config.settleMillis / 1_000) s after the faults healed: \(unsettled().prefix(3).joined(separator: "; "))")])
        }
        return SimSeedResult(seed: seed, simulatedMillis: now, events: eventsHandled, faults: faultsInjected, history: history, violations: violations)
    }

    private var clientsIdle: Bool { clients.allSatisfy { $0.inFlight == nil && $0.next >= $0.operations.count } }

    /// Handles every event up to `time`.
    func runUntil(_ time: UInt64) {
        while let next = queue.nextTime, next <= time, let (at, event) = queue.next() {
            now = at
            eventsHandled += 1
            if trace != nil, case .sample = event {} else { log("\(event)") }
            handle(event)
        }
        now = max(now, time)
    }

    private func handle(_ event: SimEvent) {
        switch event {
        case .deliver(let from, let to, let message):
            deliver(message, from: from, to: to)
        case .agentTimer(let agent, let incarnation, let timer):
            guard agents[agent].alive, agents[agent].incarnation == incarnation else { return }
            if agents[agent].paused { agents[agent].deferred.append(event); return }
            agentTimer(agent, timer)
        case .driver(let agent, let incarnation, let lpar, let report):
            guard agents[agent].alive, agents[agent].incarnation == incarnation else { return }
            if agents[agent].paused { agents[agent].deferred.append(event); return }
            agentInput(agent, .driver(lpar: lpar, report))
        case .controllerTick(let index, let incarnation):
            guard let controller = controllers[index], controller.up, controller.incarnation == incarnation else { return }
            if store.model.generation != controller.core.model.generation {
                // Another writer committed: read the store again, as the controller's tick does.
                carryOut(controller.core.reloaded(store.model, now: now), controller: index)
            }
            guard controller.up else { return }
            carryOut(controller.core.tick(now: now, wallMillis: now), controller: index)
            schedule(.controllerTick(controller: index, incarnation: incarnation), after: 250)
        case .commandTimeout(let index, let incarnation, let blade, let id):
            guard let controller = controllers[index], controller.up, controller.incarnation == incarnation else { return }
            carryOut(controller.core.commandFinished(blade, id: id, .linkFailed(reason: "no answer within 10000 ms"), wallMillis: now), controller: index)
        case .sessionIdle(let index, let incarnation, let blade, let session):
            guard let controller = controllers[index], controller.up, controller.incarnation == incarnation,
                  let current = controller.sessions[blade], current.session == session else { return }
            if now >= current.lastHeard + config.idleTimeoutMillis {
                controller.sessions[blade] = nil
                controller.core.disconnected(blade)
                log("\(SimNode.controller(index)) drops the idle session of \(blade)")
            } else {
                schedule(event, after: current.lastHeard + config.idleTimeoutMillis - now)
            }
        case .clientNext(let client):
            clientNext(client)
        case .clientTimeout(let client, let request):
            guard let inFlight = clients[client].inFlight, inFlight.id == request else { return }
            complete(client, .unknown)
        case .fault(let fault):
            if healed { return }
            inject(fault)
        case .sample:
            record(InvariantChecker.check(observe(), crashed: crashed))
            schedule(.sample, after: config.sampleMillis)
        }
    }

    func record(_ found: [Violation]) {
        for violation in found where violations.count < 100 {
            if seen.insert("\(violation.kind.rawValue) \(violation.detail)").inserted {
                violations.append(violation)
                log("VIOLATION \(violation)")
            }
        }
    }

    // MARK: The network

    func send(_ message: SimMessage, from: SimNode, to: SimNode) {
        let delays = network.deliveries(from: from, to: to, random: &networkRandom)
        if delays.isEmpty { log("\(from) -> \(to) lost: \(message)") }
        for delay in delays { schedule(.deliver(from: from, to: to, message), after: delay) }
    }

    private func deliver(_ message: SimMessage, from: SimNode, to: SimNode) {
        switch to {
        case .agent(let index):
            guard agents[index].alive else { return }
            if agents[index].paused { agents[index].deferred.append(.deliver(from: from, to: to, message)); return }
            agentReceive(index, message)
        case .controller(let index):
            guard let controller = controllers[index], controller.up else {
                if case .request(let id, _) = message, case .client = from {
                    // A refused connection: the request was never sent.
                    send(.reply(id: id, .failed("cannot reach the controller: connection refused")), from: to, to: from)
                }
                return
            }
            controllerReceive(index, message, from: from)
        case .client(let index):
            if case .reply(let id, let outcome) = message, clients[index].inFlight?.id == id { complete(index, outcome) }
        }
    }

    // MARK: Healing and settling

    /// Every fault healed: links healthy, every agent alive and running, the controller up,
    /// no second controller.
    func heal() {
        healed = true
        network.heal()
        if controllers[1] != nil { stopSecondController() }
        if controllers[0]?.up != true { restartController() }
        controllers[0]?.crashAfterCommit = false
        for index in agents.indices {
            if !agents[index].alive { restartAgent(index) }
            if agents[index].paused { resumeAgent(index) }
        }
        log("every fault healed")
    }

    /// What keeps the cluster from its desired state, in a few words each.
    func unsettled() -> [String] { InvariantChecker.unsettled(observe(), crashed: crashed) }

    // MARK: Observation

    /// The cluster as the checker sees it: every agent's actual LPARs (none for a dead agent:
    /// the simulated backend runs them inside it) and the store's partitions and claims.
    func observe() -> Observation {
        let blades = agents.map { agent in
            ObservedBlade(id: agent.id, cores: agent.resources.coreCount, memoryBytes: agent.resources.memoryBytes,
                          domains: scenario.cluster.domains(ofBlade: agent.index),
                          lpars: agent.alive ? agent.core.actualLPARs().map(Self.observed) : [])
        }
        let model = store.model
        let partitions = model.partitions.values.sorted { $0.name < $1.name }.map { partition in
            let spec = partition.spec
            let claim = model.claims[partition.name].map {
                StoredPartition.Claim(blade: $0.blade, cores: $0.cores, memoryBase: $0.memoryBase, memoryBytes: $0.memoryBytes)
            }
            return StoredPartition(name: partition.name, tenant: spec.tenant,
                                   spread: spec.antiAffinity.map { .init(group: "\(spec.tenant)/\($0.group)", level: $0.level.rawValue, hard: $0.hard,
                                                                         maxPerDomain: $0.maxPerDomain) },
                                   exclusiveBlade: spec.exclusiveBlade, claim: claim, shouldRun: partition.desired == .running)
        }
        return Observation(timeMillis: now, blades: blades, partitions: partitions)
    }

    static func observed(_ lpar: ActualLPARValue) -> ObservedLPAR {
        let state: ObservedLPAR.State = switch lpar.state {
        case .defined: .defined
        case .activating: .activating
        case .running: .running
        case .deactivating: .deactivating
        case .stopped: .stopped
        case .failed: .failed
        case .migrating: .migrating
        }
        var cores: [Int] = []
        if case .dedicated(let dedicated) = lpar.cpu { cores = dedicated }
        return ObservedLPAR(name: lpar.name, partition: lpar.name, tenant: lpar.tenant, state: state, cores: cores,
                            memoryStart: lpar.memory.base, memoryBytes: lpar.memory.size,
                            migration: lpar.migration.map { ObservedLPAR.Migration(target: $0.role == .target, handedOver: $0.stage == .handedOver) })
    }
}

/// What one seed's run came to.
public struct SimSeedResult: Sendable {
    public var seed: UInt64
    public var simulatedMillis: UInt64
    public var events: UInt64
    public var faults: Int
    public var history: [HistoryEntry]
    public var violations: [Violation]
}
