public import SeededRandom
import VMX
public import Partitioner

/// A block request in flight in L1's device model.
struct BlockRequest {
    let id: Int
    let write: Bool
    let submitter: Int
    let waiter: GuestThread
}

/// An LPAR of the simulated backend that runs a guest hypervisor (L1, the RHEL 6.4 KVM
/// model) with one L2 VM running a workload, in deterministic virtual time.
///
/// Each L2 vCPU is a thread of L1 on its own LPAR core; L1's QEMU iothread runs on another
/// core. A discrete-event loop always advances the vCPU that is furthest behind, so events
/// between vCPUs (IPIs, completions) are delivered in time order, to within one quantum.
public final class SimLPAR: VirtualMachine, L1Environment {
    public let spec: LPARSpec
    public let memory: any GuestMemory
    public let costs: PlatformCostModel
    public let workload: any WorkloadModel
    private var rng: SplitMix64
    var vcpus: [SimVCPU] = []
    private var handlers: [L0ExitHandler] = []
    private var iothreadFreeAt: Cycles = 0
    private var requests: [Int: BlockRequest] = [:]
    private var nextRequest = 0
    private var threadCounter = 0
    private var threadHome: [Int: GuestThread] = [:]
    private var threadVCPU: [Int: Int] = [:]
    private var started = false

    /// Receives a line per event (exits, traps, entries, interrupts) when set; for debugging.
    var trace: ((String) -> Void)?

    /// Operations the workload completed, and when the last one did.
    public private(set) var operations: UInt64 = 0
    /// The longest a DES slice may run before another vCPU gets its turn.
    public let quantum: Cycles

    public init(spec: LPARSpec, costs: PlatformCostModel, workload: any WorkloadModel, seed: UInt64,
                quantumMicros: Double = 5, extraL1ReadsPerExit: Int = 0) throws(BackendError) {
        guard spec.vmm else {
            throw .invalidConfiguration("LPAR \(spec.name) runs an L2 workload, so it needs vmm: true")
        }
        let cores = spec.cpu.logicalCPUCount
        guard workload.vcpus >= 1, workload.vcpus < cores else {
            throw .invalidConfiguration("an L2 VM of \(workload.vcpus) vCPUs needs at least \(workload.vcpus + 1) cores in LPAR \(spec.name) (one for L1's I/O thread); it has \(cores)")
        }
        guard workload.threads <= workload.vcpus else {
            throw .invalidConfiguration("\(workload.threads) workload threads need as many vCPUs")
        }
        self.spec = spec
        self.memory = SparseGuestMemory(size: spec.memory.size)
        self.costs = costs
        self.workload = workload
        self.rng = SplitMix64(seed: seed)
        self.quantum = costs.cycles(seconds: quantumMicros * 1e-6)
        let capabilities = VMXCapabilities.nestorDefault()
        for index in 0..<workload.vcpus {
            let core = NestedVMXCore(
                vmx: NestedVMX(capabilities: capabilities, shadowFields: spec.vmcsShadowing ? spec.shadowFields : nil),
                memory: memory)
            let vcpu = SimVCPU(index: index, lpar: self, core: core, costs: costs, rng: rng.fork(UInt64(index) + 1))
            vcpu.l1.extraReadsPerExit = extraL1ReadsPerExit
            vcpus.append(vcpu)
            handlers.append(L0ExitHandler(core: core, lpar: spec.name, vcpu: index))
        }
    }

    public var vcpuCount: Int { vcpus.count }

    public func vcpu(_ index: Int) throws(BackendError) -> any VirtualCPU {
        guard vcpus.indices.contains(index) else { throw .vcpuIndexOutOfRange(index: index, count: vcpus.count) }
        return vcpus[index]
    }

    /// The nested-VMX core of a vCPU (its vmcs12, shadow VMCS and counters).
    public func nestedCore(_ index: Int) -> NestedVMXCore { vcpus[index].core }

    /// True when vCPU `index` is running L2 (no nested exit is half handled).
    public func isRunningL2(_ index: Int) -> Bool { vcpus[index].isInL2 }

    /// Counters summed over the LPAR's vCPUs.
    public var counters: NestedCounters {
        vcpus.reduce(into: NestedCounters()) { total, vcpu in total.add(vcpu.core.vmx.counters) }
    }

