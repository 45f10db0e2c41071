public import Placement
import Sizes

/// How much of a VMM partition its L2 VMs may use.
///
/// The L1 VMM keeps one core for itself (its I/O thread) and 512 MiB of memory; each VM gets
/// at most the remaining cores as vCPUs; vCPUs of all VMs together may be up to twice the
/// remaining cores (2:1 overcommit of CPU); memory is never overcommitted.
public struct VMPolicy: Sendable, Hashable {
    public var l1ReservedCores: Int = 1
    public var l1ReservedMemoryBytes: UInt64 = 512 << 20
    public var vcpuOvercommit: Int = 2
    public init() {}
}

/// The controller's commands as pure functions of the model: each validates its input,
/// checks the caller's rights, and returns the store changes to commit (all or nothing), or
/// a `ClusterError` that says what is wrong. Nothing here performs I/O or reads a clock.
public struct ClusterCommands: Sendable {
    public var placementPolicy: PlacementPolicy
    public var vmPolicy: VMPolicy
    public var migrationLimits: MigrationLimits

    public init(placementPolicy: PlacementPolicy = .standard, vmPolicy: VMPolicy = VMPolicy(),
                migrationLimits: MigrationLimits = MigrationLimits()) {
        self.placementPolicy = placementPolicy
        self.vmPolicy = vmPolicy
        self.migrationLimits = migrationLimits
    }

    // MARK: Tenants

    public func createTenant(_ tenant: Tenant, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        guard caller.isAdmin else { throw .denied("only an admin creates tenants") }
        if let problem = ObjectName.problem(tenant.name, what: "tenant") { throw .invalid(problem, field: "name") }
        if model.tenants[tenant.name] != nil { throw .exists("tenant \(tenant.name) already exists") }
        guard tenant.maxCores > 0 else { throw .invalid("--max-cores must be at least 1", field: "maxCores") }
        guard tenant.maxMemoryBytes > 0 else { throw .invalid("--max-memory must be more than 0", field: "maxMemory") }
        if let limit = tenant.maxPartitions, limit < 1 { throw .invalid("--max-partitions must be at least 1", field: "maxPartitions") }
        var stored = tenant
        stored.createdMillis = now
        return [.putTenant(stored), .event(ClusterEvent(
            timeMillis: now, kind: "tenant.created", subject: tenant.name,
            message: "quota \(tenant.maxCores) cores, \(ByteSize.format(tenant.maxMemoryBytes)) memory, \(ByteSize.format(tenant.maxDiskBytes)) disk",
            tenant: tenant.name))]
    }

    public func deleteTenant(_ name: String, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        guard caller.isAdmin else { throw .denied("only an admin deletes tenants") }
        try Self.checkName(name, "tenant")
        guard model.tenants[name] != nil else { throw .notFound("tenant \(name) does not exist") }
        let owned = model.partitions(of: name)
        if !owned.isEmpty {
            throw .precondition("tenant \(name) still owns \(owned.count) partition\(owned.count == 1 ? "" : "s") (\(owned.prefix(5).map(\.name).joined(separator: ", "))); delete them first")
        }
        return [.deleteTenant(name), .event(ClusterEvent(timeMillis: now, kind: "tenant.deleted", subject: name, message: "deleted", tenant: name))]
    }

    /// The tenant a caller may see: all for an admin, its own for a tenant.
    public func visibleTenants(to caller: Caller, in model: ClusterModel) -> [Tenant] {
        model.tenants.values.filter { caller.mayAccess(tenant: $0.name) }.sorted { $0.name < $1.name }
    }

    // MARK: Partitions

