public import AgentCore
public import Protos
import Partitioner

/// The wire's agent messages in the core's terms and back.
public enum AgentWireMapping {
    /// The command a request carries, or why it carries none.
    public static func command(_ request: AgentCommandRequest) -> Result<BladeCommand, CommandMappingError> {
        let name = request.lparName ?? request.lpar?.name ?? ""
        switch request.kind {
        case .defineLPAR:
            guard let definition = request.lpar else { return .failure(.init("defineLPAR carries no LPAR definition")) }
            return .success(.define(input(definition)))
        case .activate: return .success(.activate(lpar: name))
        case .deactivate: return .success(.deactivate(lpar: name))
        case .remove: return .success(.remove(lpar: name))
        case .createVM:
            guard let vm = request.vm else { return .failure(.init("createVM carries no VM")) }
            return .success(.createVM(VMRequest(partition: vm.partition, name: vm.name, vcpus: Int(vm.vcpus),
                                                memoryBytes: vm.memoryBytes, workload: workload(vm.workload))))
        case .deleteVM:
            guard let vm = request.vm else { return .failure(.init("deleteVM carries no VM")) }
            return .success(.deleteVM(partition: vm.partition, name: vm.name))
        case .prepareIncoming:
            guard let order = request.migration, let definition = request.lpar else {
                return .failure(.init("prepareIncoming carries no LPAR definition or no migration"))
            }
            return .success(.prepareIncoming(input(definition), migration: order.migrationID, source: order.peerBlade))
        case .migrateOut:
            guard let order = request.migration, let address = order.peerAddress else {
                return .failure(.init("migrateOut carries no migration order with the target's address"))
            }
            return .success(.migrateOut(lpar: name, migration: order.migrationID, target: order.peerBlade, address: address,
                                        maxDowntimeMillis: order.maxDowntimeMillis ?? 50))
        case .cancelMigration:
            guard let order = request.migration else { return .failure(.init("cancelMigration carries no migration")) }
            return .success(.cancelMigration(lpar: name, migration: order.migrationID))
        }
    }

    /// An LPAR definition in the core's terms.
    static func input(_ definition: LPARDefinition) -> LPARDefinitionInput {
        LPARDefinitionInput(
            name: definition.name, dedicatedCores: definition.dedicatedCores.map(Int.init),
            sharedCPUs: definition.sharedCPUs.map(Int.init), serviceRatio: definition.serviceRatio.map(Int.init),
            capped: definition.capped, memoryBase: definition.memoryBase, memoryBytes: definition.memoryBytes,
            vmm: definition.vmm, vmcsShadowing: definition.vmcsShadowing, diskBytes: definition.diskBytes ?? 0,
            poolCores: definition.poolCores.map(Int.init), tenant: definition.tenant)
    }

    static func workload(_ workload: Workload) -> VMWorkload {
        switch workload {
        case .iometer: return .iometer
        case .sysbenchOLTP: return .sysbenchOLTP
        case .idle: return .idle
        }
    }

    /// An LPAR's report as the heartbeat carries it.
    public static func status(_ report: LPARReportValue) -> LPARStatus {
        LPARStatus(
            name: report.name, failureReason: report.failureReason,
            counters: LPARCounters(l2Exits: report.counters.l2Exits, reflected: report.counters.reflected,
                                   trappedVMX: report.counters.trappedVMX, servedByShadow: report.counters.servedByShadow,
                                   l0Nanoseconds: report.counters.l0Nanoseconds),
            vms: report.vms.map { VMStatus(name: $0.name, operations: $0.operations, state: vmState($0.state),
                                           failureReason: $0.state.failureReason) },
            state: lparState(report.state), migration: report.migration.map(migration))
    }

    static func migration(_ value: AgentMigration) -> LPARMigration {
        let stage: MigrationStage
        switch value.stage {
        case .copying: stage = .copying
        case .switchover: stage = .switchover
        case .handedOver: stage = .handedOver
        case .incoming: stage = .incoming
        case .receiving: stage = .receiving
        case .ready: stage = .ready
        case .failed: stage = .failed
        }
        let figures = value.figures
        return LPARMigration(migrationID: value.id, role: value.role == .source ? .source : .target, stage: stage,
                             failureReason: value.failureReason, round: UInt32(clamping: figures.round), sentBytes: figures.sentBytes,
                             remainingBytes: figures.remainingBytes, dirtyBytesPerSecond: figures.dirtyBytesPerSecond,
                             linkBytesPerSecond: figures.linkBytesPerSecond, downtimeMillis: figures.downtimeMillis)
    }

    static func lparState(_ state: LPARState) -> ReportedLPARState {
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

    static func vmState(_ state: VMState) -> ReportedVMState {
        switch state {
        case .creating: return .creating
        case .running: return .running
        case .failed: return .failed
        }
    }
}

/// A request that carries no command the agent could carry out.
public struct CommandMappingError: Error, Equatable, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
}
