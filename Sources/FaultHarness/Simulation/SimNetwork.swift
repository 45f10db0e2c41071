import SeededRandom

/// A node of the simulated cluster.
enum SimNode: Hashable, Sendable, CustomStringConvertible {
    case controller(Int)
    case agent(Int)
    case client(Int)

    var description: String {
        switch self {
        case .controller(let index): return index == 0 ? "controller" : "controller-\(index + 1)"
        case .agent(let index): return "blade-\(index + 1)"
        case .client(let index): return "client-\(index + 1)"
        }
    }
}

/// What one direction of a link does to the messages on it, as TigerBeetle's VOPR network
/// does: delay them (a base and a random part, so that messages overtake each other), lose,
/// duplicate, or hold nothing back at all (cut).
struct LinkBehaviour: Sendable, Equatable {
    var baseDelayMillis: UInt64 = 1
    var jitterMillis: UInt64 = 2
    var loss: Double = 0
    var duplication: Double = 0
    var cut = false

    static let healthy = LinkBehaviour()
}

/// The simulated network between the controllers and the agents (the clients' links are
/// healthy: the clients stand for the operators, outside the cluster's network). A fault
/// changes the behaviour of an agent's link, in one direction or both; healing restores it.
struct SimNetwork {
    /// Toward the controller, per agent.
    var toController: [LinkBehaviour]
    /// From the controller, per agent.
    var fromController: [LinkBehaviour]
    let clientLink = LinkBehaviour(baseDelayMillis: 1, jitterMillis: 1)

    init(agents: Int) {
        toController = Array(repeating: .healthy, count: agents)
        fromController = Array(repeating: .healthy, count: agents)
    }

    func behaviour(from: SimNode, to: SimNode) -> LinkBehaviour {
        switch (from, to) {
        case (.agent(let index), .controller): return toController[index]
        case (.controller, .agent(let index)): return fromController[index]
        default: return clientLink
        }
    }

    /// The delays at which a message sent now arrives: none when it is lost or the link is
    /// cut, two when it is duplicated.
    func deliveries(from: SimNode, to: SimNode, random: inout SplitMix64) -> [UInt64] {
        let link = behaviour(from: from, to: to)
        if link.cut { return [] }
        if link.loss > 0 && random.unit() < link.loss { return [] }
        func delay() -> UInt64 { link.baseDelayMillis + (link.jitterMillis == 0 ? 0 : UInt64(random.below(Int(link.jitterMillis) + 1))) }
        var delays = [delay()]
        if link.duplication > 0 && random.unit() < link.duplication { delays.append(delay()) }
        return delays
    }

    mutating func heal() {
        for index in toController.indices {
            toController[index] = .healthy
            fromController[index] = .healthy
        }
    }
}
