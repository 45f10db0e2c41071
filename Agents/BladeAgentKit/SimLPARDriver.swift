public import AgentCore
public import Partitioner
import SimBackend

extension LPARCounterValues {
    /// The heartbeat's counters from the nested-VMX path's own.
    init(_ counters: NestedCounters) {
        self.init(l2Exits: counters.totalL2Exits, reflected: counters.l2ExitsReflected, trappedVMX: counters.totalTrapped,
                  servedByShadow: counters.totalServedByShadow, l0Nanoseconds: counters.l0Nanoseconds)
    }
}

/// LPARs on the simulated backend: an LPAR is up as soon as it starts; each L2 VM is a
/// `SimLPAR` (the L1 VMM and the workload modelled) that runs one slice of virtual time per
/// heartbeat. Deterministic: a VM's seed is its name.
public actor SimLPARDriver: LPARDriver {
    /// One L2 VM run by the simulated guest hypervisor.
    final class VMRun {
        let sim: SimLPAR
        var clock: Cycles = 0
        var failed = false
        init(sim: SimLPAR) { self.sim = sim }
    }

    public nonisolated let events: AsyncStream<DriverEvent>
    private let continuation: AsyncStream<DriverEvent>.Continuation
    public nonisolated var vmSlots: Int? { nil }
    /// Virtual time each VM advances per heartbeat.
    public let sliceSeconds: Double
    private let costs = PlatformCostModel.xeonE52667v3
    private var running: [String: LPARSpec] = [:]
    private var vms: [String: [String: VMRun]] = [:]

    public init(sliceSeconds: Double) {
        self.sliceSeconds = sliceSeconds
        (events, continuation) = AsyncStream.makeStream(of: DriverEvent.self)
    }

    /// The simulated backend runs its LPARs inside the agent: none has a process of its own.
    public func processIDs() async -> [String: Int32] { [:] }

    public func start(_ launch: LPARLaunch) async -> DriverReport {
        running[launch.spec.name] = launch.spec
        return .started
    }

    public func stop(_ lpar: String) async -> DriverReport {
        running[lpar] = nil
        vms[lpar] = nil
        return .stopped
    }

    public func releaseDisk(_ lpar: String, luns: Range<Int>?) async -> DriverReport { .diskReleased }

    public func setPool(_ cores: [Int]) async {}

    public func createVM(_ vm: VMRequest, slot: Int) async {
        guard let spec = running[vm.partition] else {
            continuation.yield(DriverEvent(lpar: vm.partition, report: .vm(name: vm.name, .failed(reason: "LPAR \(vm.partition) is not running"))))
            return
        }
        let workload: any WorkloadModel
        let vcpus = max(1, vm.vcpus)
        switch vm.workload {
        case .iometer: workload = IOmeterWorkload(vcpus: vcpus)
        case .sysbenchOLTP: workload = SysbenchOLTPWorkload(threads: min(4, vcpus), vcpus: vcpus)
        case .idle: workload = IdleWorkload(vcpus: vcpus)
        }
        let seed = vm.name.utf8.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 }
        do {
            let sim = try SimLPAR(spec: spec, costs: costs, workload: workload, seed: seed)
            vms[vm.partition, default: [:]][vm.name] = VMRun(sim: sim)
            continuation.yield(DriverEvent(lpar: vm.partition, report: .vm(name: vm.name, .started)))
        } catch {
            continuation.yield(DriverEvent(lpar: vm.partition, report: .vm(name: vm.name, .failed(reason: "\(error)"))))
        }
    }

    public func deleteVM(partition: String, name: String, slot: Int) async {
        vms[partition]?[name] = nil
    }

    public func heartbeatObservations() async -> [String: LPARObservation] {
        let slice = costs.cycles(seconds: sliceSeconds)
        var observations: [String: LPARObservation] = [:]
        for (lpar, runs) in vms where running[lpar] != nil {
            var total = NestedCounters()
            var operations: [String: UInt64] = [:]
            for (name, run) in runs {
                if !run.failed {
                    run.clock += slice
                    do {
                        try run.sim.run(until: run.clock)
                    } catch {
                        run.failed = true
                        continuation.yield(DriverEvent(lpar: lpar, report: .vm(name: name, .failed(reason: "\(error)"))))
                    }
                }
                total.add(run.sim.counters)
                operations[name] = run.sim.operations
            }
            observations[lpar] = LPARObservation(counters: LPARCounterValues(total), vmOperations: operations)
        }
        return observations
    }

    public func shutdown() async {
        running.removeAll()
        vms.removeAll()
        continuation.finish()
    }
}
