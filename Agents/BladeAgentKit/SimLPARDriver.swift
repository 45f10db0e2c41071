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
        /// Operations done on the blades the VM ran on before this one (a migration).
        var carried: UInt64 = 0
        init(sim: SimLPAR) { self.sim = sim }
    }

    /// An LPAR's modelled memory and when its guest last wrote to it.
    struct Memory {
        var image: SimMemoryImage
        var lastRun: ContinuousClock.Instant
        var paused = false
    }

    public nonisolated let events: AsyncStream<DriverEvent>
    private let continuation: AsyncStream<DriverEvent>.Continuation
    public nonisolated var vmSlots: Int? { nil }
    /// Virtual time each VM advances per heartbeat.
    public let sliceSeconds: Double
    private let costs = PlatformCostModel.xeonE52667v3
    private var running: [String: LPARSpec] = [:]
    private var vms: [String: [String: VMRun]] = [:]
    /// Bytes per second each running LPAR's guest writes to its memory (the model's input).
    public let dirtyBytesPerSecond: UInt64
    private var memories: [String: Memory] = [:]
    /// Shells receiving a migration: their memory, and the VMs their state brought.
    private var incoming: [String: (image: SimMemoryImage, vms: [(VMRequest, UInt64)])] = [:]

    public init(sliceSeconds: Double, dirtyBytesPerSecond: UInt64 = 0) {
        self.sliceSeconds = sliceSeconds
        self.dirtyBytesPerSecond = dirtyBytesPerSecond
        (events, continuation) = AsyncStream.makeStream(of: DriverEvent.self)
    }

    /// The simulated backend runs its LPARs inside the agent: none has a process of its own.
    public func processIDs() async -> [String: Int32] { [:] }

    public func start(_ launch: LPARLaunch) async -> DriverReport {
        let name = launch.spec.name
        running[name] = launch.spec
        return .started
    }

    public func stop(_ lpar: String) async -> DriverReport {
        running[lpar] = nil
        vms[lpar] = nil
        memories[lpar] = nil
        incoming[lpar] = nil
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
        for (lpar, runs) in vms where running[lpar] != nil && memories[lpar]?.paused != true {
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
                operations[name] = run.carried + run.sim.operations
            }
            observations[lpar] = LPARObservation(counters: LPARCounterValues(total), vmOperations: operations)
        }
        return observations
    }

    public func shutdown() async {
        running.removeAll()
        vms.removeAll()
        memories.removeAll()
        incoming.removeAll()
        continuation.finish()
    }

    /// The guest's writes since it last ran (none while paused).
    private func advance(_ lpar: String) throws(MigrationBackendError) {
        if memories[lpar] == nil, let spec = running[lpar] {
            // The memory is modelled from its first use on (a migration), seeded by the name.
            let seed = lpar.utf8.reduce(UInt64(0x9e37_79b9_7f4a_7c15)) { ($0 ^ UInt64($1)) &* 1099511628211 }
            memories[lpar] = Memory(image: SimMemoryImage(bytes: spec.memory.size, seed: seed, dirtyBytesPerSecond: dirtyBytesPerSecond),
                                    lastRun: .now)
        }
        guard var memory = memories[lpar] else { throw MigrationBackendError("LPAR \(lpar) is not running") }
        let now = ContinuousClock.now
        if !memory.paused {
            let elapsed = now - memory.lastRun
            memory.image.run(seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        memory.lastRun = now
        memories[lpar] = memory
    }
}

extension SimLPARDriver: LPARMigrating {
    private static let layoutPayload = 8

    public func startOutgoing(_ lpar: String) async throws(MigrationBackendError) -> MigrationMemoryLayout {
        try advance(lpar)
        memories[lpar]?.image.startTracking()
        let pages = memories[lpar]?.image.pageCount ?? 0
        return MigrationMemoryLayout(pageCount: pages, pageSize: SimMemoryImage.pageSize, payloadBytesPerPage: Self.layoutPayload)
    }

    public func collectDirty(_ lpar: String) async throws(MigrationBackendError) -> [Range<UInt64>] {
        try advance(lpar)
        return memories[lpar]?.image.collectDirty() ?? []
    }

    public func readPages(_ lpar: String, _ ranges: [Range<UInt64>]) async throws(MigrationBackendError) -> [[UInt8]] {
        guard let memory = memories[lpar] else { throw MigrationBackendError("LPAR \(lpar) is not running") }
        return try ranges.map { pages throws(MigrationBackendError) in
            guard pages.upperBound <= memory.image.pageCount else { throw MigrationBackendError("LPAR \(lpar) has no pages \(pages)") }
            return memory.image.payload(pages)
        }
    }

    public func throttle(_ lpar: String, percent: Int) async {
        try? advance(lpar)
        memories[lpar]?.image.throttlePercent = max(0, min(99, percent))
    }

    public func pause(_ lpar: String) async throws(MigrationBackendError) {
        try advance(lpar)
        memories[lpar]?.paused = true
    }

    public func finalState(_ lpar: String) async throws(MigrationBackendError) -> [UInt8] {
        guard memories[lpar]?.paused == true else { throw MigrationBackendError("LPAR \(lpar) is not paused") }
        // Each L2 VM: its request and the operations it has done (the model's whole state).
        let runs = (vms[lpar] ?? [:]).sorted { $0.key < $1.key }
        let lines = runs.map { name, run in
            "\(name) \(run.sim.workload.vcpus) \(Self.workloadName(run)) \(run.carried + run.sim.operations)"
        }
        return Array(lines.joined(separator: "\n").utf8)
    }

    public func memoryHash(_ lpar: String) async throws(MigrationBackendError) -> UInt64 {
        guard let memory = memories[lpar] else { throw MigrationBackendError("LPAR \(lpar) is not running") }
        return memory.image.hash
    }

    public func endOutgoing(_ lpar: String, resume: Bool) async {
        guard memories[lpar] != nil else { return }
        memories[lpar]?.image.stopTracking()
        memories[lpar]?.image.throttlePercent = 0
        if resume {
            memories[lpar]?.paused = false
            memories[lpar]?.lastRun = .now
        }
    }

    public func prepareIncoming(_ spec: LPARSpec) async throws(MigrationBackendError) -> MigrationMemoryLayout {
        let image = SimMemoryImage(empty: spec.memory.size)
        incoming[spec.name] = (image, [])
        return MigrationMemoryLayout(pageCount: image.pageCount, pageSize: SimMemoryImage.pageSize, payloadBytesPerPage: Self.layoutPayload)
    }

    public func storePages(_ lpar: String, _ runs: [(first: UInt64, payload: [UInt8])]) async throws(MigrationBackendError) {
        guard var shell = incoming[lpar] else { throw MigrationBackendError("no shell for \(lpar)") }
        incoming[lpar] = nil
        for run in runs { shell.image.store(run.payload, from: run.first) }
        incoming[lpar] = shell
    }

    public func loadState(_ lpar: String, _ state: [UInt8]) async throws(MigrationBackendError) -> [VMRequest] {
        guard incoming[lpar] != nil else { throw MigrationBackendError("no shell for \(lpar)") }
        var loaded: [(VMRequest, UInt64)] = []
        for line in String(decoding: state, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 4, let vcpus = Int(parts[1]), let operations = UInt64(parts[3]),
                  let workload = VMWorkload.allCases.first(where: { "\($0)" == parts[2] }) else {
                throw MigrationBackendError("the state names an L2 VM as '\(line.prefix(60))'")
            }
            loaded.append((VMRequest(partition: lpar, name: String(parts[0]), vcpus: vcpus, workload: workload), operations))
        }
        incoming[lpar]?.vms = loaded
        return loaded.map(\.0)
    }

    public func incomingHash(_ lpar: String) async throws(MigrationBackendError) -> UInt64 {
        guard let shell = incoming[lpar] else { throw MigrationBackendError("no shell for \(lpar)") }
        return shell.image.hash
    }

    public func discardIncoming(_ lpar: String) async {
        incoming[lpar] = nil
    }

    public func resumeIncoming(_ launch: LPARLaunch) async -> DriverReport {
        let name = launch.spec.name
        guard let shell = incoming.removeValue(forKey: name) else { return .startFailed(reason: "no migrated state for \(name)") }
        running[name] = launch.spec
        var image = shell.image
        image.dirtyBytesPerSecond = dirtyBytesPerSecond
        memories[name] = Memory(image: image, lastRun: .now)
        for (vm, operations) in shell.vms {
            await createVM(vm, slot: 0)
            vms[name]?[vm.name]?.carried = operations
        }
        return .started
    }

    private static func workloadName(_ run: VMRun) -> String {
        switch run.sim.workload {
        case is IOmeterWorkload: return "\(VMWorkload.iometer)"
        case is SysbenchOLTPWorkload: return "\(VMWorkload.sysbenchOLTP)"
        default: return "\(VMWorkload.idle)"
        }
    }
}
