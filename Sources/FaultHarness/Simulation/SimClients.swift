#if canImport(Glibc)
import Glibc
#endif
import FaultHarness
import FaultScenario
import SeededRandom

/// The workload's clients in the simulation: each sends its planned operations in order, each
/// at its time or once the previous one is answered, to the controller (odd-numbered clients to
/// a second controller while one runs), and records what it learned; no answer within 5 s is
/// an unknown outcome.
extension SimWorld {
    func clientNext(_ index: Int) {
        guard clients[index].inFlight == nil, clients[index].next < clients[index].operations.count else { return }
        let operation = clients[index].operations[clients[index].next]
        guard operation.atMillis <= now else {
            schedule(.clientNext(client: index), after: operation.atMillis - now)
            return
        }
        guard !healed else { clients[index].next = clients[index].operations.count; return }
        clients[index].next += 1
        requestCounter += 1
        clients[index].inFlight = (requestCounter, now, operation)
        let target = index % 2 == 1 && controllers[1] != nil ? 1 : 0
        send(.request(id: requestCounter, operation.action), from: .client(index), to: .controller(target))
        schedule(.clientTimeout(client: index, request: requestCounter), after: 5_000)
    }

    func complete(_ index: Int, _ outcome: HistoryEntry.Outcome) {
        guard let inFlight = clients[index].inFlight else { return }
        clients[index].inFlight = nil
        history.append(HistoryEntry(client: "client-\(index + 1)", action: inFlight.operation.historyAction, invokedMillis: inFlight.invoked,
                                    completedMillis: now, outcome: outcome))
        log("client-\(index + 1) \(inFlight.operation.historyAction): \(outcome)")
        schedule(.clientNext(client: index), after: 0)
    }
}

/// The nemesis of the simulation: faults at times drawn from the seed (a Poisson process at
/// the configured rate, within the run, none in its first and last five seconds), each healed
/// after a duration drawn too. What a fault hits (one blade, a chassis of them, every blade;
/// one way or both) is drawn as well.
enum SimFaultPlanner {
    static func plan(config: SimulationConfig, seed: UInt64) -> [(UInt64, SimFault)] {
        var random = SplitMix64(seed: seed).fork(3)
        var faults: [(UInt64, SimFault)] = []
        let start: UInt64 = 5_000, end = config.durationMillis > 10_000 ? config.durationMillis - 5_000 : config.durationMillis
        guard config.faultsPerMinute > 0, end > start else { return [] }
        var time = Double(start)
        let chassis = config.scenario.cluster.chassis
        while true {
            time += -log1p(-random.unit()) / config.faultsPerMinute * 60_000
            let at = UInt64(time)
            guard at < end else { break }
            let lasting = UInt64(1_000 + random.below(20_000))
            let heal = min(at + lasting, config.durationMillis)
            var kinds: [(Double, String)] = [(3, "cut"), (2, "degrade"), (2, "crash-agent"), (1.5, "pause-agent"), (1, "crash-controller"),
                                             (1, "crash-after-commit"), (1.5, "fail-lpar")]
            if config.testSwitches.contains(.sharedStore) { kinds.append((2, "second-controller")) }
            var pick = random.unit() * kinds.reduce(0) { $0 + $1.0 }
            var kind = kinds[kinds.count - 1].1
            for (weight, name) in kinds {
                if pick < weight { kind = name; break }
                pick -= weight
            }
            let oneBlade = random.below(config.blades)
            let targets: [Int]
            switch random.below(10) {
            case 0: targets = Array(0..<config.blades)
            case 1, 2: targets = (0..<config.blades).filter { $0 % chassis == oneBlade % chassis }
            default: targets = [oneBlade]
            }
            switch kind {
            case "cut":
                let cut = LinkBehaviour(cut: true)
                let way = random.below(3)
                faults.append((at, .link(agents: targets, toController: way == 1 ? nil : cut, fromController: way == 2 ? nil : cut)))
                faults.append((heal, .healLinks(agents: targets)))
            case "degrade":
                let link = LinkBehaviour(baseDelayMillis: UInt64(random.below(300)), jitterMillis: UInt64(random.below(500)),
                                         loss: random.unit() * 0.5, duplication: random.unit() * 0.2)
                faults.append((at, .link(agents: targets, toController: link, fromController: link)))
                faults.append((heal, .healLinks(agents: targets)))
            case "crash-agent":
                faults.append((at, .crashAgent(oneBlade)))
                faults.append((heal, .restartAgent(oneBlade)))
            case "pause-agent":
                faults.append((at, .pauseAgent(oneBlade)))
                faults.append((heal, .resumeAgent(oneBlade)))
            case "crash-controller":
                faults.append((at, .crashController))
                faults.append((min(at + UInt64(500 + random.below(5_000)), config.durationMillis), .restartController))
            case "crash-after-commit":
                faults.append((at, .crashAfterNextCommit))
                faults.append((min(at + UInt64(2_000 + random.below(5_000)), config.durationMillis), .restartController))
            case "fail-lpar":
                faults.append((at, .failLPAR(pick: random.next())))
            default:
                faults.append((at, .startSecondController))
                faults.append((heal, .stopSecondController))
            }
        }
        return faults.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element)
    }
}

extension SimWorld {
    /// Carries out one fault of the plan.
    func inject(_ fault: SimFault) {
        if fault.injects { faultsInjected += 1 }
        log("FAULT \(fault)")
        switch fault {
        case .link(let targets, let to, let from):
            for agent in targets {
                network.toController[agent] = to ?? .healthy
                network.fromController[agent] = from ?? .healthy
            }
        case .healLinks(let targets):
            for agent in targets {
                network.toController[agent] = .healthy
                network.fromController[agent] = .healthy
            }
        case .crashAgent(let agent): crashAgent(agent)
        case .restartAgent(let agent): restartAgent(agent)
        case .pauseAgent(let agent): pauseAgent(agent)
        case .resumeAgent(let agent): resumeAgent(agent)
        case .crashController: crashController(0)
        case .restartController: restartController()
        case .crashAfterNextCommit: controllers[0]?.crashAfterCommit = true
        case .failLPAR(let pick):
            var running: [(Int, String)] = []
            for agent in agents where agent.alive && !agent.paused {
                for lpar in agent.core.actualLPARs() where lpar.state == .running { running.append((agent.index, lpar.name)) }
            }
            guard !running.isEmpty else { return }
            let (agent, lpar) = running[Int(pick % UInt64(running.count))]
            crashed.insert(lpar)
            agentInput(agent, .driver(lpar: lpar, .failed(reason: "killed by the nemesis")))
        case .startSecondController: startSecondController()
        case .stopSecondController: stopSecondController()
        }
    }
}
