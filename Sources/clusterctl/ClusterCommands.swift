import ArgumentParser
import ClusterCore
import Foundation
import Protos
import Wire
import WireCodec
import Sizes

// MARK: Tenants

struct TenantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant", abstract: "Tenants and their quotas (create and delete: admin only).",
        subcommands: [Create.self, List.self, Show.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant with a quota.")
        @Argument(help: "Tenant name (1-63 of a-z, 0-9, '-', '_', '.').") var name: String
        @Option(help: "Most cores all its partitions may hold.") var maxCores: Int
        @Option(parsing: .unconditional, help: "Most memory, e.g. 64GiB.") var maxMemory: String
        @Option(parsing: .unconditional, help: "Most disk, e.g. 1TiB.") var maxDisk: String
        @Option(help: "Most partitions (default: no limit).") var maxPartitions: Int?
        @OptionGroup var client: ClientOptions

        func run() async throws {
            guard (1...1_000_000).contains(maxCores) else { throw InputError(message: "--max-cores \(maxCores) is not between 1 and 1000000") }
            if let maxPartitions, !(1...1_000_000).contains(maxPartitions) {
                throw InputError(message: "--max-partitions \(maxPartitions) is not between 1 and 1000000")
            }
            let quota = TenantQuota(maxCores: UInt32(maxCores), maxMemoryBytes: try parseSize(maxMemory, flag: "max-memory"),
                                    maxDiskBytes: try parseSize(maxDisk, flag: "max-disk"), maxPartitions: maxPartitions.map { UInt32($0) })
            let resolved = try client.resolved()
        let json = resolved.json
            let answer = try await withController(resolved) { connection in
                try await connection.call(CreateTenantRequest(name: name, quota: quota), expecting: TenantResponse.self)
            }
            Output.emit(json ? Output.json(Render.tenant(answer.tenant)) : "tenant \(answer.tenant.name) created\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants (a tenant sees only itself).")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let tenants = try await withController(resolved) { connection in
                try await allPages { token in
                    let page = try await connection.call(ListTenantsRequest(pageSize: resolved.pageSize, pageToken: token), expecting: TenantListResponse.self)
                    return (page.tenants, page.nextPageToken)
                }
            }
            if json { Output.emit(Output.json(tenants.map(Render.tenant))); return }
            Output.emit(Output.table(["NAME", "CORES", "MEMORY", "DISK", "PARTITIONS"], tenants.map { t in
                ["\(t.name)", "\(t.usedCores)/\(t.quota.maxCores)",
                 "\(ByteSize.format(t.usedMemoryBytes))/\(ByteSize.format(t.quota.maxMemoryBytes))",
                 "\(ByteSize.format(t.usedDiskBytes))/\(ByteSize.format(t.quota.maxDiskBytes))",
                 "\(t.partitions)" + (t.quota.maxPartitions.map { "/\($0)" } ?? "")]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one tenant: its quota and what it uses.")
        @Argument(help: "Tenant name.") var name: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let answer = try await withController(resolved) { try await $0.call(ListTenantsRequest(name: name), expecting: TenantListResponse.self) }
            guard let t = answer.tenants.first else { throw RemoteError(message: "tenant \(name) does not exist") }
            if json { Output.emit(Output.json(Render.tenant(t))); return }
            Output.emit(Output.details([
                ("name", t.name), ("cores", "\(t.usedCores) of \(t.quota.maxCores)"),
                ("memory", "\(ByteSize.format(t.usedMemoryBytes)) of \(ByteSize.format(t.quota.maxMemoryBytes))"),
                ("disk", "\(ByteSize.format(t.usedDiskBytes)) of \(ByteSize.format(t.quota.maxDiskBytes))"),
                ("partitions", "\(t.partitions)" + (t.quota.maxPartitions.map { " of \($0)" } ?? "")),
            ]))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a tenant (refused while it owns partitions).")
        @Argument(help: "Tenant name.") var name: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let answer = try await withController(resolved) { try await $0.call(DeleteTenantRequest(name: name), expecting: Ack.self) }
            Output.emit(json ? Output.json(["deleted": name]) : (answer.detail ?? "deleted") + "\n")
        }
    }
}

// MARK: Partitions

struct PartitionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partition", abstract: "VMM partitions: LPARs the controller places on blades.",
        subcommands: [Create.self, List.self, Show.self, Start.self, Stop.self, Delete.self, Migrate.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a partition; the controller places it and the blade's agent starts it.",
            discussion: """
                Placement keeps hard anti-affinity (--group with --spread LEVEL --hard: at most \
                --max-per-domain members per blade, chassis, rack or power domain) and N+1 \
                admission; a refusal says why each blade was not chosen.
                """)
        @Argument(help: "Partition name.") var name: String
        @Option(help: "Owning tenant (default: yours, with a tenant identity).") var tenant: String?
        @Option(help: "Cores.") var cores: Int
        @Option(parsing: .unconditional, help: "Memory, e.g. 10GiB.") var memory: String
        @Option(parsing: .unconditional, help: "Disk, e.g. 100GiB (default 0).") var disk: String = "0"
        @Option(help: "dedicated (whole cores) or shared (a service ratio of shared cores).") var cpuMode: String = "dedicated"
        @Option(help: "Shared mode: percent of a core per vCPU (1-100).") var serviceRatio: Int?
        @Flag(help: "Run a guest hypervisor (VMM on LPAR): the tenant creates L2 VMs inside.") var vmm = false
        @Option(help: "VMCS shadowing for the VMM: on or off (default on).") var shadowVMCS: String = "on"
        @Option(help: "Anti-affinity group: members are kept apart.") var group: String?
        @Option(help: "Level the group is spread at: blade, chassis, rack or power.") var spread: String?
        @Flag(name: .customLong("hard"), help: "Never place more than --max-per-domain members in one domain (default).") var hard = false
        @Flag(name: .customLong("soft"), help: "Prefer spreading, but place anyway.") var soft = false
        @Option(help: "Members allowed per domain (default 1).") var maxPerDomain: Int?
        @Option(help: "shared (default) or exclusive-blade (no other tenant on its blade).") var isolation: String = "shared"
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            guard let owner = tenant ?? (resolved.identity?.role == .tenant ? resolved.identity?.name : nil) else {
                throw InputError(message: "--tenant is required (or use a tenant identity)")
            }
            guard cores >= 1, cores <= 4096 else { throw InputError(message: "--cores \(cores) is not between 1 and 4096") }
            let memoryBytes = try parseSize(memory, flag: "memory")
            let diskBytes = try parseSize(disk, flag: "disk")
            let mode: Protos.CPUMode
            switch cpuMode {
            case "dedicated": mode = .dedicated
            case "shared": mode = .shared
            default: throw InputError(message: "--cpu-mode '\(cpuMode)' is not dedicated or shared")
            }
            if let serviceRatio, !(1...100).contains(serviceRatio) {
                throw InputError(message: "--service-ratio \(serviceRatio) is not between 1 and 100")
            }
            guard shadowVMCS == "on" || shadowVMCS == "off" else { throw InputError(message: "--shadow-vmcs '\(shadowVMCS)' is not on or off") }
            if shadowVMCS == "off" && !vmm { throw InputError(message: "--shadow-vmcs applies to --vmm partitions only") }
            if hard && soft { throw InputError(message: "--hard and --soft exclude each other") }
            var affinity: Protos.AntiAffinity?
            if let group {
                guard let spread else { throw InputError(message: "--group needs --spread blade|chassis|rack|power") }
                let level: Protos.SpreadLevel
                switch spread {
                case "blade": level = .blade
                case "chassis": level = .chassis
                case "rack": level = .rack
                case "power": level = .power
                default: throw InputError(message: "--spread '\(spread)' is not blade, chassis, rack or power")
                }
                if let maxPerDomain, !(1...4096).contains(maxPerDomain) {
                    throw InputError(message: "--max-per-domain \(maxPerDomain) is not between 1 and 4096")
                }
                affinity = Protos.AntiAffinity(group: group, level: level, hard: !soft, maxPerDomain: maxPerDomain.map { UInt32($0) })
            } else if spread != nil || hard || soft || maxPerDomain != nil {
                throw InputError(message: "--spread, --hard, --soft and --max-per-domain need --group")
            }
            let isolationValue: Protos.Isolation
            switch isolation {
            case "shared": isolationValue = .sharedBlade
            case "exclusive-blade": isolationValue = .exclusiveBlade
            default: throw InputError(message: "--isolation '\(isolation)' is not shared or exclusive-blade")
            }
            let spec = Protos.PartitionSpec(
                name: name, tenant: owner, cores: UInt32(cores), memoryBytes: memoryBytes, diskBytes: diskBytes, cpuMode: mode,
                serviceRatio: serviceRatio.map { UInt32($0) }, vmm: vmm, shadowVMCS: vmm && shadowVMCS == "on",
                antiAffinity: affinity, isolation: isolationValue)
            let answer = try await withController(resolved) {
                try await $0.call(CreatePartitionRequest(spec: spec), expecting: PartitionResponse.self)
            }
            let p = answer.partition
            Output.emit(resolved.json ? Output.json(Render.partition(p))
                        : "partition \(p.spec.name) placed on \(p.blade ?? "?") (cores \(p.bladeCores ?? "?")): \(p.placementReason ?? "")\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List partitions (a tenant sees only its own).")
        @Option(help: "Only this tenant's.") var tenant: String?
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let partitions = try await withController(resolved) { connection in
                try await allPages { token in
                    let page = try await connection.call(ListPartitionsRequest(tenant: tenant, pageSize: resolved.pageSize, pageToken: token),
                                                         expecting: PartitionListResponse.self)
                    return (page.partitions, page.nextPageToken)
                }
            }
            if json { Output.emit(Output.json(partitions.map(Render.partition))); return }
            Output.emit(Output.table(["NAME", "TENANT", "CORES", "MEMORY", "VMM", "GROUP", "BLADE", "STATE", "VMS"], partitions.map { p in
                [p.spec.name, p.spec.tenant, "\(p.spec.cores)", ByteSize.format(p.spec.memoryBytes),
                 p.spec.vmm ? (p.spec.shadowVMCS ? "yes (shadow)" : "yes") : "no",
                 p.spec.antiAffinity.map { "\($0.group)/\(Render.level($0.level))" } ?? "-",
                 p.blade ?? "-", p.state, "\(p.vms ?? 0)"]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one partition: where it runs, why there, its state and counters.")
        @Argument(help: "Partition name.") var name: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let answer = try await withController(resolved) {
                try await $0.call(ListPartitionsRequest(name: name), expecting: PartitionListResponse.self)
            }
            guard let p = answer.partitions.first else { throw RemoteError(message: "partition \(name) does not exist") }
            if json { Output.emit(Output.json(Render.partition(p))); return }
            var pairs: [(String, String)] = [
                ("name", p.spec.name), ("tenant", p.spec.tenant), ("state", p.state), ("desired", p.desiredState ?? "-"),
                ("cores", "\(p.spec.cores) \(p.spec.cpuMode == .dedicated ? "dedicated" : "shared, service ratio \(p.spec.serviceRatio ?? 100)")"),
                ("memory", ByteSize.format(p.spec.memoryBytes)), ("disk", ByteSize.format(p.spec.diskBytes)),
                ("vmm", p.spec.vmm ? "yes, VMCS shadowing \(p.spec.shadowVMCS ? "on" : "off")" : "no"),
                ("group", p.spec.antiAffinity.map { "\($0.group): \($0.hard ? "hard" : "soft") \(Render.level($0.level)) spread, at most \($0.maxPerDomain ?? 1) per \(Render.level($0.level))" } ?? "-"),
                ("isolation", p.spec.isolation == .exclusiveBlade ? "exclusive blade" : "shared blade"),
                ("blade", p.blade ?? "-"), ("blade cores", p.bladeCores ?? "-"),
                ("memory base", p.memoryBase.map { "0x" + String($0, radix: 16) } ?? "-"),
                ("placed because", p.placementReason ?? "-"), ("generation", "\(p.generation)"), ("VMs", "\(p.vms ?? 0)"),
            ]
            if let id = p.migrationID {
                pairs.append(("migration", "\(id), \(p.migrationPhase.map(Render.phase) ?? "-") (clusterctl migration show \(id))"))
            }
            if p.spec.vmm {
                pairs += [("L2 operations", "\(p.l2Operations ?? 0)"), ("L2 exits", "\(p.l2Exits ?? 0)"),
                          ("VMX traps to L0", "\(p.trappedVMX ?? 0)"), ("served by shadow", "\(p.servedByShadow ?? 0)")]
            }
            Output.emit(Output.details(pairs))
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a stopped partition.")
        @Argument(help: "Partition name.") var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await partitionAction(name, .start, client) }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a partition (it keeps its place and its VMs).")
        @Argument(help: "Partition name.") var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await partitionAction(name, .stop, client) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a partition, its VMs and its claim.")
        @Argument(help: "Partition name.") var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await partitionAction(name, .delete, client) }
    }
}

func partitionAction(_ name: String, _ action: PartitionAction, _ client: ClientOptions) async throws {
    let resolved = try client.resolved()
        let json = resolved.json
    let answer = try await withController(resolved) {
        try await $0.call(PartitionActionRequest(name: name, action: action), expecting: PartitionResponse.self)
    }
    let verb: String
    switch action {
    case .start: verb = "started"
    case .stop: verb = "stopped"
    case .delete: verb = "deleted"
    }
    Output.emit(json ? Output.json(Render.partition(answer.partition)) : "partition \(name) \(verb)\n")
}

// MARK: VMs

struct VMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm", abstract: "L2 VMs inside a VMM partition: the tenant's own, no operator needed.",
        discussion: """
            The partition's L1 VMM keeps 1 core and 512MiB for itself; a VM may have at most the \
            other cores as vCPUs; all VMs together at most twice those cores in vCPUs, and at \
            most the rest of the memory (memory is never overcommitted).
            """,
        subcommands: [Create.self, List.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an L2 VM in a VMM partition.")
        @Argument(help: "VM name.") var name: String
        @Option(help: "The VMM partition.") var partition: String
        @Option(help: "vCPUs.") var vcpus: Int
        @Option(parsing: .unconditional, help: "Memory, e.g. 4GiB.") var memory: String
        @Option(help: "Workload: iometer, sysbench-oltp or idle.") var workload: String = "idle"
        @OptionGroup var client: ClientOptions

        func run() async throws {
            guard vcpus >= 1, vcpus <= 4096 else { throw InputError(message: "--vcpus \(vcpus) is not between 1 and 4096") }
            let kind: Protos.Workload
            switch workload {
            case "iometer": kind = .iometer
            case "sysbench-oltp": kind = .sysbenchOLTP
            case "idle": kind = .idle
            default: throw InputError(message: "--workload '\(workload)' is not iometer, sysbench-oltp or idle")
            }
            let request = CreateVMRequest(name: name, partition: partition, vcpus: UInt32(vcpus),
                                          memoryBytes: try parseSize(memory, flag: "memory"), workload: kind)
            let resolved = try client.resolved()
        let json = resolved.json
            let answer = try await withController(resolved) { try await $0.call(request, expecting: VMResponse.self) }
            Output.emit(json ? Output.json(Render.vm(answer.vm)) : "VM \(name) created in partition \(partition)\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the VMs of a partition.")
        @Option(help: "The VMM partition.") var partition: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let vms = try await withController(resolved) { connection in
                try await allPages { token in
                    let page = try await connection.call(ListVMsRequest(partition: partition, pageSize: resolved.pageSize, pageToken: token),
                                                         expecting: VMListResponse.self)
                    return (page.vms, page.nextPageToken)
                }
            }
            if json { Output.emit(Output.json(vms.map(Render.vm))); return }
            Output.emit(Output.table(["NAME", "PARTITION", "VCPUS", "MEMORY", "WORKLOAD", "STATE"], vms.map { vm in
                [vm.name, vm.partition, "\(vm.vcpus)", ByteSize.format(vm.memoryBytes), Render.workload(vm.workload), vm.state]
            }))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a VM.")
        @Argument(help: "VM name.") var name: String
        @Option(help: "The VMM partition.") var partition: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let answer = try await withController(resolved) {
                try await $0.call(DeleteVMRequest(name: name, partition: partition), expecting: Ack.self)
            }
            Output.emit(json ? Output.json(["deleted": name, "partition": partition]) : (answer.detail ?? "deleted") + "\n")
        }
    }
}

