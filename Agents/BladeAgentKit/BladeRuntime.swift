public import Partitioner
public import Protos
import SimBackend
import VMX

/// The blade's partitioner and the L2 VMs running in its VMM LPARs, driven by the
/// controller's commands. Every command is idempotent: repeating one that already took
/// effect answers `ok` and changes nothing.
public actor BladeRuntime {
    /// One L2 VM, run by the simulated backend in the LPAR's guest hypervisor.
    final class VMRun {
        let info: VMInfo
        let sim: SimLPAR
        var clock: Cycles = 0
        var failure: String?
        init(info: VMInfo, sim: SimLPAR) {
            self.info = info
            self.sim = sim
        }
    }

    public let bladeID: String
    public let l0ReservedBytes: UInt64
    /// Virtual time each VM advances per heartbeat.
    public let sliceSeconds: Double
    private var partitioner: BladePartitioner
    private var vms: [String: [String: VMRun]] = [:]
    private let costs = PlatformCostModel.xeonE52667v3

    public init(bladeID: String, resources: BladeResources, sliceSeconds: Double) throws(PartitionerError) {
        self.bladeID = bladeID
        self.l0ReservedBytes = resources.l0ReservedBytes
        self.sliceSeconds = sliceSeconds
        self.partitioner = try BladePartitioner(resources: resources)
    }

    /// Carries out one command of the controller.
    public func execute(_ request: AgentCommandRequest) -> CommandResultResponse {
        let name = request.lparName ?? request.lpar?.name ?? ""
        func done() -> CommandResultResponse {
            CommandResultResponse(commandID: request.commandID, ok: true, status: status(of: name))
        }
        func refuse(_ message: String) -> CommandResultResponse {
            CommandResultResponse(commandID: request.commandID, ok: false, error: message, status: status(of: name))
        }
        do {
            switch request.kind {
            case .defineLPAR:
                guard let definition = request.lpar else { return refuse("defineLPAR carries no LPAR definition") }
                let spec = try lparSpec(definition)
                if let existing = partitioner.lpars[spec.name] {
                    if existing.spec == spec { return done() }
                    guard LPARLifecycle.removable.contains(existing.state) else {
                        return refuse("LPAR \(spec.name) is \(existing.state.rawValue) with another definition; stop it first")
                    }
                    try partitioner.redefine(spec)
                } else {
                    try partitioner.define(spec)
                }
                return done()
            case .activate:
                guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
                if lpar.state == .running { return done() }
                _ = try partitioner.apply(.activate, to: name)
                _ = try partitioner.apply(.activated, to: name)
                return done()
            case .deactivate:
                guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
                if lpar.state != .running { return done() }
                _ = try partitioner.apply(.deactivate, to: name)
                _ = try partitioner.apply(.deactivated, to: name)
                return done()
            case .remove:
                guard let lpar = partitioner.lpars[name] else { return CommandResultResponse(commandID: request.commandID, ok: true) }
                if lpar.state == .running {
                    _ = try partitioner.apply(.deactivate, to: name)
                    _ = try partitioner.apply(.deactivated, to: name)
                }
                try partitioner.remove(name)
                vms[name] = nil
                return CommandResultResponse(commandID: request.commandID, ok: true)
            case .createVM:
                guard let vm = request.vm else { return refuse("createVM carries no VM") }
                guard let lpar = partitioner.lpars[vm.partition] else { return refuse("LPAR \(vm.partition) is not defined") }
                if vms[vm.partition]?[vm.name] != nil { return done() }
                guard lpar.state == .running else { return refuse("LPAR \(vm.partition) is \(lpar.state.rawValue), not running") }
                let workload: any WorkloadModel
                let vcpus = Int(vm.vcpus)
                switch vm.workload {
                case .iometer: workload = IOmeterWorkload(vcpus: vcpus)
                case .sysbenchOLTP: workload = SysbenchOLTPWorkload(threads: min(4, vcpus), vcpus: vcpus)
                case .idle: workload = IdleWorkload(vcpus: vcpus)
                }
                let seed = vm.name.utf8.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 }
                let sim = try SimLPAR(spec: lpar.spec, costs: costs, workload: workload, seed: seed)
                vms[vm.partition, default: [:]][vm.name] = VMRun(info: vm, sim: sim)
                return done()
            case .deleteVM:
                guard let vm = request.vm else { return refuse("deleteVM carries no VM") }
                vms[vm.partition]?[vm.name] = nil
                return done()
            }
        } catch {
            return refuse("\(error)")
        }
    }

    private func lparSpec(_ definition: LPARDefinition) throws(PartitionerError) -> LPARSpec {
        let (base, overflow) = definition.memoryBase.addingReportingOverflow(l0ReservedBytes)
        if overflow { throw .invalidSpec(lpar: definition.name, reason: "memory base overflows") }
        return LPARSpec(name: definition.name, cpu: .dedicated(cores: definition.dedicatedCores.map(Int.init)),
                        memory: MemoryRange(base: base, size: definition.memoryBytes),
                        vmm: definition.vmm, vmcsShadowing: definition.vmcsShadowing)
    }

    /// Runs every VM of every running LPAR one slice of virtual time further.
    public func advance() {
        let slice = costs.cycles(seconds: sliceSeconds)
        for (lparName, runs) in vms {
            guard partitioner.lpars[lparName]?.state == .running else { continue }
            for run in runs.values where run.failure == nil {
                run.clock += slice
                do { try run.sim.run(until: run.clock) } catch { run.failure = "\(error)" }
            }
        }
    }

    /// The actual state of every LPAR, as the heartbeat carries it.
    public func statuses() -> [LPARStatus] {
        partitioner.lparNames.compactMap(status(of:))
    }

    private func status(of name: String) -> LPARStatus? {
        guard let lpar = partitioner.lpars[name] else { return nil }
        let runs = (vms[name] ?? [:]).values.sorted { $0.info.name < $1.info.name }
        var total = NestedCounters()
        for run in runs { total.add(run.sim.counters) }
        let vmStates = runs.map { run in
            VMStatus(name: run.info.name,
                     state: run.failure.map { "failed: \($0)" } ?? (lpar.state == .running ? "running" : "stopped"),
                     operations: run.sim.operations)
        }
        return LPARStatus(
            name: name, state: lpar.state.rawValue, failureReason: lpar.failureReason,
            counters: LPARCounters(l2Exits: total.totalL2Exits, reflected: total.l2ExitsReflected, trappedVMX: total.totalTrapped,
                                   servedByShadow: total.totalServedByShadow, l0Nanoseconds: total.l0Nanoseconds),
            vms: vmStates)
    }
}