    /// Cycles all vCPUs spent in L0, L1 and L2 so far.
    public var cycleSplit: (l0: Cycles, l1: Cycles, l2: Cycles) {
        vcpus.reduce((Cycles(0), Cycles(0), Cycles(0))) { sum, vcpu in
            let split = vcpu.cycleSplit
            return (sum.0 + split.l0, sum.1 + split.l1, sum.2 + split.l2)
        }
    }

    /// The virtual time every vCPU has reached.
    public var now: Cycles { vcpus.map(\.clock).min() ?? 0 }

    /// L1 sets its vCPUs up and launches L2; the workload's threads start.
    public func start() throws(SimError) {
        guard !started else { return }
        started = true
        for vcpu in vcpus {
            let layout = L1MemoryLayout(vcpu: vcpu.index)
            do {
                try layout.prepare(memory: memory, revision: VMXCapabilities.nestorDefault().revisionIdentifier)
            } catch { throw .model("L1 setup: \(error)") }
            vcpu.startGuestHypervisor(layout: layout)
        }
        for thread in 0..<workload.threads {
            let guestThread = GuestThread(id: nextThreadID(home: thread), isWorkloadThread: true)
            vcpus[thread].attachWorkloadThread(guestThread)
            threadHome[guestThread.id] = guestThread
        }
    }

    /// Runs every vCPU up to virtual time `end`.
    public func run(until end: Cycles) throws(SimError) {
        try start()
        while true {
            var best: (time: Cycles, index: Int, wake: Bool)?
            for vcpu in vcpus {
                let candidate: (Cycles, Bool)?
                if vcpu.mode != .halted {
                    candidate = vcpu.clock < end ? (vcpu.clock, false) : nil
                } else if let due = vcpu.nextIncoming {
                    let time = max(due, vcpu.clock)
                    candidate = time < end ? (time, true) : nil
                } else {
                    candidate = nil
                }
                if let (time, wake) = candidate, best == nil || time < best!.time {
                    best = (time, vcpu.index, wake)
                }
            }
            guard let next = best else { break }
            let vcpu = vcpus[next.index]
            if next.wake { try vcpu.wake(at: next.time) }
            if let exit = try vcpu.step(until: min(end, vcpu.clock + quantum)) {
                if let trace {
                    switch exit {
                    case .l2Exit(let e): trace("\(vcpu.clock) v\(vcpu.index) L2 exit \(e.reason)")
                    case .vmxInstruction(let i, _): trace("\(vcpu.clock) v\(vcpu.index) trap \(i)")
                    case .hlt: trace("\(vcpu.clock) v\(vcpu.index) L1 idles")
                    default: trace("\(vcpu.clock) v\(vcpu.index) \(exit)")
                    }
                }
                let response = handlers[next.index].handle(exit)
                do { try vcpu.resume(response) } catch { throw .backend(BackendErrorText(text: error.description)) }
            }
        }
    }

    // MARK: Threads and operations

    func nextThreadID(home vcpu: Int) -> Int {
        threadCounter += 1
        threadVCPU[threadCounter] = vcpu
        return threadCounter
    }

    func register(_ thread: GuestThread) { threadHome[thread.id] = thread }
    func forget(_ thread: GuestThread) { threadHome[thread.id] = nil; threadVCPU[thread.id] = nil }

    func nextOperation(thread: Int, rng: inout SplitMix64) -> [ChainStep] {
        workload.operation(thread: thread, rng: &rng, costs: costs)
    }

    func countOperation() { operations += 1 }

    /// Another vCPU than `index`, at random; with `busyOnly`, only one that is not halted.
    func otherVCPU(than index: Int, rng: inout SplitMix64, busyOnly: Bool) -> Int? {
        let others = vcpus.indices.filter { $0 != index && (!busyOnly || vcpus[$0].mode != .halted) }
        guard !others.isEmpty else { return nil }
        return others[rng.below(others.count)]
    }

    func wakeThread(_ id: Int, afterIO: Bool) {
        guard let thread = threadHome[id] else { return }
        guard thread.state == .waitingIO || thread.state == .waitingIPI else { return }
        thread.state = .runnable
        thread.resumeWork += afterIO ? costs.c(costs.guestBlockComplete) - costs.c(costs.guestBlockComplete) / 2
            : costs.c(costs.guestContextSwitch)
    }

    // MARK: L1's device model (QEMU virtio-blk) and interrupt delivery

    func newRequest(write: Bool, waiter: GuestThread, on vcpu: Int) -> Int {
        nextRequest += 1
        requests[nextRequest] = BlockRequest(id: nextRequest, write: write, submitter: vcpu, waiter: waiter)
        return nextRequest
    }