// MARK: Blades

struct BladeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blade", abstract: "Blades: state, failure domains, capacity (admin only).",
        subcommands: [List.self, Inspect.self, Cordon.self, Uncordon.self, Drain.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List blades: state, labels, free/used cores and memory, partitions.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
        let json = resolved.json
            let blades = try await withController(resolved) { connection in
                try await allPages { token in
                    let page = try await connection.call(ListBladesRequest(pageSize: resolved.pageSize, pageToken: token), expecting: BladeListResponse.self)
                    return (page.blades, page.nextPageToken)
                }
            }
            if json { Output.emit(Output.json(blades.map(Render.blade))); return }
            Output.emit(Output.table(["BLADE", "STATE", "CHASSIS", "RACK", "POWER", "CORES USED", "MEMORY USED", "PARTITIONS"], blades.map { b in
                [b.id, b.state + (b.cordoned == true ? ",cordoned" : ""), b.labels.chassis, b.labels.rack, b.labels.powerDomain,
                 "\(b.cores - b.freeCores)/\(b.cores)",
                 "\(ByteSize.format(b.memoryBytes - b.freeMemoryBytes))/\(ByteSize.format(b.memoryBytes))",
                 b.partitions.isEmpty ? "-" : b.partitions.joined(separator: ",")]
            }))
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The LPARs a blade actually holds, as its agent reports them: state, cores, memory range, tenant, process.",
            discussion: """
                The answer is the agent's own (like virsh list on a host), not what the controller \
                believes. Through the controller by default; with --agent HOST:PORT straight from \
                the agent's own listener (blade-agent run --listen), which also works while the \
                controller is down. The agent must present nestor://agent/BLADE.
                """)
        @Argument(help: "Blade id.") var blade: String
        @Option(help: "Ask the blade's agent itself at HOST:PORT instead of the controller.") var agent: String?
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            if let problem = ObjectName.problem(blade, what: "blade") { throw InputError(message: problem) }
            let request = InspectBladeRequest(blade: blade)
            let answer: InspectBladeResponse
            if let agent {
                guard let endpoint = Endpoint(agent) else { throw InputError(message: "--agent '\(agent)' is not HOST:PORT") }
                answer = try await withPeer(resolved, at: endpoint, expecting: .identity(PeerIdentity(role: .agent, name: blade)),
                                            named: "the agent of blade \(blade)") {
                    try await $0.call(request, expecting: InspectBladeResponse.self)
                }
            } else {
                answer = try await withController(resolved) { try await $0.call(request, expecting: InspectBladeResponse.self) }
            }
            if resolved.json { Output.emit(Output.json(Render.inspection(answer))); return }
            let reserved = ByteSize.format(answer.l0ReservedBytes)
            Output.emit("blade \(answer.blade): \(answer.cores) cores, \(ByteSize.format(answer.memoryBytes)) (L0 keeps \(reserved)); "
                        + "controller link \(answer.controllerLinkUp ? "up" : "down"), heartbeat \(answer.heartbeatSequence)\n")
            Output.emit(Output.table(["LPAR", "TENANT", "STATE", "CORES", "MEMORY", "VMS", "PROCESS"], answer.lpars.map { l in
                [l.name, l.tenant ?? "-", Render.actualState(l), Render.cores(l),
                 "\(Render.hex(l.memoryStart))-\(Render.hex(l.memoryStart &+ l.memoryBytes)) (\(ByteSize.format(l.memoryBytes)))",
                 "\(l.vms)", l.processID.map { "\($0)" } ?? "-"]
            }))
        }
    }

    struct Cordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take no new partitions on a blade.")
        @Argument(help: "Blade id.") var blade: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await bladeAction(blade, .cordon, client) }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cordon a blade and move every partition away: running ones by live migration, stopped ones by their claim.",
            discussion: """
                Targets are chosen by placement with every hard rule and N+1; migrations beyond the \
                limits (2 per blade, 5 in the cluster) wait their turn. A partition that cannot be \
                placed stays, and the drain says why. Uncordoning the blade cancels the drain's \
                migrations that have not switched over. Draining it again changes nothing while its \
                partitions migrate.
                """)
        @Argument(help: "Blade id.") var blade: String
        @Flag(help: "Wait until every migration of the drain ends, with progress lines.") var wait = false
        @Option(help: "With --wait: give up waiting after this long (the migrations go on).") var timeout: String = "60m"
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            let limit = try parseDuration(timeout, flag: "timeout")
            let answer = try await withController(resolved) {
                try await $0.call(BladeActionRequest(blade: blade, action: .drain), expecting: BladeResponse.self)
            }
            if !wait {
                Output.emit(resolved.json ? Output.json(["blade": Render.blade(answer.blade), "detail": answer.detail ?? "",
                                                         "migrations": answer.migrationIDs])
                            : "blade \(blade) draining: \(answer.detail ?? "")\n")
                return
            }
            if !resolved.json { Output.emit("blade \(blade) draining: \(answer.detail ?? "")\n") }
            var ended: [MigrationInfo] = []
            for id in answer.migrationIDs { ended.append(try await follow(id, resolved, limitMillis: limit)) }
            let failed = ended.filter { $0.phase != .succeeded }
            if resolved.json {
                Output.emit(Output.json(["blade": blade, "detail": answer.detail ?? "", "migrations": ended.map(Render.migration)]))
            } else {
                Output.emit("blade \(blade) drained: \(ended.count - failed.count) of \(ended.count) migrations succeeded\n")
            }
            if !failed.isEmpty {
                throw RemoteError(message: "\(failed.count) migration\(failed.count == 1 ? "" : "s") of the drain failed: "
                                  + failed.map { "\($0.partition) (\($0.failure ?? "no reason given"))" }.joined(separator: "; "))
            }
        }
    }

    struct Uncordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let a cordoned blade take new partitions again (and stop its drain).")
        @Argument(help: "Blade id.") var blade: String
        @OptionGroup var client: ClientOptions
        func run() async throws { try await bladeAction(blade, .uncordon, client) }
    }
}

