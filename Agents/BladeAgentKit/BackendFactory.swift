public import Partitioner
public import SimBackend

/// Picks the blade's backend at start-up.
public enum BackendFactory {
    /// The backends this build of the agent contains.
    public static let available: [BackendKind] = [.sim]

    /// Makes the backend `kind`, or says in one line why it cannot.
    public static func make(_ kind: BackendKind, platform: PlatformCostModel = .xeonE52667v3,
                            workload: any WorkloadModel = IdleWorkload(), seed: UInt64 = 1) throws(AgentError) -> any Hypervisor {
        switch kind {
        case .sim:
            return SimHypervisor(costs: platform, workload: workload, seed: seed)
        case .kvm:
            throw .badInput("backend kvm is not in this build of blade-agent (available: \(available.map(\.rawValue).joined(separator: ", ")))")
        }
    }

    /// Parses a backend name from the command line.
    public static func kind(named name: String) throws(AgentError) -> BackendKind {
        guard let kind = BackendKind(rawValue: name) else {
            throw .badInput("unknown backend '\(name)' (use \(BackendKind.allCases.map(\.rawValue).joined(separator: " or ")))")
        }
        return kind
    }
}
