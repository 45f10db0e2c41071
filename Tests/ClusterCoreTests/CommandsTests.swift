import ClusterCore
import Placement
import Testing
import Sizes

/// A small cluster: `count` blades of 16 cores and 64 GiB in two chassis.
func smallCluster(blades count: Int = 4, admission: DomainLevel? = .blade) -> (ClusterCommands, ClusterModel, [String: BladeHealth]) {
    var model = ClusterModel()
    var health: [String: BladeHealth] = [:]
    for index in 0..<count {
        let id = "blade-\(index)"
        model.blades[id] = Blade(id: id, cores: 16, memoryBytes: 64 << 30, diskBytes: 1 << 40, nestedCapable: true,
                                 chassis: "chassis-\(index % 2)", rack: "rack-0", powerDomain: "power-0")
        health[id] = .ready
    }
    model.tenants["acme"] = Tenant(name: "acme", maxCores: 40, maxMemoryBytes: 160 << 30, maxDiskBytes: 1 << 40)
    model.tenants["globex"] = Tenant(name: "globex", maxCores: 40, maxMemoryBytes: 160 << 30, maxDiskBytes: 1 << 40)
    let commands = ClusterCommands(placementPolicy: PlacementPolicy(admissionLevel: admission))
    return (commands, model, health)
}

/// Applies ops the way a commit does.
func commit(_ ops: [StoreOp], to model: inout ClusterModel) {
    model.apply(ops, generation: model.generation + 1, lastEventSequence: model.lastEventSequence)
}

