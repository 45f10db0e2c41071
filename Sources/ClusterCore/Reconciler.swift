/// What the controller asks an agent to do; every command is idempotent on the agent.
public enum AgentCommand: Sendable, Hashable, CustomStringConvertible {
    case define(LPARPlan)
    case activate(String)
    case deactivate(String)
    case remove(String)
    case createVM(VM)
    case deleteVM(VMKey)

    /// The LPAR (the partition) the command is about.
    public var lpar: String {
        switch self {
        case .define(let plan): return plan.name
        case .activate(let name), .deactivate(let name), .remove(let name): return name
        case .createVM(let vm): return vm.partition
        case .deleteVM(let key): return key.partition
        }
    }

    public var description: String {
        switch self {
        case .define(let plan): return "define \(plan.name)"
        case .activate(let name): return "activate \(name)"
        case .deactivate(let name): return "deactivate \(name)"
        case .remove(let name): return "remove \(name)"
        case .createVM(let vm): return "create VM \(vm.partition)/\(vm.name)"
        case .deleteVM(let key): return "delete VM \(key.partition)/\(key.name)"
        }
    }
}

/// An LPAR as the agent must define it: the claim's cores and memory, and the partition's
/// VMM settings. A dedicated LPAR owns the claim's cores; a shared one (a service ratio) has
/// `logicalCPUs` vCPUs on the blade's shared pool, to which the claim's cores are added, and
/// is capped at its ratio.
public struct LPARPlan: Sendable, Hashable {
    public var name: String
    public var cores: [Int]
    /// Shared mode: the vCPUs the LPAR's guest sees (the partition's cores).
    public var logicalCPUs: Int
    /// Offset into the memory the blade offers (the agent adds its L0 reservation).
    public var memoryBase: UInt64
    public var memoryBytes: UInt64
    public var serviceRatio: Int?
    public var vmm: Bool
    public var shadowVMCS: Bool
    public var diskBytes: UInt64
    /// The partition's tenant, so that the agent can say whose its LPARs are.
    public var tenant: String?

    public init(name: String, cores: [Int], memoryBase: UInt64, memoryBytes: UInt64, serviceRatio: Int? = nil,
                logicalCPUs: Int? = nil, vmm: Bool, shadowVMCS: Bool, diskBytes: UInt64 = 0, tenant: String? = nil) {
        self.name = name
        self.cores = cores
        self.logicalCPUs = logicalCPUs ?? cores.count
        self.memoryBase = memoryBase
        self.memoryBytes = memoryBytes
        self.serviceRatio = serviceRatio
        self.vmm = vmm
        self.shadowVMCS = shadowVMCS
        self.diskBytes = diskBytes
        self.tenant = tenant
    }

    init(partition: Partition, claim: Claim) {
        var ratio: Int?
        if case .shared(let value) = partition.spec.cpu { ratio = value }
        self.init(name: partition.name, cores: claim.cores, memoryBase: claim.memoryBase, memoryBytes: claim.memoryBytes,
                  serviceRatio: ratio, logicalCPUs: partition.spec.cores, vmm: partition.spec.vmm, shadowVMCS: partition.spec.vmm && partition.spec.shadowVMCS,
                  diskBytes: claim.diskBytes, tenant: partition.spec.tenant)
    }
}

/// Level-triggered reconciliation: from the desired state (the model) and what the agent
/// last reported, the commands that move the blade toward the desired state. Running it
/// again with the same inputs gives the same commands; the agent treats repeats as no-ops.
///
/// What frees resources comes first: LPARs that lost their claim are removed before any
/// LPAR is defined (a new claim may take the cores and memory a deleted partition's LPAR
/// still holds), and a partition's unwanted VMs are deleted before new ones are created.
public enum Reconciler {
    public static func commands(for blade: String, model: ClusterModel, actual: [String: LPARReport]) -> [AgentCommand] {
        var commands: [AgentCommand] = []
        let claims = model.claims(on: blade)
        let claimed = Set(claims.map(\.partition))
        for name in actual.keys.sorted() where !claimed.contains(name) {
            commands.append(.remove(name))
        }
        for claim in claims {
            guard let partition = model.partitions[claim.partition] else { continue }
            let report = actual[partition.name]
            var willRun = false
            switch (report?.state, partition.desired) {
            case (nil, _):
                commands.append(.define(LPARPlan(partition: partition, claim: claim)))
                if partition.desired == .running {
                    commands.append(.activate(partition.name))
                    willRun = true
                }
            case (.defined?, .running), (.stopped?, .running):
                commands.append(.activate(partition.name))
                willRun = true
            case (.running?, .stopped):
                commands.append(.deactivate(partition.name))
            case (.running?, .running):
                willRun = true
            case (.defined?, .stopped), (.stopped?, .stopped),
                 (.activating?, _), (.deactivating?, _), (.migrating?, _), (.failed?, _):
                break   // failed, in transition, or already where it should be
            }
            guard partition.spec.vmm else { continue }
            let desiredVMs = model.vms(in: partition.name)
            let actualVMs = Set(report?.vms.map(\.name) ?? [])
            let wanted = Set(desiredVMs.map(\.name))
            for name in actualVMs.sorted() where !wanted.contains(name) {
                commands.append(.deleteVM(VMKey(partition: partition.name, name: name)))
            }
            if willRun {
                for vm in desiredVMs where !actualVMs.contains(vm.name) { commands.append(.createVM(vm)) }
            }
        }
        return commands
    }
}