func bladeAction(_ blade: String, _ action: BladeAction, _ client: ClientOptions) async throws {
    let resolved = try client.resolved()
        let json = resolved.json
    let answer = try await withController(resolved) {
        try await $0.call(BladeActionRequest(blade: blade, action: action), expecting: BladeResponse.self)
    }
    Output.emit(json ? Output.json(Render.blade(answer.blade)) : "blade \(blade) \(action == .cordon ? "cordoned" : "uncordoned")\n")
}

// MARK: Events

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "What happened in the cluster, oldest first (a tenant sees its own).")
    @Option(help: "Only events after this sequence number.") var since: UInt64?
    @Option(help: "At most this many (default 50).") var limit: Int = 50
    @Flag(help: "Keep printing new events until interrupted.") var follow = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        guard (1...10_000).contains(limit) else { throw InputError(message: "--limit \(limit) is not between 1 and 10000") }
        let resolved = try client.resolved()
        let json = resolved.json
        func line(_ e: Protos.ClusterEvent) -> String {
            if json { return Output.json(Render.event(e)) }
            let time = Date(timeIntervalSince1970: Double(e.timeMillis) / 1000)
            let formatter = ISO8601DateFormatter()
            return "\(e.sequence)  \(formatter.string(from: time))  \(e.kind)  \(e.subject)  \(e.message)\n"
        }
        try await withController(resolved) { connection in
            // Pages of the window asked for: each goes on from the last sequence with what is left.
            var events: [Protos.ClusterEvent] = []
            var from = since
            while true {
                let page = try await connection.call(ListEventsRequest(sinceSequence: from, limit: UInt32(limit - events.count),
                                                                       pageSize: resolved.pageSize), expecting: EventListResponse.self)
                events += page.events
                guard page.more == true, let last = page.events.last, events.count < limit else { break }
                from = last.sequence
            }
            if json && !follow { Output.emit(Output.json(events.map(Render.event))) } else { events.forEach { Output.emit(line($0)) } }
            guard follow else { return }
            var last = events.last?.sequence ?? since ?? 0
            _ = try await connection.call(WatchEventsRequest(sinceSequence: last), expecting: Ack.self)
            for await event in connection.events {
                guard let notice = event.message as? EventNotice, notice.event.sequence > last else { continue }
                last = notice.event.sequence
                Output.emit(line(notice.event))
            }
        }
    }
}