    /// Validates, checks the quota, places, and claims. Returns the changes and the claim.
    public func createPartition(_ spec: PartitionSpec, by caller: Caller, in model: ClusterModel,
                                health: [String: BladeHealth], now: UInt64) throws(ClusterError) -> (ops: [StoreOp], claim: Claim) {
        try Self.checkName(spec.tenant, "tenant", field: "tenant")
        guard caller.mayAccess(tenant: spec.tenant) else {
            if case .tenant(let own) = caller { throw .denied("tenant \(own) cannot create partitions for tenant \(spec.tenant)") }
            throw .denied("\(caller) cannot create partitions")
        }
        if let problem = ObjectName.problem(spec.name, what: "partition") { throw .invalid(problem, field: "name") }
        guard let tenant = model.tenants[spec.tenant] else { throw .notFound("tenant \(spec.tenant) does not exist") }
        // Partition names are cluster-wide: the answer is the same whoever holds the name, so
        // that it says nothing about another tenant's partitions.
        if model.partitions[spec.name] != nil { throw .exists("partition name \(spec.name) is taken; choose another") }
        if let problem = Bounds.coreProblem(spec.cores, "--cores") { throw .invalid(problem, field: "cores") }
        guard spec.memoryBytes >= 256 << 20 else { throw .invalid("--memory must be at least 256MiB", field: "memory") }
        if let problem = Bounds.sizeProblem(spec.memoryBytes, "--memory") { throw .invalid(problem, field: "memory") }
        if let problem = Bounds.sizeProblem(spec.diskBytes, "--disk") { throw .invalid(problem, field: "disk") }
        if case .shared(let ratio) = spec.cpu, !(1...100).contains(ratio) {
            throw .invalid("--service-ratio \(ratio) is not within 1...100 (percent of a core per vCPU)", field: "serviceRatio")
        }
        if case .shared = spec.cpu, spec.vmm {
            throw .invalid("a VMM partition needs dedicated cores (--cpu-mode dedicated)", field: "cpuMode")
        }
        if spec.vmm, spec.cores < 2 { throw .invalid("a VMM partition needs at least 2 cores (one is L1's own)", field: "cores") }
        if spec.vmm, spec.memoryBytes <= vmPolicy.l1ReservedMemoryBytes {
            throw .invalid("a VMM partition needs more than \(ByteSize.format(vmPolicy.l1ReservedMemoryBytes)) of memory (L1 keeps that much)", field: "memory")
        }
        if let rule = spec.antiAffinity {
            if let problem = ObjectName.problem(rule.group, what: "group") { throw .invalid(problem, field: "group") }
            guard rule.maxPerDomain >= 1 else { throw .invalid("--max-per-domain must be at least 1", field: "maxPerDomain") }
            if let member = model.partitions(of: spec.tenant).first(where: { $0.spec.antiAffinity?.group == rule.group }),
               let theirs = member.spec.antiAffinity, theirs.level != rule.level || theirs.hard != rule.hard || theirs.maxPerDomain != rule.maxPerDomain {
                throw .precondition("group \(rule.group) already has the rule \(theirs.description) (partition \(member.name)); a new member must use the same")
            }
        }
        // Quota (a sum that does not fit 64 bits exceeds every quota).
        let used = model.usage(of: tenant.name)
        let cores = [used.cores, spec.cores].checkedSum()
        if cores.map({ $0 > tenant.maxCores }) ?? true {
            throw .precondition("quota exceeded: tenant \(tenant.name) would use \(cores.map(String.init) ?? "more") cores of its \(tenant.maxCores)")
        }
        let memory = [used.memoryBytes, spec.memoryBytes].checkedSum()
        if memory.map({ $0 > tenant.maxMemoryBytes }) ?? true {
            throw .precondition("quota exceeded: tenant \(tenant.name) would use \(memory.map(ByteSize.format) ?? "more") of memory of its \(ByteSize.format(tenant.maxMemoryBytes))")
        }
        let disk = [used.diskBytes, spec.diskBytes].checkedSum()
        if disk.map({ $0 > tenant.maxDiskBytes }) ?? true {
            throw .precondition("quota exceeded: tenant \(tenant.name) would use \(disk.map(ByteSize.format) ?? "more") of disk of its \(ByteSize.format(tenant.maxDiskBytes))")
        }
        if let limit = tenant.maxPartitions, used.partitions + 1 > limit {
            throw .precondition("quota exceeded: tenant \(tenant.name) would own \(used.partitions + 1) partitions of its \(limit)")
        }
        let claim = try place(spec, in: model, health: health, by: caller)
        let partition = Partition(spec: spec, desired: .running, generation: 1, createdMillis: now)
        return ([.putPartition(partition), .putClaim(claim), placedEvent(claim, spec: spec, now: now)], claim)
    }

