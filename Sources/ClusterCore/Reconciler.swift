/// What the controller asks an agent to do; every command is idempotent on the agent.
public enum AgentCommand: Sendable, Hashable, CustomStringConvertible {
    case define(LPARPlan)
    case activate(String)
    case deactivate(String)
    case remove(String)
    case createVM(VM)
    case deleteVM(VMKey)
    /// Define the shell LPAR a migration's source will fill (the target's claim), and wait
    /// for the source's stream of migration `migration`.
    case prepareIncoming(LPARPlan, migration: String, source: String)
    /// Migrate the running LPAR to `target`'s agent at `address` (the target announced it).
    case migrateOut(lpar: String, migration: String, target: String, address: String, maxDowntimeMillis: UInt64)
    /// Stop migration `migration` of the LPAR: the source resumes its guest, the target
    /// drops what it received.
    case cancelMigration(lpar: String, migration: String)

    /// The LPAR (the partition) the command is about.
    public var lpar: String {
        switch self {
        case .define(let plan): return plan.name
        case .activate(let name), .deactivate(let name), .remove(let name): return name
        case .createVM(let vm): return vm.partition
        case .deleteVM(let key): return key.partition
        case .prepareIncoming(let plan, _, _): return plan.name
        case .migrateOut(let name, _, _, _, _), .cancelMigration(let name, _): return name
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
        case .prepareIncoming(let plan, let migration, let source): return "prepare \(plan.name) for migration \(migration) from \(source)"
        case .migrateOut(let name, let migration, let target, _, _): return "migrate \(name) to \(target) (migration \(migration))"
        case .cancelMigration(let name, let migration): return "cancel migration \(migration) of \(name)"
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

    public init(partition: Partition, claim: Claim) {
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
        // Migrations coming in hold their shell here until they are decided or rolled back.
        let incoming = model.activeMigrations.filter { migration in
            migration.target?.blade == blade && [.pending, .targetPrepared, .preCopy, .switchover].contains(migration.phase)
        }
        let claimed = Set(claims.map(\.partition) + incoming.map(\.partition))
        for name in actual.keys.sorted() where !claimed.contains(name) {
            commands.append(.remove(name))
        }
        for migration in incoming {
            guard let target = migration.target, let partition = model.partitions[migration.partition],
                  actual[migration.partition] == nil else { continue }
            commands.append(.prepareIncoming(LPARPlan(partition: partition, claim: target), migration: migration.id, source: migration.source))
        }
        for claim in claims {
            guard let partition = model.partitions[claim.partition] else { continue }
            let report = actual[partition.name]
            if let migration = model.activeMigration(of: partition.name), !migration.phase.targetOwns {
                commands += sourceCommands(migration, report: report, model: model)
                continue
            }
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
            case (.migrating?, .running) where report?.migration?.role == .target && report?.migration?.stage == .ready:
                // The migration is decided for this blade: the received LPAR runs.
                commands.append(.activate(partition.name))
            case (.migrating?, _) where report?.migration?.role == .source && report?.migration?.stage != .handedOver:
                // A migration that is over as far as the model knows: the source runs on.
                commands.append(.cancelMigration(lpar: partition.name, migration: report?.migration?.id ?? ""))
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

    /// The source's commands while its partition migrates: start sending once the target's
    /// shell is ready; stop when the migration rolls back.
    static func sourceCommands(_ migration: Migration, report: LPARReport?, model: ClusterModel) -> [AgentCommand] {
        guard let report, let target = migration.target else { return [] }
        switch migration.phase {
        case .targetPrepared where report.state == .running && report.migration == nil:
            guard let address = model.blades[target.blade]?.migrationAddress else { return [] }
            return [.migrateOut(lpar: migration.partition, migration: migration.id, target: target.blade, address: address,
                                maxDowntimeMillis: migration.maxDowntimeMillis)]
        case .rollingBack where report.state == .migrating:
            return [.cancelMigration(lpar: migration.partition, migration: migration.id)]
        default:
            return []
        }
    }
}