// MARK: Rendering

enum Render {
    static func level(_ level: Protos.SpreadLevel) -> String {
        switch level {
        case .blade: return "blade"
        case .chassis: return "chassis"
        case .rack: return "rack"
        case .power: return "power"
        }
    }

    static func workload(_ workload: Protos.Workload) -> String {
        switch workload {
        case .iometer: return "iometer"
        case .sysbenchOLTP: return "sysbench-oltp"
        case .idle: return "idle"
        }
    }

    static func tenant(_ t: TenantInfo) -> [String: Any] {
        var quota: [String: Any] = ["maxCores": t.quota.maxCores, "maxMemoryBytes": t.quota.maxMemoryBytes, "maxDiskBytes": t.quota.maxDiskBytes]
        if let limit = t.quota.maxPartitions { quota["maxPartitions"] = limit }
        return ["name": t.name, "quota": quota, "usedCores": t.usedCores, "usedMemoryBytes": t.usedMemoryBytes,
                "usedDiskBytes": t.usedDiskBytes, "partitions": t.partitions]
    }

    static func partition(_ p: PartitionInfo) -> [String: Any] {
        var object: [String: Any] = [
            "name": p.spec.name, "tenant": p.spec.tenant, "cores": p.spec.cores, "memoryBytes": p.spec.memoryBytes,
            "diskBytes": p.spec.diskBytes, "cpuMode": p.spec.cpuMode == .dedicated ? "dedicated" : "shared",
            "vmm": p.spec.vmm, "shadowVMCS": p.spec.shadowVMCS,
            "isolation": p.spec.isolation == .exclusiveBlade ? "exclusive-blade" : "shared",
            "state": p.state, "generation": p.generation,
        ]
        if let ratio = p.spec.serviceRatio { object["serviceRatio"] = ratio }
        if let a = p.spec.antiAffinity {
            object["antiAffinity"] = ["group": a.group, "level": level(a.level), "hard": a.hard, "maxPerDomain": a.maxPerDomain ?? 1] as [String: Any]
        }
        if let v = p.desiredState { object["desiredState"] = v }
        if let v = p.blade { object["blade"] = v }
        if let v = p.bladeCores { object["bladeCores"] = v }
        if let v = p.memoryBase { object["memoryBase"] = v }
        if let v = p.placementReason { object["placementReason"] = v }
        if let v = p.vms { object["vms"] = v }
        if let v = p.l2Operations { object["l2Operations"] = v }
        if let v = p.l2Exits { object["l2Exits"] = v }
        if let v = p.trappedVMX { object["trappedVMX"] = v }
        if let v = p.servedByShadow { object["servedByShadow"] = v }
        return object
    }

