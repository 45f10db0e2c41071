public import Partitioner

/// The states of an L2 VM in a VMM partition, as the agent knows it.
public enum VMState: Equatable, Sendable {
    /// Asked of the guest hypervisor; not yet seen running.
    case creating
    case running
    case failed(reason: String)

    public var name: String {
        switch self {
        case .creating: return "creating"
        case .running: return "running"
        case .failed: return "failed"
        }
    }

    /// Why the VM failed; nil in any other state.
    public var failureReason: String? {
        if case .failed(let reason) = self { return reason }
        return nil
    }
}

/// What happens to an L2 VM.
public enum VMEvent: Equatable, Sendable {
    case started
    case failed(reason: String)

    public var name: String {
        switch self {
        case .started: return "started"
        case .failed: return "failed"
        }
    }
}

/// The explicit transition table of an L2 VM. Deleting a VM, or its LPAR leaving `running`,
/// ends it in any state.
public enum VMLifecycle {
    /// (from state name, event name) -> to. Anything absent is ignored (a repeated report).
    public static let table: [String: [String: String]] = [
        "creating": ["started": "running", "failed": "failed"],
        "running": ["failed": "failed"],
    ]

    public static func next(from state: VMState, on event: VMEvent) -> VMState? {
        guard let to = table[state.name]?[event.name] else { return nil }
        switch (to, event) {
        case ("running", _): return .running
        case ("failed", .failed(let reason)): return .failed(reason: reason)
        default: return nil
        }
    }
}

extension LPARLifecycle {
    /// The states from which `event` moves an LPAR, for refusals that name them.
    static func states(accepting event: LPAREvent) -> [LPARState] {
        LPARState.allCases.filter { next(from: $0, on: event) != nil }
    }
}