    /// Placement, then the concrete cores and memory range on the chosen blade.
    func place(_ spec: PartitionSpec, in model: ClusterModel, health: [String: BladeHealth], by caller: Caller) throws(ClusterError) -> Claim {
        var state = placementState(model, health: health)
        let request = spec.placementRequest
        var fragmented: [String] = []
        while true {
            switch state.decide(request) {
            case .failure(let refusal):
                let shown = Self.shown(refusal.rejections, tenant: spec.tenant, toTenant: caller.confinedTenant != nil)
                var text = PlacementRefusal(blades: refusal.blades, rejections: shown).description
                if !fragmented.isEmpty { text += "; \(fragmented.count) memory too fragmented" }
                throw .precondition(text)
            case .success(let decision):
                guard let blade = model.blades[decision.blade] else { throw ClusterError(.conflict, "blade \(decision.blade) vanished") }
                if let claim = concreteClaim(for: spec, on: blade, model: model, decision: decision) { return claim }
                fragmented.append(blade.id)
                state.setCondition(.cordoned, of: blade.id)
            }
        }
    }

    func placedEvent(_ claim: Claim, spec: PartitionSpec, now: UInt64) -> StoreOp {
        .event(ClusterEvent(timeMillis: now, kind: "partition.placed", subject: spec.name,
                            message: "on \(claim.blade): \(claim.reason)", tenant: spec.tenant))
    }

    /// Start, stop or delete a partition. Starting a partition that lost its claim (its
    /// blade came back too small) places it again, as creating it did.
    public func partitionAction(_ name: String, _ action: PartitionAction, by caller: Caller, in model: ClusterModel,
                                health: [String: BladeHealth], now: UInt64) throws(ClusterError) -> [StoreOp] {
        var partition = try accessible(name, by: caller, in: model, for: "to \(action.rawValue)")
        let tenant = partition.spec.tenant
        if action != .start, let migration = model.activeMigration(of: name) {
            throw .precondition("partition \(name) is migrating (migration \(migration.id), phase \(migration.phase.rawValue)); cancel the migration or wait for it to end, then \(action.rawValue) it")
        }
        switch action {
        case .start where model.claims[name] == nil:
            let claim = try place(partition.spec, in: model, health: health, by: caller)
            partition.desired = .running
            partition.evictedBecause = nil
            partition.generation += 1
            return [.putPartition(partition), .putClaim(claim), placedEvent(claim, spec: partition.spec, now: now)]
        case .start, .stop:
            let desired: DesiredState = action == .start ? .running : .stopped
            if partition.desired == desired { return [] }
            partition.desired = desired
            partition.generation += 1
            return [.putPartition(partition), .event(ClusterEvent(
                timeMillis: now, kind: "partition.\(action == .start ? "started" : "stopped")", subject: name,
                message: "desired state \(desired.rawValue)", tenant: tenant))]
        case .delete:
            var ops: [StoreOp] = model.vms(in: name).map { .deleteVM($0.key) }
            ops += [.deleteClaim(name), .deletePartition(name),
                    .event(ClusterEvent(timeMillis: now, kind: "partition.deleted", subject: name,
                                        message: "deleted; its claim on \(model.claims[name]?.blade ?? "no blade") released", tenant: tenant))]
            return ops
        }
    }

    public enum PartitionAction: String, Sendable { case start, stop, delete }

    /// A name from a request is checked before any message repeats it.
    static func checkName(_ name: String, _ what: String, field: String = "name") throws(ClusterError) {
        if let problem = ObjectName.problem(name, what: what) { throw .invalid(problem, field: field) }
    }