    func kickBlockDevice(from index: Int) {
        guard let id = vcpus[index].submittingRequest, let request = requests[id] else { return }
        vcpus[index].submittingRequest = nil
        // qemu-kvm 0.12 has one I/O thread (under the global mutex) that takes every request
        // from the virtqueue and completes it; the device time itself runs in parallel.
        let start = max(vcpus[index].clock, iothreadFreeAt)
        iothreadFreeAt = start + costs.c(costs.virtioBlockRequest)
        let device = request.write ? costs.c(costs.storageWrite) : costs.c(costs.pageCacheRead4K)
        let target = workload.completionOnSubmitter ? index : rng.below(vcpus.count)
        vcpus[target].deliver(.blockCompletion(request: id), at: iothreadFreeAt + device)
        trace?("\(vcpus[index].clock) v\(index) kick request \(id), completes at \(iothreadFreeAt + device) on v\(target)")
    }

    /// The completion handler ran on `vcpu`: wake the waiter there, or send it an IPI.
    func completeRequest(_ id: Int, handledOn vcpu: Int) -> [L2Action] {
        guard let request = requests.removeValue(forKey: id) else { return [] }
        let home = threadVCPU[request.waiter.id] ?? request.submitter
        if home == vcpu {
            wakeThread(request.waiter.id, afterIO: true)
            return []
        }
        return [.effect { [unowned self] in
                    vcpus[vcpu].sendingIPI = (home, .wake(thread: request.waiter.id, afterIO: true))
                },
                .exit(.apicWrite(offset: RHEL6KVMModel.apicICR))]
    }

    func sendIPI(from index: Int) {
        guard let (target, purpose) = vcpus[index].sendingIPI else { return }
        vcpus[index].sendingIPI = nil
        trace?("\(vcpus[index].clock) v\(index) IPI -> v\(target) \(purpose)")
        vcpus[target].deliver(.ipi(from: index, purpose: purpose), at: vcpus[index].clock)
    }
}

extension NestedCounters {
    /// Adds another vCPU's counters to these.
    public mutating func add(_ other: NestedCounters) {
        for (reason, count) in other.l2ExitsByReason { l2ExitsByReason[reason, default: 0] += count }
        for (name, count) in other.vmxTrapped { vmxTrapped[name, default: 0] += count }
        l2ExitsReflected += other.l2ExitsReflected
        l2ExitsHandledByL0 += other.l2ExitsHandledByL0
        l2Entries += other.l2Entries
        vmreadServedByShadow += other.vmreadServedByShadow
        vmwriteServedByShadow += other.vmwriteServedByShadow
        fieldsCopiedToShadow += other.fieldsCopiedToShadow
        fieldsCopiedToVMCS12 += other.fieldsCopiedToVMCS12
        shadowSyncsToShadow += other.shadowSyncsToShadow
        shadowSyncsToVMCS12 += other.shadowSyncsToVMCS12
        l0Nanoseconds += other.l0Nanoseconds
    }

    /// These counters minus an earlier snapshot.
    public func since(_ earlier: NestedCounters) -> NestedCounters {
        var delta = NestedCounters()
        for (reason, count) in l2ExitsByReason { delta.l2ExitsByReason[reason] = count - (earlier.l2ExitsByReason[reason] ?? 0) }
        for (name, count) in vmxTrapped { delta.vmxTrapped[name] = count - (earlier.vmxTrapped[name] ?? 0) }
        delta.l2ExitsReflected = l2ExitsReflected - earlier.l2ExitsReflected
        delta.l2ExitsHandledByL0 = l2ExitsHandledByL0 - earlier.l2ExitsHandledByL0
        delta.l2Entries = l2Entries - earlier.l2Entries
        delta.vmreadServedByShadow = vmreadServedByShadow - earlier.vmreadServedByShadow
        delta.vmwriteServedByShadow = vmwriteServedByShadow - earlier.vmwriteServedByShadow
        delta.fieldsCopiedToShadow = fieldsCopiedToShadow - earlier.fieldsCopiedToShadow
        delta.fieldsCopiedToVMCS12 = fieldsCopiedToVMCS12 - earlier.fieldsCopiedToVMCS12
        delta.shadowSyncsToShadow = shadowSyncsToShadow - earlier.shadowSyncsToShadow
        delta.shadowSyncsToVMCS12 = shadowSyncsToVMCS12 - earlier.shadowSyncsToVMCS12
        delta.l0Nanoseconds = l0Nanoseconds - earlier.l0Nanoseconds
        return delta
    }
}