@Suite struct CommandsTests {
    @Test func partitionIsPlacedWithConcreteCoresAndMemory() throws {
        var (commands, model, health) = smallCluster()
        let spec = PartitionSpec(name: "p1", tenant: "acme", cores: 6, memoryBytes: 10 << 30, diskBytes: 20 << 30, vmm: true)
        let (ops, claim) = try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1)
        commit(ops, to: &model)
        #expect(claim.cores.count == 6)
        #expect(claim.memoryBytes == 10 << 30)
        let second = try commands.createPartition(
            PartitionSpec(name: "p2", tenant: "acme", cores: 4, memoryBytes: 1 << 30, diskBytes: 0), by: .admin("ops"),
            in: model, health: health, now: 2)
        commit(second.ops, to: &model)
        // On one blade the two claims never share a core or a byte of memory.
        let onBlade = model.claims(on: claim.blade)
        if onBlade.count == 2 {
            #expect(Set(onBlade[0].cores).isDisjoint(with: Set(onBlade[1].cores)))
            let (a, b) = (onBlade[0], onBlade[1])
            #expect(a.memoryBase + a.memoryBytes <= b.memoryBase || b.memoryBase + b.memoryBytes <= a.memoryBase)
        }
    }

    @Test func hardChassisSpreadRefusesAThirdMemberInTwoChassis() throws {
        var (commands, model, health) = smallCluster(admission: nil)
        let rule = AntiAffinityRule(group: "web", level: .chassis)
        for index in 0..<2 {
            let spec = PartitionSpec(name: "web-\(index)", tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0, antiAffinity: rule)
            commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        }
        let chassis = Set(model.claims.values.map { model.blades[$0.blade]!.chassis })
        #expect(chassis.count == 2)
        let third = PartitionSpec(name: "web-2", tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0, antiAffinity: rule)
        let error = #expect(throws: ClusterError.self) {
            try commands.createPartition(third, by: .tenant("acme"), in: model, health: health, now: 1)
        }
        #expect(error?.kind == .failedPrecondition)
        #expect(error?.message.contains("chassis anti-affinity (group web)") == true)
    }

    @Test func groupsBelongToTheirTenant() throws {
        var (commands, model, health) = smallCluster(admission: nil)
        let rule = AntiAffinityRule(group: "web", level: .chassis)
        // acme fills both chassis with its "web"; globex's "web" is another group.
        for (index, tenant) in ["acme", "acme", "globex", "globex"].enumerated() {
            let spec = PartitionSpec(name: "w\(index)", tenant: tenant, cores: 1, memoryBytes: 1 << 30, diskBytes: 0, antiAffinity: rule)
            commit(try commands.createPartition(spec, by: .tenant(tenant), in: model, health: health, now: 1).ops, to: &model)
        }
        let third = PartitionSpec(name: "w9", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0, antiAffinity: rule)
        let error = #expect(throws: ClusterError.self) { try commands.createPartition(third, by: .tenant("acme"), in: model, health: health, now: 1) }
        #expect(error?.message == "no blade fits: 4 blades; 4 chassis anti-affinity (group web)")
    }

    @Test func groupMembersMustShareTheRule() throws {
        var (commands, model, health) = smallCluster()
        let first = PartitionSpec(name: "a", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0,
                                  antiAffinity: AntiAffinityRule(group: "g", level: .chassis))
        commit(try commands.createPartition(first, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        let second = PartitionSpec(name: "b", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0,
                                   antiAffinity: AntiAffinityRule(group: "g", level: .blade))
        #expect(throws: ClusterError.self) { try commands.createPartition(second, by: .tenant("acme"), in: model, health: health, now: 1) }
    }

    @Test func quotaIsEnforced() throws {
        var (commands, model, health) = smallCluster()
        model.tenants["small"] = Tenant(name: "small", maxCores: 4, maxMemoryBytes: 8 << 30, maxDiskBytes: 10 << 30)
        let fits = PartitionSpec(name: "s1", tenant: "small", cores: 3, memoryBytes: 4 << 30, diskBytes: 0)
        commit(try commands.createPartition(fits, by: .tenant("small"), in: model, health: health, now: 1).ops, to: &model)
        let tooMany = PartitionSpec(name: "s2", tenant: "small", cores: 2, memoryBytes: 1 << 30, diskBytes: 0)
        let error = #expect(throws: ClusterError.self) {
            try commands.createPartition(tooMany, by: .tenant("small"), in: model, health: health, now: 1)
        }
        #expect(error?.message == "quota exceeded: tenant small would use 5 cores of its 4")
    }

    @Test func tenantsSeeOnlyTheirOwn() throws {
        var (commands, model, health) = smallCluster()
        let spec = PartitionSpec(name: "secret", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0, vmm: false)
        commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        #expect(try commands.visiblePartitions(to: .tenant("globex"), in: model).isEmpty)
        #expect(try commands.visiblePartitions(to: .tenant("acme"), in: model).map(\.name) == ["secret"])
        #expect(try commands.visiblePartitions(to: .admin("ops"), in: model).count == 1)
        #expect(throws: ClusterError.self) { try commands.visiblePartitions(to: .tenant("globex"), in: model, tenant: "acme") }
        // Another tenant cannot act on it, and is told it does not exist.
        let error = #expect(throws: ClusterError.self) {
            try commands.partitionAction("secret", .delete, by: .tenant("globex"), in: model, health: health, now: 2)
        }
        #expect(error?.kind == .notFound)
        #expect(throws: ClusterError.self) {
            try commands.createPartition(PartitionSpec(name: "x", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0),
                                         by: .tenant("globex"), in: model, health: health, now: 1)
        }
        #expect(commands.visibleTenants(to: .tenant("globex"), in: model).map(\.name) == ["globex"])
    }

    @Test func unreachableAndCordonedBladesTakeNothing() throws {
        var (commands, model, health) = smallCluster(blades: 2)
        health["blade-0"] = .unreachable
        commit(try commands.cordon("blade-1", true, by: .admin("ops"), in: model, now: 1), to: &model)
        let spec = PartitionSpec(name: "p", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0)
        let error = #expect(throws: ClusterError.self) {
            try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1)
        }
        #expect(error?.message == "no blade fits: 2 blades; 1 cordoned, 1 unreachable")
    }

    @Test func vmPolicyLimitsWhatAVMMPartitionRuns() throws {
        var (commands, model, health) = smallCluster()
        let spec = PartitionSpec(name: "vmm", tenant: "acme", cores: 4, memoryBytes: 4 << 30, diskBytes: 0, vmm: true)
        commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        commit(try commands.createVM(VM(name: "a", partition: "vmm", vcpus: 3, memoryBytes: 2 << 30, workload: .iometer),
                                     by: .tenant("acme"), in: model, now: 1), to: &model)
        // 4 vCPUs is more than the 3 usable cores.
        #expect(throws: ClusterError.self) {
            try commands.createVM(VM(name: "b", partition: "vmm", vcpus: 4, memoryBytes: 1 << 30, workload: .idle), by: .tenant("acme"), in: model, now: 1)
        }
        // Memory: 2 GiB + 2 GiB is more than 4 GiB - 512 MiB.
        let error = #expect(throws: ClusterError.self) {
            try commands.createVM(VM(name: "b", partition: "vmm", vcpus: 1, memoryBytes: 2 << 30, workload: .idle), by: .tenant("acme"), in: model, now: 1)
        }
        #expect(error?.message.contains("its VMM has 3584MiB") == true)
        // Not in a partition without a VMM, and not by another tenant.
        #expect(throws: ClusterError.self) {
            try commands.createVM(VM(name: "c", partition: "vmm", vcpus: 1, memoryBytes: 1 << 30, workload: .idle), by: .tenant("globex"), in: model, now: 1)
        }
    }

    @Test func deletingAPartitionReleasesItsClaimAndVMs() throws {
        var (commands, model, health) = smallCluster()
        let spec = PartitionSpec(name: "vmm", tenant: "acme", cores: 4, memoryBytes: 4 << 30, diskBytes: 0, vmm: true)
        commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        commit(try commands.createVM(VM(name: "a", partition: "vmm", vcpus: 1, memoryBytes: 1 << 30, workload: .idle),
                                     by: .tenant("acme"), in: model, now: 1), to: &model)
        #expect(throws: ClusterError.self) { try commands.deleteTenant("acme", by: .admin("ops"), in: model, now: 2) }
        commit(try commands.partitionAction("vmm", .delete, by: .tenant("acme"), in: model, health: health, now: 2), to: &model)
        #expect(model.claims.isEmpty && model.vms.isEmpty && model.partitions.isEmpty)
        commit(try commands.deleteTenant("acme", by: .admin("ops"), in: model, now: 3), to: &model)
        #expect(model.tenants["acme"] == nil)
    }

    @Test(arguments: ["", "Has-Caps", "-lead", String(repeating: "a", count: 64), "a b"])
    func badNamesAreRefused(_ name: String) {
        let (commands, model, health) = smallCluster()
        let spec = PartitionSpec(name: name, tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0)
        let error = #expect(throws: ClusterError.self) { try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1) }
        #expect(error?.kind == .invalidArgument)
    }

    /// A blade that re-registers smaller than its claims keeps the claims that fit; the others
    /// are released and their partitions stopped with the reason, and starting one places it
    /// again. Before, the blade showed 4 cores with 16 claimed and its partitions stayed
    /// "starting" forever.
    @Test func aBladeThatComesBackSmallerReleasesTheClaimsThatNoLongerFit() throws {
        var (commands, model, health) = smallCluster(blades: 2, admission: nil)
        for name in ["a", "b", "c"] {
            commit(try commands.createPartition(PartitionSpec(name: name, tenant: "acme", cores: 4, memoryBytes: 8 << 30, diskBytes: 0),
                                                by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        }
        let blade = try #require(model.claims["a"]?.blade)
        let onBlade = model.claims(on: blade).map(\.partition)
        #expect(onBlade == ["a", "b", "c"])   // best fit stacks them
        var smaller = model.blades[blade]!
        smaller.cores = 6
        commit(try commands.registerBlade(smaller, by: .agent(blade), in: model, now: 2), to: &model)
        #expect(model.claims(on: blade).map(\.partition) == ["a"])
        for name in ["b", "c"] {
            #expect(model.claims[name] == nil)
            #expect(model.partitions[name]?.desired == .stopped)
            #expect(model.partitions[name]?.evictedBecause?.contains("came back with 6 cores; claimed core") == true)
        }
        let used = model.claims(on: blade).reduce(0) { $0 + $1.cores.count }
        #expect(used <= 6)
        // Started again, it is placed anew: on the other blade.
        commit(try commands.partitionAction("b", .start, by: .tenant("acme"), in: model, health: health, now: 3), to: &model)
        #expect(model.claims["b"]?.blade != nil && model.claims["b"]?.blade != blade)
        #expect(model.partitions["b"]?.evictedBecause == nil && model.partitions["b"]?.desired == .running)
        // Less memory than a claimed range: released too.
        smaller.memoryBytes = 4 << 30
        commit(try commands.registerBlade(smaller, by: .agent(blade), in: model, now: 4), to: &model)
        #expect(model.claims(on: blade).isEmpty)
        #expect(model.partitions["a"]?.evictedBecause?.contains("4GiB of memory") == true)
    }

    /// A tenant's refusal does not say that another tenant holds a blade exclusively; an
    /// admin's does.
    @Test func aTenantsRefusalSaysNothingOfOtherTenantsPartitions() throws {
        var (commands, model, health) = smallCluster(blades: 1, admission: nil)
        commit(try commands.createPartition(PartitionSpec(name: "mine", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0, exclusiveBlade: true),
                                            by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        let spec = PartitionSpec(name: "theirs", tenant: "globex", cores: 1, memoryBytes: 1 << 30, diskBytes: 0)
        let tenant = #expect(throws: ClusterError.self) { try commands.createPartition(spec, by: .tenant("globex"), in: model, health: health, now: 2) }
        #expect(tenant?.message == "no blade fits: 1 blade; 1 not available")
        let admin = #expect(throws: ClusterError.self) { try commands.createPartition(spec, by: .admin("ops"), in: model, health: health, now: 2) }
        #expect(admin?.message == "no blade fits: 1 blade; 1 tenant isolation")
    }

    @Test func onlyTheBladesOwnAgentRegistersIt() throws {
        let (commands, model, _) = smallCluster()
        let blade = Blade(id: "blade-9", cores: 8, memoryBytes: 16 << 30, diskBytes: 0, nestedCapable: true,
                          chassis: "c", rack: "r", powerDomain: "p")
        #expect(throws: ClusterError.self) { try commands.registerBlade(blade, by: .agent("blade-8"), in: model, now: 1) }
        #expect(throws: ClusterError.self) { try commands.registerBlade(blade, by: .admin("ops"), in: model, now: 1) }
        #expect(try commands.registerBlade(blade, by: .agent("blade-9"), in: model, now: 1).count == 2)
    }
}

@Suite struct ByteSizeTests {
    static let good: [(String, UInt64)] = [
        ("10GiB", 10 << 30), ("512MiB", 512 << 20), ("4096", 4096), ("1TiB", 1 << 40), ("64kib", 64 << 10), (" 2 GiB ", 2 << 30),
        ("10G", 10 << 30), ("512M", 512 << 20), ("1T", 1 << 40), ("4k", 4 << 10), ("7B", 7),
    ]

    @Test(arguments: good)
    func sizesParse(_ text: String, _ bytes: UInt64) throws {
        #expect(try ByteSize.parse(text).get() == bytes)
    }

    @Test func badSizesSayWhy() {
        #expect(ByteSize.parse("10GB").failure?.description == "'10GB' is ambiguous: write 10GiB (sizes use binary units: KiB, MiB, GiB, TiB)")
        #expect(ByteSize.parse("512mb").failure?.description == "'512mb' is ambiguous: write 512MiB (sizes use binary units: KiB, MiB, GiB, TiB)")
        #expect(ByteSize.parse("-1").failure?.description.contains("is negative") == true)
        #expect(ByteSize.parse("1.5GiB").failure?.description.contains("fraction") == true)
        #expect(ByteSize.parse("10parsecs").failure?.description.contains("unknown unit") == true)
        #expect(ByteSize.parse("99999999999TiB").failure?.description.contains("too large") == true)
        #expect(ByteSize.parse("").failure != nil)
        #expect(ByteSize.parse("4096TiB").failure == nil)
        #expect(ByteSize.parse("4097TiB").failure?.description == "'4097TiB' is too large: sizes go up to 4096TiB, more than any blade has")
        #expect(ByteSize.parse("18446744073709551615").failure?.description.contains("too large") == true)
    }

    /// Values near 2^64 in a request are refused with a sentence; before the bounds, the quota
    /// sum, the VM memory sum and placement's rounding trapped on them.
    @Test(arguments: [UInt64(1) << 53, 1 << 63, .max - (1 << 20), .max])
    func sizesBeyondAnyBladeAreRefusedNotSummed(_ bytes: UInt64) throws {
        var (commands, model, health) = smallCluster()
        model.tenants["acme"]?.maxMemoryBytes = .max
        model.tenants["acme"]?.maxDiskBytes = .max
        commit(try commands.createPartition(PartitionSpec(name: "vmm", tenant: "acme", cores: 4, memoryBytes: 8 << 30, diskBytes: 1 << 30, vmm: true),
                                            by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        for (spec, field) in [
            (PartitionSpec(name: "p", tenant: "acme", cores: 1, memoryBytes: bytes, diskBytes: 0), "memory"),
            (PartitionSpec(name: "p", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: bytes), "disk"),
        ] {
            let error = #expect(throws: ClusterError.self) {
                try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 2)
            }
            #expect(error?.kind == .invalidArgument && error?.field == field)
            #expect(error?.message.contains("more than any blade has (at most 4096TiB)") == true, "\(error?.message ?? "")")
        }
        let vm = #expect(throws: ClusterError.self) {
            try commands.createVM(VM(name: "v", partition: "vmm", vcpus: 1, memoryBytes: bytes, workload: .idle), by: .tenant("acme"), in: model, now: 2)
        }
        #expect(vm?.kind == .invalidArgument && vm?.field == "memory")
        let blade = #expect(throws: ClusterError.self) {
            try commands.registerBlade(Blade(id: "blade-0", cores: 16, memoryBytes: bytes, diskBytes: 0, nestedCapable: true,
                                             chassis: "c", rack: "r", powerDomain: "p"), by: .agent("blade-0"), in: model, now: 2)
        }
        #expect(blade?.field == "memoryBytes")
    }

    @Test(arguments: [0, 4097, 1 << 31, Int(UInt32.max)])
    func coreCountsBeyondAnyBladeAreRefused(_ cores: Int) throws {
        let (commands, model, health) = smallCluster()
        let error = #expect(throws: ClusterError.self) {
            try commands.createPartition(PartitionSpec(name: "p", tenant: "acme", cores: cores, memoryBytes: 1 << 30, diskBytes: 0),
                                         by: .tenant("acme"), in: model, health: health, now: 1)
        }
        #expect(error?.kind == .invalidArgument && error?.field == "cores")
        if cores > 0 {
            let blade = #expect(throws: ClusterError.self) {
                try commands.registerBlade(Blade(id: "blade-9", cores: cores, memoryBytes: 1 << 30, diskBytes: 0, nestedCapable: true,
                                                 chassis: "c", rack: "r", powerDomain: "p"), by: .agent("blade-9"), in: model, now: 1)
            }
            #expect(blade?.field == "cores")
        }
    }

    /// A usage already at the top of 64 bits (a store written by an older version, say) makes
    /// every further request exceed the quota instead of wrapping around below it.
    @Test func aUsageThatDoesNotFitRefusesEveryFurtherRequest() throws {
        var (commands, model, health) = smallCluster()
        model.tenants["acme"]?.maxMemoryBytes = .max
        for index in 0..<2 {
            let name = "huge-\(index)"
            model.partitions[name] = Partition(spec: PartitionSpec(name: name, tenant: "acme", cores: 1, memoryBytes: 1 << 63, diskBytes: 0),
                                               desired: .running, generation: 1, createdMillis: 0)
        }
        #expect(model.usage(of: "acme").memoryBytes == .max)
        let error = #expect(throws: ClusterError.self) {
            try commands.createPartition(PartitionSpec(name: "p", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0),
                                         by: .tenant("acme"), in: model, health: health, now: 1)
        }
        #expect(error?.message.hasPrefix("quota exceeded: tenant acme would use more of memory") == true, "\(error?.message ?? "")")
    }

    @Test func formatting() {
        #expect(ByteSize.format(10 << 30) == "10GiB")
        #expect(ByteSize.format(1536 << 20) == "1536MiB")
        #expect(ByteSize.format(100) == "100B")
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