    static func vm(_ vm: VMInfo) -> [String: Any] {
        ["name": vm.name, "partition": vm.partition, "vcpus": vm.vcpus, "memoryBytes": vm.memoryBytes,
         "workload": workload(vm.workload), "state": vm.state]
    }

    static func blade(_ b: BladeInfo) -> [String: Any] {
        var object: [String: Any] = [
            "id": b.id, "state": b.state, "chassis": b.labels.chassis, "rack": b.labels.rack, "powerDomain": b.labels.powerDomain,
            "cores": b.cores, "freeCores": b.freeCores, "memoryBytes": b.memoryBytes, "freeMemoryBytes": b.freeMemoryBytes,
            "partitions": b.partitions, "nestedCapable": b.nestedCapable, "cordoned": b.cordoned ?? false,
        ]
        if let v = b.diskBytes { object["diskBytes"] = v }
        if let v = b.freeDiskBytes { object["freeDiskBytes"] = v }
        if let v = b.heartbeatAgeMillis { object["heartbeatAgeMillis"] = v }
        if let v = b.heartbeats { object["heartbeats"] = v }
        if let v = b.backend { object["backend"] = v }
        object["disks"] = b.disks.map { ["id": $0.id, "luns": $0.lunCount, "shared": $0.shared] as [String: Any] }
        object["nics"] = b.nics
        return object
    }