    /// The partition `name` when `caller` may see it; else it "does not exist" for the caller,
    /// and the audit note says who asked for what.
    func accessible(_ name: String, by caller: Caller, in model: ClusterModel, for purpose: String) throws(ClusterError) -> Partition {
        try Self.checkName(name, "partition")
        guard let partition = model.partitions[name] else { throw .notFound("partition \(name) does not exist") }
        guard caller.mayAccess(tenant: partition.spec.tenant) else {
            throw .hidden("partition \(name) does not exist",
                          audit: "\(caller) asked \(purpose) partition \(name) of tenant \(partition.spec.tenant)")
        }
        return partition
    }

    public func visiblePartitions(to caller: Caller, in model: ClusterModel, tenant: String? = nil, name: String? = nil) throws(ClusterError) -> [Partition] {
        if let tenant { try Self.checkName(tenant, "tenant", field: "tenant") }
        if let name { try Self.checkName(name, "partition") }
        if let tenant, !caller.mayAccess(tenant: tenant) {
            throw .denied("\(caller) cannot list the partitions of tenant \(tenant)")
        }
        let all = model.partitions.values.filter { partition in
            caller.mayAccess(tenant: partition.spec.tenant) && (tenant == nil || partition.spec.tenant == tenant)
                && (name == nil || partition.name == name)
        }.sorted { $0.name < $1.name }
        if let name, all.isEmpty { _ = try accessible(name, by: caller, in: model, for: "to read") }
        return all
    }

    // MARK: VMs

    public func createVM(_ vm: VM, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        let partition = try accessible(vm.partition, by: caller, in: model, for: "to create VM \(vm.name) in")
        if let problem = ObjectName.problem(vm.name, what: "VM") { throw .invalid(problem, field: "name") }
        guard partition.spec.vmm else {
            throw .precondition("partition \(partition.name) runs no VMM; create it with --vmm to run VMs inside")
        }
        if let migration = model.activeMigration(of: partition.name) {
            throw .precondition("partition \(partition.name) is migrating (migration \(migration.id)); create the VM once it has moved")
        }
        if model.vms[vm.key] != nil { throw .exists("VM \(vm.name) already exists in partition \(vm.partition)") }
        if let problem = Bounds.coreProblem(vm.vcpus, "--vcpus") { throw .invalid(problem, field: "vcpus") }
        guard vm.memoryBytes >= 64 << 20 else { throw .invalid("--memory must be at least 64MiB", field: "memory") }
        if let problem = Bounds.sizeProblem(vm.memoryBytes, "--memory") { throw .invalid(problem, field: "memory") }
        let usableCores = partition.spec.cores - vmPolicy.l1ReservedCores
        if vm.vcpus > usableCores {
            throw .precondition("a VM in partition \(partition.name) may have at most \(usableCores) vCPUs (\(partition.spec.cores) cores, \(vmPolicy.l1ReservedCores) kept by the L1 VMM)")
        }
        let others = model.vms(in: partition.name)
        let vcpus = (others.map(\.vcpus) + [vm.vcpus]).checkedSum() ?? .max
        if vcpus > usableCores * vmPolicy.vcpuOvercommit {
            throw .precondition("partition \(partition.name) would run \(vcpus) vCPUs; its VMM allows \(usableCores * vmPolicy.vcpuOvercommit) (\(vmPolicy.vcpuOvercommit):1 over \(usableCores) cores)")
        }
        let memory = (others.map(\.memoryBytes) + [vm.memoryBytes]).checkedSum()
        let usableMemory = partition.spec.memoryBytes - min(vmPolicy.l1ReservedMemoryBytes, partition.spec.memoryBytes)
        if memory.map({ $0 > usableMemory }) ?? true {
            throw .precondition("partition \(partition.name) would give its VMs \(memory.map(ByteSize.format) ?? "more than 2^64 bytes") of memory; its VMM has \(ByteSize.format(usableMemory)) (\(ByteSize.format(vmPolicy.l1ReservedMemoryBytes)) kept by L1)")
        }
        var stored = vm
        stored.createdMillis = now
        return [.putVM(stored), .event(ClusterEvent(
            timeMillis: now, kind: "vm.created", subject: "\(vm.partition)/\(vm.name)",
            message: "\(vm.vcpus) vCPUs, \(ByteSize.format(vm.memoryBytes)), \(vm.workload.rawValue)", tenant: partition.spec.tenant))]
    }

