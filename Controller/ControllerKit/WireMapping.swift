import ClusterCore
import Protos
import Wire
import WireCodec

/// Translations between the protocol's messages and the cluster core's values.
enum WireMapping {
    static func failure(_ error: ClusterError) -> WireFailure {
        let code: WireErrorCode
        switch error.kind {
        case .invalidArgument: code = .invalidArgument
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .failedPrecondition: code = .failedPrecondition
        case .permissionDenied: code = .permissionDenied
        case .conflict: code = .conflict
        case .unavailable: code = .unavailable
        }
        return WireFailure(code, error.message, field: error.field, audit: error.audit)
    }

    static func health(_ health: ClusterCore.BladeHealth) -> Protos.BladeHealth {
        switch health {
        case .ready: return .ready
        case .suspect: return .suspect
        case .unreachable: return .unreachable
        }
    }

    static func caller(_ peer: PeerIdentity) -> Caller {
        switch peer.role {
        case .admin: return .admin(peer.name)
        case .tenant: return .tenant(peer.name)
        case .agent: return .agent(peer.name)
        case .controller: return .controller(peer.name)
        }
    }

    static func tenant(_ request: CreateTenantRequest) -> Tenant {
        Tenant(name: request.name, maxCores: Int(request.quota.maxCores), maxMemoryBytes: request.quota.maxMemoryBytes,
               maxDiskBytes: request.quota.maxDiskBytes, maxPartitions: request.quota.maxPartitions.map(Int.init))
    }

    static func info(_ tenant: Tenant, model: ClusterModel) -> TenantInfo {
        let used = model.usage(of: tenant.name)
        return TenantInfo(
            name: tenant.name,
            quota: TenantQuota(maxCores: UInt32(clamping: tenant.maxCores), maxMemoryBytes: tenant.maxMemoryBytes,
                               maxDiskBytes: tenant.maxDiskBytes, maxPartitions: tenant.maxPartitions.map { UInt32(clamping: $0) }),
            usedCores: UInt32(clamping: used.cores), usedMemoryBytes: used.memoryBytes, usedDiskBytes: used.diskBytes,
            partitions: UInt32(clamping: used.partitions))
    }

    static func spec(_ wire: Protos.PartitionSpec) throws(WireFailure) -> ClusterCore.PartitionSpec {
        let cpu: ClusterCore.PartitionSpec.CPU
        switch wire.cpuMode {
        case .dedicated:
            if wire.serviceRatio != nil { throw WireFailure(.invalidArgument, "--service-ratio applies to --cpu-mode shared only", field: "serviceRatio") }
            cpu = .dedicated
        case .shared:
            cpu = .shared(serviceRatio: Int(wire.serviceRatio ?? 100))
        }
        var rule: AntiAffinityRule?
        if let affinity = wire.antiAffinity {
            rule = AntiAffinityRule(group: affinity.group, level: level(affinity.level), hard: affinity.hard,
                                    maxPerDomain: Int(affinity.maxPerDomain ?? 1))
        }
        return ClusterCore.PartitionSpec(
            name: wire.name, tenant: wire.tenant, cores: Int(wire.cores), memoryBytes: wire.memoryBytes, diskBytes: wire.diskBytes,
            cpu: cpu, vmm: wire.vmm, shadowVMCS: wire.shadowVMCS, antiAffinity: rule, exclusiveBlade: wire.isolation == .exclusiveBlade)
    }

    static func wireSpec(_ spec: ClusterCore.PartitionSpec) -> Protos.PartitionSpec {
        var mode = Protos.CPUMode.dedicated
        var ratio: UInt32?
        if case .shared(let value) = spec.cpu { mode = .shared; ratio = UInt32(clamping: value) }
        return Protos.PartitionSpec(
            name: spec.name, tenant: spec.tenant, cores: UInt32(clamping: spec.cores), memoryBytes: spec.memoryBytes,
            diskBytes: spec.diskBytes, cpuMode: mode, serviceRatio: ratio, vmm: spec.vmm, shadowVMCS: spec.shadowVMCS,
            antiAffinity: spec.antiAffinity.map {
                Protos.AntiAffinity(group: $0.group, level: wireLevel($0.level), hard: $0.hard, maxPerDomain: UInt32(clamping: $0.maxPerDomain))
            },
            isolation: spec.exclusiveBlade ? .exclusiveBlade : .sharedBlade)
    }

