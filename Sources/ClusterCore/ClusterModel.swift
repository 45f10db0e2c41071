/// One durable change; a command's changes are written in one store transaction.
public enum StoreOp: Sendable, Hashable {
    case putTenant(Tenant)
    case deleteTenant(String)
    case putBlade(Blade)
    case putPartition(Partition)
    case deletePartition(String)
    case putClaim(Claim)
    case deleteClaim(String)
    case putVM(VM)
    case deleteVM(VMKey)
    /// A migration, new or in a new phase (migrations are kept once over, as history).
    case putMigration(Migration)
    /// An event to append; the store gives it its sequence number.
    case event(ClusterEvent)
}

/// The controller's durable state: everything the store holds, as values. `generation`
/// counts committed changes; a write is accepted only against the generation it was
/// computed from (compare-and-swap).
public struct ClusterModel: Sendable, Equatable {
    public var generation: UInt64
    public var tenants: [String: Tenant]
    public var blades: [String: Blade]
    public var partitions: [String: Partition]
    public var claims: [String: Claim]
    public var vms: [VMKey: VM]
    /// Every migration by id, those over included.
    public var migrations: [String: Migration]
    /// The sequence number of the last event written.
    public var lastEventSequence: UInt64

    public init(generation: UInt64 = 0, tenants: [String: Tenant] = [:], blades: [String: Blade] = [:],
                partitions: [String: Partition] = [:], claims: [String: Claim] = [:], vms: [VMKey: VM] = [:],
                migrations: [String: Migration] = [:], lastEventSequence: UInt64 = 0) {
        self.generation = generation
        self.tenants = tenants
        self.blades = blades
        self.partitions = partitions
        self.claims = claims
        self.vms = vms
        self.migrations = migrations
        self.lastEventSequence = lastEventSequence
    }

    /// Applies committed changes (the store has accepted them at `generation`).
    public mutating func apply(_ ops: [StoreOp], generation: UInt64, lastEventSequence: UInt64) {
        for op in ops {
            switch op {
            case .putTenant(let tenant): tenants[tenant.name] = tenant
            case .deleteTenant(let name): tenants[name] = nil
            case .putBlade(let blade): blades[blade.id] = blade
            case .putPartition(let partition): partitions[partition.name] = partition
            case .deletePartition(let name): partitions[name] = nil
            case .putClaim(let claim): claims[claim.partition] = claim
            case .deleteClaim(let name): claims[name] = nil
            case .putVM(let vm): vms[vm.key] = vm
            case .deleteVM(let key): vms[key] = nil
            case .putMigration(let migration): migrations[migration.id] = migration
            case .event: break
            }
        }
        self.generation = generation
        self.lastEventSequence = lastEventSequence
    }

    /// The partitions a tenant owns.
    public func partitions(of tenant: String) -> [Partition] {
        partitions.values.filter { $0.spec.tenant == tenant }.sorted { $0.name < $1.name }
    }

    /// The claims on one blade.
    public func claims(on blade: String) -> [Claim] {
        claims.values.filter { $0.blade == blade }.sorted { $0.partition < $1.partition }
    }

    /// The VMs of one partition.
    public func vms(in partition: String) -> [VM] {
        vms.values.filter { $0.partition == partition }.sorted { $0.name < $1.name }
    }

    /// What a tenant uses now: cores, memory, disk, partitions; a sum that does not fit
    /// saturates (so that adding anything to it is refused by the quota check).
    public func usage(of tenant: String) -> (cores: Int, memoryBytes: UInt64, diskBytes: UInt64, partitions: Int) {
        let owned = partitions(of: tenant)
        return (owned.map(\.spec.cores).checkedSum() ?? .max, owned.map(\.spec.memoryBytes).saturatingSum(),
                owned.map(\.spec.diskBytes).saturatingSum(), owned.count)
    }
}