    public func deleteVM(_ key: VMKey, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        try Self.checkName(key.name, "VM")
        let partition = try accessible(key.partition, by: caller, in: model, for: "to delete VM \(key.name) in")
        guard model.vms[key] != nil else { throw .notFound("VM \(key.name) does not exist in partition \(key.partition)") }
        if let migration = model.activeMigration(of: key.partition) {
            throw .precondition("partition \(key.partition) is migrating (migration \(migration.id)); delete the VM once it has moved")
        }
        return [.deleteVM(key), .event(ClusterEvent(timeMillis: now, kind: "vm.deleted", subject: "\(key.partition)/\(key.name)",
                                                    message: "deleted", tenant: partition.spec.tenant))]
    }

    public func visibleVMs(in partition: String, to caller: Caller, model: ClusterModel) throws(ClusterError) -> [VM] {
        _ = try accessible(partition, by: caller, in: model, for: "to list the VMs of")
        return model.vms(in: partition)
    }

    // MARK: Blades

    /// An agent registers (or re-registers) its blade; the cordon flag survives.
    public func registerBlade(_ blade: Blade, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        guard case .agent(let name) = caller, name == blade.id else {
            throw .denied("\(caller) cannot register blade \(blade.id); an agent registers only its own blade")
        }
        if let problem = ObjectName.problem(blade.id, what: "blade") { throw .invalid(problem, field: "bladeID") }
        guard blade.cores >= 1 else { throw .invalid("blade \(blade.id) reports no cores", field: "cores") }
        guard blade.cores <= Bounds.maxCores else {
            throw .invalid("blade \(blade.id) reports \(blade.cores) cores, more than any blade has (at most \(Bounds.maxCores))", field: "cores")
        }
        guard blade.memoryBytes > 0 else { throw .invalid("blade \(blade.id) reports no memory", field: "memoryBytes") }
        if let problem = Bounds.sizeProblem(blade.memoryBytes, "blade \(blade.id) reports memory of") { throw .invalid(problem, field: "memoryBytes") }
        if let problem = Bounds.sizeProblem(blade.diskBytes, "blade \(blade.id) reports disk of") { throw .invalid(problem, field: "diskBytes") }
        var ids = Set<String>()
        for disk in blade.disks {
            if let problem = ObjectName.problem(disk.id, what: "disk") { throw .invalid("blade \(blade.id): \(problem)", field: "disks") }
            guard disk.luns >= 1 else { throw .invalid("blade \(blade.id): disk \(disk.id) has no LUNs", field: "disks") }
            guard disk.luns <= Bounds.maxLUNs else {
                throw .invalid("blade \(blade.id): disk \(disk.id) reports \(disk.luns) LUNs, more than \(Bounds.maxLUNs)", field: "disks")
            }
            guard ids.insert(disk.id).inserted else { throw .invalid("blade \(blade.id): disk \(disk.id) is listed twice", field: "disks") }
        }
        for nic in blade.nics {
            if let problem = ObjectName.problem(nic, what: "NIC") { throw .invalid("blade \(blade.id): \(problem)", field: "nics") }
            guard ids.insert(nic).inserted else { throw .invalid("blade \(blade.id): \(nic) is listed twice", field: "nics") }
        }
        for (label, value) in [("chassis", blade.chassis), ("rack", blade.rack), ("power domain", blade.powerDomain)] {
            if let problem = ObjectName.problem(value, what: label) { throw .invalid("blade \(blade.id): \(problem)", field: "labels") }
        }
        var stored = blade
        let previous = model.blades[blade.id]
        stored.cordoned = previous?.cordoned ?? false
        stored.registeredMillis = previous?.registeredMillis ?? now
        if let previous, previous == stored { return [] }
        var ops: [StoreOp] = [.putBlade(stored)]
        // A blade that came back smaller keeps the claims that still fit; the others are
        // released and their partitions stopped with the reason (never claims beyond capacity).
        for (claim, reason) in Self.claimsBeyond(stored, claims: model.claims(on: blade.id)) {
            guard var partition = model.partitions[claim.partition] else { continue }
            let because = "blade \(blade.id) came back with \(reason)"
            partition.desired = .stopped
            partition.evictedBecause = because
            partition.generation += 1
            ops += [.deleteClaim(claim.partition), .putPartition(partition),
                    .event(ClusterEvent(timeMillis: now, kind: "partition.evicted", subject: claim.partition,
                                        message: "\(because); stopped and its claim released (start it to place it again)",
                                        tenant: partition.spec.tenant))]
        }
        ops.append(.event(ClusterEvent(
            timeMillis: now, kind: previous == nil ? "blade.registered" : "blade.updated", subject: blade.id,
            message: "\(blade.cores) cores, \(ByteSize.format(blade.memoryBytes)), chassis \(blade.chassis), rack \(blade.rack), power \(blade.powerDomain), backend \(blade.backend)")))
        return ops
    }

