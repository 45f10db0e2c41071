import Foundation
#if os(Linux)
import KVMBackend
#endif
public import Partitioner
public import Protos
import SimBackend
import VMX

/// Where the kvm backend finds its guest image, its own executable (to start LPAR
/// processes) and the directory for the LPARs' disk images.
public struct KVMRuntimeSettings: Sendable {
    public var image: String
    public var executable: String
    public var dataDirectory: String

    public init(image: String, executable: String, dataDirectory: String) {
        self.image = image
        self.executable = executable
        self.dataDirectory = dataDirectory
    }
}

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
    /// The kvm backend's settings; nil on the sim backend.
    public let kvm: KVMRuntimeSettings?
    /// Disk bytes of each LPAR, from its definition (the kvm backend gives it a disk image).
    private var diskBytes: [String: UInt64] = [:]
    #if os(Linux)
    private var processes: [String: LPARSupervisor] = [:]
    #endif

    public init(bladeID: String, resources: BladeResources, sliceSeconds: Double, kvm: KVMRuntimeSettings? = nil) throws(PartitionerError) {
        self.bladeID = bladeID
        self.l0ReservedBytes = resources.l0ReservedBytes
        self.sliceSeconds = sliceSeconds
        self.kvm = kvm
        self.partitioner = try BladePartitioner(resources: resources)
    }

    /// Carries out one command of the controller.
    public func execute(_ request: AgentCommandRequest) async -> CommandResultResponse {
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
                diskBytes[spec.name] = definition.diskBytes ?? 0
                return done()
            case .activate:
                guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
                if lpar.state == .running { return done() }
                _ = try partitioner.apply(.activate, to: name)
                if let failure = await startGuest(lpar.spec) {
                    _ = try partitioner.apply(.fault(reason: failure), to: name)
                    return refuse(failure)
                }
                _ = try partitioner.apply(.activated, to: name)
                return done()
            case .deactivate:
                guard let lpar = partitioner.lpars[name] else { return refuse("LPAR \(name) is not defined") }
                if lpar.state != .running { return done() }
                _ = try partitioner.apply(.deactivate, to: name)
                stopGuest(name)
                _ = try partitioner.apply(.deactivated, to: name)
                return done()
            case .remove:
                guard let lpar = partitioner.lpars[name] else { return CommandResultResponse(commandID: request.commandID, ok: true) }
                if lpar.state == .running {
                    _ = try partitioner.apply(.deactivate, to: name)
                    _ = try partitioner.apply(.deactivated, to: name)
                }
                stopGuest(name)
                removeDisk(name)
                try partitioner.remove(name)
                vms[name] = nil
                diskBytes[name] = nil
                return CommandResultResponse(commandID: request.commandID, ok: true)
            case .createVM:
                guard let vm = request.vm else { return refuse("createVM carries no VM") }
                if kvm != nil {
                    return refuse("L2 VMs need a guest hypervisor in the LPAR, which the kvm backend does not run yet")
                }
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

    // MARK: The kvm backend

    private func diskPath(_ name: String) -> String? { kvm.map { $0.dataDirectory + "/\(bladeID)-\(name).img" } }

    /// Starts the LPAR's own process and waits for its guest to boot; the failure, or nil.
    private func startGuest(_ spec: LPARSpec) async -> String? {
        #if os(Linux)
        guard let kvm, let disk = diskPath(spec.name) else { return nil }
        let bytes = max(diskBytes[spec.name] ?? 0, 1 << 20) / 512 * 512
        do {
            try FileManager.default.createDirectory(atPath: kvm.dataDirectory, withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: disk) {
                guard FileManager.default.createFile(atPath: disk, contents: nil) else { return "cannot create the disk image \(disk)" }
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: disk))
                try handle.truncate(atOffset: bytes)   // sparse
                try handle.close()
            }
        } catch {
            return "cannot create the disk image \(disk): \(error.localizedDescription)"
        }
        var cores: [Int] = []
        if case .dedicated(let dedicated) = spec.cpu { cores = dedicated }
        let configuration = LPARConfiguration(name: spec.name, memoryBytes: spec.memory.size, hostCores: cores.isEmpty ? [0] : cores,
                                              image: kvm.image, disk: .init(path: disk, writable: true))
        do {
            let process = try LPARSupervisor(configuration, executable: kvm.executable)
            guard await process.wait(timeout: 20, until: { $0.state == "ready" || $0.state == "failed" }), process.status.state == "ready" else {
                let reason = process.status.reason ?? "the guest did not boot within 20 s"
                process.stop()
                return reason
            }
            process.send(LPARHostCommand(command: "workload", workload: "idle"))
            processes[spec.name] = process
            return nil
        } catch {
            return "cannot start the LPAR's process: \(error)"
        }
        #else
        return kvm == nil ? nil : "the kvm backend runs on Linux only"
        #endif
    }

    private func stopGuest(_ name: String) {
        #if os(Linux)
        processes.removeValue(forKey: name)?.stop()
        #endif
    }

    private func removeDisk(_ name: String) {
        if let disk = diskPath(name) { try? FileManager.default.removeItem(atPath: disk) }
    }

    /// Notices LPAR processes that died or whose guest failed: only that LPAR goes to failed.
    private func noticeFailures() {
        #if os(Linux)
        for (name, process) in processes {
            let status = process.status
            guard status.state == "failed", partitioner.lpars[name]?.state == .running else { continue }
            _ = try? partitioner.apply(.fault(reason: status.reason ?? "the LPAR's process failed"), to: name)
            processes[name] = nil
            process.stop()
        }
        #endif
    }

    /// Stops every LPAR process (the agent is shutting down).
    public func shutdown() {
        #if os(Linux)
        for process in processes.values { process.stop() }
        processes.removeAll()
        #endif
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
        noticeFailures()
        return partitioner.lparNames.compactMap(status(of:))
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
