import AgentCore
import ClusterCore
import FaultHarness
import FaultScenario

/// What travels between the simulated nodes.
enum SimMessage {
    // An agent and a controller.
    case register(session: UInt64, blade: Blade)
    case registered(session: UInt64)
    /// The connection of `session` is gone (its peer's process ended): the other side sees
    /// the reset, when the network lets it through.
    case sessionClosed(session: UInt64)
    case heartbeat(session: UInt64, reports: [String: LPARReport])
    case heartbeatAck(session: UInt64)
    case command(session: UInt64, id: String, AgentCommand)
    case commandResult(session: UInt64, id: String, ControllerCore.CommandResult)
    // A client and a controller.
    case request(id: UInt64, PlannedOperation.Action)
    case reply(id: UInt64, HistoryEntry.Outcome)
}

extension SimMessage: CustomStringConvertible {
    /// The message in a few words (a trace line each).
    var description: String {
        switch self {
        case .register(let session, _): return "register (session \(session))"
        case .registered(let session): return "registered (session \(session))"
        case .sessionClosed(let session): return "connection of session \(session) closed"
        case .heartbeat(let session, let reports): return "heartbeat (session \(session), \(reports.count) LPARs)"
        case .heartbeatAck(let session): return "heartbeat answered (session \(session))"
        case .command(let session, let id, let command): return "\(id) \(command) (session \(session))"
        case .commandResult(let session, let id, let result): return "\(id) \(result) (session \(session))"
        case .request(let id, let action): return "request \(id): \(action)"
        case .reply(let id, let outcome): return "reply \(id): \(outcome)"
        }
    }
}

/// What happens at a time in the simulation.
enum SimEvent {
    case deliver(from: SimNode, to: SimNode, SimMessage)
    /// An agent's timer; stale when the agent's incarnation changed since it was set.
    case agentTimer(agent: Int, incarnation: UInt64, AgentTimer)
    /// The simulated LPAR driver of an agent reports on one LPAR.
    case driver(agent: Int, incarnation: UInt64, lpar: String, DriverReport)
    case controllerTick(controller: Int, incarnation: UInt64)
    case commandTimeout(controller: Int, incarnation: UInt64, blade: String, id: String)
    /// A controller drops a session it has heard nothing on for the idle timeout.
    case sessionIdle(controller: Int, incarnation: UInt64, blade: String, session: UInt64)
    case clientNext(client: Int)
    case clientTimeout(client: Int, request: UInt64)
    case fault(SimFault)
    case sample
}

enum AgentTimer: Equatable {
    /// Dial and register (again).
    case register
    /// No answer to the registration in time.
    case registerTimeout(session: UInt64)
    /// Time for the next heartbeat.
    case heartbeat
    /// No answer to heartbeat `sequence` in time.
    case heartbeatTimeout(session: UInt64, sequence: UInt64)
}

/// A fault the simulation injects, or its healing.
enum SimFault: Equatable, CustomStringConvertible {
    case link(agents: [Int], toController: LinkBehaviour?, fromController: LinkBehaviour?)
    case healLinks(agents: [Int])
    case crashAgent(Int)
    case restartAgent(Int)
    case pauseAgent(Int)
    case resumeAgent(Int)
    case crashController
    case restartController
    /// The controller crashes right after its next commit is durable, before it answers.
    case crashAfterNextCommit
    case failLPAR(pick: UInt64)
    case startSecondController
    case stopSecondController

    var injects: Bool {
        switch self {
        case .link, .crashAgent, .pauseAgent, .crashController, .crashAfterNextCommit, .failLPAR, .startSecondController: true
        case .healLinks, .restartAgent, .resumeAgent, .restartController, .stopSecondController: false
        }
    }

    var description: String {
        func agents(_ list: [Int]) -> String {
            list.count <= 3 ? list.map { "blade-\($0 + 1)" }.joined(separator: ",") : "\(list.count) blades"
        }
        func link(_ behaviour: LinkBehaviour?) -> String {
            guard let behaviour else { return "healthy" }
            if behaviour.cut { return "cut" }
            return "delay \(behaviour.baseDelayMillis)+\(behaviour.jitterMillis) ms, loss \(behaviour.loss), dup \(behaviour.duplication)"
        }
        switch self {
        case .link(let list, let to, let from): return "link of \(agents(list)): to controller \(link(to)); from controller \(link(from))"
        case .healLinks(let list): return "links of \(agents(list)) healed"
        case .crashAgent(let index): return "kill -9 agent blade-\(index + 1)"
        case .restartAgent(let index): return "restart agent blade-\(index + 1)"
        case .pauseAgent(let index): return "pause agent blade-\(index + 1)"
        case .resumeAgent(let index): return "resume agent blade-\(index + 1)"
        case .crashController: return "kill -9 the controller"
        case .restartController: return "restart the controller"
        case .crashAfterNextCommit: return "the controller dies after its next commit, before it answers"
        case .failLPAR(let pick): return "an LPAR fails (pick \(pick))"
        case .startSecondController: return "a second controller on the same store"
        case .stopSecondController: return "kill -9 the second controller"
        }
    }
}

extension SimEvent: CustomStringConvertible {
    var description: String {
        switch self {
        case .deliver(let from, let to, let message): return "\(from) -> \(to): \(message)"
        case .agentTimer(let agent, _, let timer): return "blade-\(agent + 1) timer: \(timer)"
        case .driver(let agent, _, let lpar, let report): return "blade-\(agent + 1) driver: \(lpar) \(report)"
        case .controllerTick(let controller, _): return "\(SimNode.controller(controller)) lease tick"
        case .commandTimeout(let controller, _, let blade, let id): return "\(SimNode.controller(controller)) timeout of \(id) to \(blade)"
        case .sessionIdle(let controller, _, let blade, let session): return "\(SimNode.controller(controller)) idle check of \(blade) session \(session)"
        case .clientNext(let client): return "client-\(client + 1) next"
        case .clientTimeout(let client, let request): return "client-\(client + 1) timeout of request \(request)"
        case .fault(let fault): return "fault: \(fault)"
        case .sample: return "sample"
        }
    }
}