    /// The claims that no longer fit `blade` as it now reports itself, each with why: cores
    /// or memory beyond what it has, or disk beyond it once the claims that fit are counted
    /// (in name order).
    static func claimsBeyond(_ blade: Blade, claims: [Claim]) -> [(Claim, String)] {
        var beyond: [(Claim, String)] = []
        var disk: UInt64 = 0
        for claim in claims.sorted(by: { $0.partition < $1.partition }) {
            if let core = claim.cores.first(where: { $0 >= blade.cores }) {
                beyond.append((claim, "\(blade.cores) cores; claimed core \(core) is gone"))
            } else if claim.memoryBase.addingReportingOverflow(claim.memoryBytes).overflow
                        || claim.memoryBase + claim.memoryBytes > blade.memoryBytes {
                beyond.append((claim, "\(ByteSize.format(blade.memoryBytes)) of memory; the claimed range ends beyond it"))
            } else if disk.addingReportingOverflow(claim.diskBytes).overflow || disk + claim.diskBytes > blade.diskBytes {
                beyond.append((claim, "\(ByteSize.format(blade.diskBytes)) of disk, too little for every claim on it"))
            } else {
                disk += claim.diskBytes
            }
        }
        return beyond
    }

    public func cordon(_ id: String, _ cordoned: Bool, by caller: Caller, in model: ClusterModel, now: UInt64) throws(ClusterError) -> [StoreOp] {
        guard caller.isAdmin else { throw .denied("only an admin cordons blades") }
        try Self.checkName(id, "blade", field: "blade")
        guard var blade = model.blades[id] else { throw .notFound("blade \(id) is not registered") }
        if blade.cordoned == cordoned { return [] }
        blade.cordoned = cordoned
        var ops: [StoreOp] = [.putBlade(blade), .event(ClusterEvent(
            timeMillis: now, kind: cordoned ? "blade.cordoned" : "blade.uncordoned",
            subject: id, message: cordoned ? "takes no new partitions" : "takes new partitions again"))]
        // Uncordoning ends the blade's drain: its migrations that have not switched over stop.
        if !cordoned {
            for migration in model.activeMigrations where migration.source == id
                && migration.requestedBy.hasPrefix(Self.drainRequester(id)) && migration.phase.cancellable {
                ops += (try? cancelMigration(migration.id, by: caller, in: model, now: now)) ?? []
            }
        }
        return ops
    }

    // MARK: Placement view