    static func level(_ wire: Protos.SpreadLevel) -> ClusterCore.SpreadLevel {
        switch wire {
        case .blade: return .blade
        case .chassis: return .chassis
        case .rack: return .rack
        case .power: return .power
        }
    }

    static func wireLevel(_ level: ClusterCore.SpreadLevel) -> Protos.SpreadLevel {
        switch level {
        case .blade: return .blade
        case .chassis: return .chassis
        case .rack: return .rack
        case .power: return .power
        }
    }

    static func workload(_ wire: Protos.Workload) -> VMWorkload {
        switch wire {
        case .iometer: return .iometer
        case .sysbenchOLTP: return .sysbenchOLTP
        case .idle: return .idle
        }
    }

    static func wireWorkload(_ workload: VMWorkload) -> Protos.Workload {
        switch workload {
        case .iometer: return .iometer
        case .sysbenchOLTP: return .sysbenchOLTP
        case .idle: return .idle
        }
    }

    static func vmInfo(_ vm: VM, state: String) -> VMInfo {
        VMInfo(name: vm.name, partition: vm.partition, vcpus: UInt32(clamping: vm.vcpus), memoryBytes: vm.memoryBytes,
               workload: wireWorkload(vm.workload), state: state)
    }

    static func event(_ event: ClusterCore.ClusterEvent) -> Protos.ClusterEvent {
        Protos.ClusterEvent(sequence: event.sequence, timeMillis: event.timeMillis, kind: event.kind, subject: event.subject,
                            message: event.message, tenant: event.tenant)
    }

    static func lparDefinition(_ plan: LPARPlan) -> LPARDefinition {
        let cores = plan.cores.map { UInt32(clamping: $0) }
        let shared = plan.serviceRatio != nil
        return LPARDefinition(name: plan.name, dedicatedCores: shared ? [] : cores,
                              sharedCPUs: shared ? UInt32(clamping: plan.logicalCPUs) : nil,
                              serviceRatio: plan.serviceRatio.map { UInt32(clamping: $0) }, capped: shared ? true : nil,
                              memoryBase: plan.memoryBase, memoryBytes: plan.memoryBytes, vmm: plan.vmm,
                              vmcsShadowing: plan.shadowVMCS, diskBytes: plan.diskBytes, poolCores: shared ? cores : [],
                              tenant: plan.tenant)
    }

    static func report(_ status: LPARStatus) -> LPARReport {
        LPARReport(name: status.name, state: lparState(status.state), failureReason: status.failureReason,
                   l2Exits: status.counters?.l2Exits ?? 0, trappedVMX: status.counters?.trappedVMX ?? 0,
                   servedByShadow: status.counters?.servedByShadow ?? 0,
                   vms: status.vms.map {
                       LPARReport.VMReport(name: $0.name, state: vmState($0.state), failureReason: $0.failureReason,
                                           operations: $0.operations)
                   },
                   migration: status.migration.map(migrationReport))
    }

    static func lparState(_ state: ReportedLPARState) -> LPARReport.State {
        switch state {
        case .defined: return .defined
        case .activating: return .activating
        case .running: return .running
        case .deactivating: return .deactivating
        case .stopped: return .stopped
        case .failed: return .failed
        case .migrating: return .migrating
        }
    }

    static func vmState(_ state: ReportedVMState) -> LPARReport.VMReport.State {
        switch state {
        case .creating: return .creating
        case .running: return .running
        case .failed: return .failed
        }
    }

    /// "2-7" or "0,2,5".
    static func coreList(_ cores: [Int]) -> String {
        guard let first = cores.first else { return "" }
        if cores == Array(first..<(first + cores.count)) { return cores.count == 1 ? "\(first)" : "\(first)-\(first + cores.count - 1)" }
        return cores.map(String.init).joined(separator: ",")
    }
}