    static func inspection(_ answer: InspectBladeResponse) -> [String: Any] {
        [
            "blade": answer.blade, "cores": answer.cores, "memoryBytes": answer.memoryBytes, "l0ReservedBytes": answer.l0ReservedBytes,
            "sharedPool": answer.sharedPool, "controllerLinkUp": answer.controllerLinkUp, "heartbeatSequence": answer.heartbeatSequence,
            "lpars": answer.lpars.map { l -> [String: Any] in
                var object: [String: Any] = [
                    "name": l.name, "state": lparState(l.state), "dedicatedCores": l.dedicatedCores, "memoryStart": l.memoryStart,
                    "memoryBytes": l.memoryBytes, "vms": l.vms, "poolCores": l.poolCores,
                ]
                if let v = l.tenant { object["tenant"] = v }
                if let v = l.sharedCPUs { object["sharedCPUs"] = v }
                if let v = l.failureReason { object["failureReason"] = v }
                if let v = l.processID { object["processID"] = v }
                if let m = l.migration {
                    object["migration"] = ["id": m.migrationID, "role": m.role == .source ? "source" : "target", "stage": migrationStage(m.stage)]
                }
                return object
            },
        ]
    }

    static func lparState(_ state: ReportedLPARState) -> String {
        switch state {
        case .defined: return "defined"
        case .activating: return "activating"
        case .running: return "running"
        case .deactivating: return "deactivating"
        case .stopped: return "stopped"
        case .failed: return "failed"
        case .migrating: return "migrating"
        }
    }