    /// Placement's view of the model: blades with their condition, and every claim.
    public func placementState(_ model: ClusterModel, health: [String: BladeHealth]) -> PlacementState {
        let blades = model.blades.values.sorted { $0.id < $1.id }.map { blade in
            BladeSnapshot(id: blade.id, labels: blade.labels, cores: blade.cores, memoryBytes: blade.memoryBytes,
                          diskBytes: blade.diskBytes, nestedCapable: blade.nestedCapable,
                          condition: Self.condition(of: blade, health: health[blade.id] ?? .unreachable))
        }
        var state = PlacementState(blades: blades, policy: placementPolicy)
        for claim in model.claims.values.sorted(by: { $0.partition < $1.partition }) {
            guard let partition = model.partitions[claim.partition] else { continue }
            state.record(Placement(request: partition.spec.placementRequest, blade: claim.blade))
        }
        // A migration's target reservation counts as the partition on that blade too (its
        // group member and its resources), beside its claim on the source.
        for migration in model.activeMigrations {
            guard let target = migration.target, !migration.phase.targetOwns, let partition = model.partitions[migration.partition] else { continue }
            var request = partition.spec.placementRequest
            request.name = Self.reservationName(migration)
            state.record(Placement(request: request, blade: target.blade))
        }
        return state
    }

    /// The name under which placement counts a migration's target reservation.
    static func reservationName(_ migration: Migration) -> String { "\(migration.partition)@\(migration.id)" }

    /// Rejections as the tenant knows its groups: without the tenant prefix placement uses.
    /// `toTenant`: the text is for a tenant, who is not told about other tenants' partitions
    /// (a blade held by another tenant's exclusive partition is "not available").
    static func shown(_ rejections: [RejectionReason: Int], tenant: String, toTenant: Bool = true) -> [RejectionReason: Int] {
        var shown: [RejectionReason: Int] = [:]
        let prefix = PartitionSpec.placementGroup("", tenant: tenant)
        for (reason, count) in rejections {
            if toTenant, reason == .isolation {
                shown[.unavailable, default: 0] += count
            } else if case .antiAffinity(let level, let group) = reason, group.hasPrefix(prefix) {
                shown[.antiAffinity(level: level, group: String(group.dropFirst(prefix.count))), default: 0] += count
            } else {
                shown[reason, default: 0] += count
            }
        }
        return shown
    }

    public static func condition(of blade: Blade, health: BladeHealth) -> BladeCondition {
        switch health {
        case .unreachable: return .unreachable
        case .suspect: return .suspect
        case .ready: return blade.cordoned ? .cordoned : .ready
        }
    }

    /// The lowest free cores and the first free memory range (in whole blocks) on `blade`;
    /// nil when the blade's free memory is too fragmented for one range.
    func concreteClaim(for spec: PartitionSpec, on blade: Blade, model: ClusterModel, decision: PlacementDecision) -> Claim? {
        let claims = model.claims(on: blade.id) + model.incomingClaims(on: blade.id)
        let taken = Set(claims.flatMap(\.cores))
        let request = spec.placementRequest
        let coreCount = placementPolicy.coreDemand(request)
        let cores = (0..<blade.cores).filter { !taken.contains($0) }.prefix(coreCount)
        guard cores.count == coreCount else { return nil }
        let size = placementPolicy.memoryDemand(request)
        var base: UInt64 = 0
        for range in claims.map({ ($0.memoryBase, $0.memoryBase + $0.memoryBytes) }).sorted(by: { $0.0 < $1.0 }) {
            if base + size <= range.0 { break }
            base = max(base, range.1)
        }
        guard base + size <= blade.memoryBytes else { return nil }
        let rejected = decision.rejections.values.reduce(0, +)
        var reason = "best fit (score \(String(format3: decision.score)))"
        if rejected > 0 {
            let parts = Self.shown(decision.rejections, tenant: spec.tenant).sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\($0.value) \($0.key)" }
            reason += "; other blades: " + parts.joined(separator: ", ")
        }
        return Claim(partition: spec.name, blade: blade.id, cores: Array(cores), memoryBase: base, memoryBytes: size,
                     diskBytes: spec.diskBytes, reason: reason)
    }
}

extension String {
    init(format3 value: Double) {
        let scaled = (value * 1000).rounded()
        let sign = scaled < 0 ? "-" : ""
        let magnitude = Int(abs(scaled))
        let fraction = String(magnitude % 1000)
        self = "\(sign)\(magnitude / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
}