    static func actualState(_ lpar: ActualLPAR) -> String {
        var text = lparState(lpar.state) + (lpar.failureReason.map { ": \($0)" } ?? "")
        if let m = lpar.migration {
            text += " (\(m.role == .source ? "source" : "target") of \(m.migrationID), \(migrationStage(m.stage)))"
        }
        return text
    }

    static func migrationStage(_ stage: MigrationStage) -> String {
        switch stage {
        case .copying: return "copying"
        case .switchover: return "switchover"
        case .handedOver: return "handed over"
        case .incoming: return "incoming"
        case .receiving: return "receiving"
        case .ready: return "ready"
        case .failed: return "failed"
        }
    }

    static func cores(_ lpar: ActualLPAR) -> String {
        if let shared = lpar.sharedCPUs { return "\(shared) shared" }
        return lpar.dedicatedCores.isEmpty ? "-" : lpar.dedicatedCores.map(String.init).joined(separator: ",")
    }

    static func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    static func event(_ e: Protos.ClusterEvent) -> [String: Any] {
        var object: [String: Any] = ["sequence": e.sequence, "timeMillis": e.timeMillis, "kind": e.kind, "subject": e.subject, "message": e.message]
        if let tenant = e.tenant { object["tenant"] = tenant }
        return object
    }
}
