public import VMX
public import Partitioner
public import Sizes

/// The configuration of the VMCS-shadowing benchmark (the whitepaper's figure 10).
public struct ShadowBenchmarkConfiguration: Equatable, Sendable {
    public var platform: PlatformCostModel
    /// The LPAR the guest hypervisor runs in; `vmcsShadowing` is set per run.
    public var lpar: LPARSpec
    public var l2VCPUs: Int
    public var l2MemoryBytes: UInt64
    public var seed: UInt64
    public var warmupSeconds: Double
    public var measureSeconds: Double
    public var shadowFields: ShadowFieldSet

    public init(platform: PlatformCostModel = .xeonE52667v3, lpar: LPARSpec = ShadowBenchmarkConfiguration.whitepaperLPAR,
                l2VCPUs: Int = 4, l2MemoryBytes: UInt64 = 8 * ByteSize.gib, seed: UInt64 = 1,
                warmupSeconds: Double = 0.02, measureSeconds: Double = 0.5, shadowFields: ShadowFieldSet = .linuxKVM) {
        self.platform = platform
        self.lpar = lpar
        self.l2VCPUs = l2VCPUs
        self.l2MemoryBytes = l2MemoryBytes
        self.seed = seed
        self.warmupSeconds = warmupSeconds
        self.measureSeconds = measureSeconds
        self.shadowFields = shadowFields
    }

    /// The whitepaper's LPAR: 6 dedicated cores, 10 GiB, VMX exposed (VMM on LPAR).
    public static let whitepaperLPAR = LPARSpec(
        name: "vmm-lpar", cpu: .dedicated(cores: [2, 3, 4, 5, 6, 7]),
        memory: MemoryRange(base: 2 * ByteSize.gib, size: 10 * ByteSize.gib),
        disks: [.shared(diskID: "fc0", luns: 0..<8)], nics: ["eth0"], vmm: true, vmcsShadowing: true)

    /// Why this configuration cannot run, or nil.
    public func problem() -> String? {
        if !(warmupSeconds >= 0) || !warmupSeconds.isFinite { return "warm-up \(warmupSeconds) s is not a non-negative number" }
        if !(measureSeconds > 0) || !measureSeconds.isFinite { return "measurement \(measureSeconds) s must be positive" }
        if measureSeconds > 600 { return "measurement \(measureSeconds) s is longer than 600 s of virtual time" }
        if l2VCPUs < 1 { return "the L2 VM needs at least one vCPU" }
        if l2VCPUs >= lpar.cpu.logicalCPUCount {
            return "an L2 VM of \(l2VCPUs) vCPUs needs at least \(l2VCPUs + 1) cores in the LPAR (it has \(lpar.cpu.logicalCPUCount))"
        }
        if l2MemoryBytes == 0 || l2MemoryBytes > lpar.memory.size {
            return "L2 memory \(ByteSize.format(l2MemoryBytes)) does not fit in the LPAR's \(ByteSize.format(lpar.memory.size))"
        }
        if !lpar.vmm { return "LPAR \(lpar.name) must have vmm: true to run a guest hypervisor" }
        if let problem = shadowFields.problem() { return problem }
        return nil
    }
}

/// The measurements of one workload run with one shadowing setting.
public struct ShadowRun: Equatable, Sendable, Codable {
    public var shadowing: Bool
    public var operations: UInt64
    public var seconds: Double
    public var opsPerSecond: Double
    public var l2Exits: UInt64
    public var trappedVMX: UInt64
    public var servedByShadow: UInt64
    public var l0Seconds: Double
    public var exitsByReason: [String: UInt64]
    public var trappedByInstruction: [String: UInt64]
    /// vCPU time per operation, in microseconds, spent in L0, in L1 and in L2.
    public var l0MicrosPerOp: Double
    public var l1MicrosPerOp: Double
    public var l2MicrosPerOp: Double

    public init(shadowing: Bool, operations: UInt64, seconds: Double, opsPerSecond: Double, l2Exits: UInt64, trappedVMX: UInt64,
                servedByShadow: UInt64, l0Seconds: Double, exitsByReason: [String: UInt64], trappedByInstruction: [String: UInt64],
                l0MicrosPerOp: Double, l1MicrosPerOp: Double, l2MicrosPerOp: Double) {
        self.shadowing = shadowing
        self.operations = operations
        self.seconds = seconds
        self.opsPerSecond = opsPerSecond
        self.l2Exits = l2Exits
        self.trappedVMX = trappedVMX
        self.servedByShadow = servedByShadow
        self.l0Seconds = l0Seconds
        self.exitsByReason = exitsByReason
        self.trappedByInstruction = trappedByInstruction
        self.l0MicrosPerOp = l0MicrosPerOp
        self.l1MicrosPerOp = l1MicrosPerOp
        self.l2MicrosPerOp = l2MicrosPerOp
    }
}

/// One row of the figure: a workload with shadowing off and on.
public struct ShadowWorkloadResult: Equatable, Sendable, Codable {
    public var name: String
    public var operation: String
    public var opsPerSecondOff: Double
    public var opsPerSecondOn: Double
    public var relative: Double
    public var l2ExitsPerOp: Double
    public var trappedVMXPerOpOff: Double
    public var trappedVMXPerOpOn: Double
    public var shadowServedPerOpOn: Double
    public var vmxAccessesPerExit: Double
    public var off: ShadowRun
    public var on: ShadowRun
    /// The same workload run directly in a plain LPAR (the kvm backend), so that the cost of
    /// nesting is visible; nil on the simulated backend.
    public var l1OnlyOpsPerSecond: Double?
}

/// The benchmark's report (`blade-agent bench shadow-vmcs`).
public struct ShadowBenchmarkReport: Equatable, Sendable, Codable {
    public var backend: String
    public var platform: String
    public var platformSummary: String
    public var shadowFields: String
    public var seed: UInt64
    public var virtualSeconds: Double
    public var workloads: [ShadowWorkloadResult]
    public var sweep: [SweepPoint]?

    public init(backend: String, platform: String, platformSummary: String, shadowFields: String, seed: UInt64,
                virtualSeconds: Double, workloads: [ShadowWorkloadResult], sweep: [SweepPoint]? = nil) {
        self.backend = backend
        self.platform = platform
        self.platformSummary = platformSummary
        self.shadowFields = shadowFields
        self.seed = seed
        self.virtualSeconds = virtualSeconds
        self.workloads = workloads
        self.sweep = sweep
    }
}

/// A point of the sweep: extra VMCS reads per exit, and what they do to the gain.
public struct SweepPoint: Equatable, Sendable, Codable {
    public var extraReadsPerExit: Int
    public var vmxAccessesPerExit: Double
    public var opsPerSecondOff: Double
    public var opsPerSecondOn: Double
    public var relative: Double
}

/// Runs workloads on the simulated backend with VMCS shadowing off and on.
public enum ShadowBenchmark {
    /// Measures one workload once.
    public static func measure(_ workload: any WorkloadModel, shadowing: Bool,
                               configuration: ShadowBenchmarkConfiguration,
                               extraL1ReadsPerExit: Int = 0) throws(SimError) -> ShadowRun {
        var spec = configuration.lpar
        spec.vmcsShadowing = shadowing
        spec.shadowFields = configuration.shadowFields
        let lpar: SimLPAR
        do {
            lpar = try SimLPAR(spec: spec, costs: configuration.platform, workload: workload,
                               seed: configuration.seed, extraL1ReadsPerExit: extraL1ReadsPerExit)
        } catch { throw .model(error.description) }
        let platform = configuration.platform
        let warmupEnd = platform.cycles(seconds: configuration.warmupSeconds)
        try lpar.run(until: warmupEnd)
        let before = lpar.counters
        let opsBefore = lpar.operations
        let splitBefore = lpar.cycleSplit
        let end = warmupEnd + platform.cycles(seconds: configuration.measureSeconds)
        try lpar.run(until: end)
        let delta = lpar.counters.since(before)
        let operations = lpar.operations - opsBefore
        let seconds = configuration.measureSeconds
        let split = lpar.cycleSplit
        func micros(_ cycles: Cycles) -> Double {
            operations == 0 ? 0 : platform.seconds(cycles) * 1e6 / Double(operations)
        }
        return ShadowRun(
            shadowing: shadowing, operations: operations, seconds: seconds,
            opsPerSecond: Double(operations) / seconds,
            l2Exits: delta.totalL2Exits, trappedVMX: delta.totalTrapped,
            servedByShadow: delta.totalServedByShadow,
            l0Seconds: Double(delta.l0Nanoseconds) / 1e9,
            exitsByReason: Dictionary(uniqueKeysWithValues: delta.l2ExitsByReason.filter { $0.value > 0 }
                .map { (ExitReason(rawValue: $0.key).name, $0.value) }),
            trappedByInstruction: delta.vmxTrapped.filter { $0.value > 0 },
            l0MicrosPerOp: micros(split.l0 - splitBefore.l0), l1MicrosPerOp: micros(split.l1 - splitBefore.l1),
            l2MicrosPerOp: micros(split.l2 - splitBefore.l2))
    }

    /// Runs one workload off and on.
    public static func compare(_ workload: any WorkloadModel,
                               configuration: ShadowBenchmarkConfiguration) throws(SimError) -> ShadowWorkloadResult {
        let off = try measure(workload, shadowing: false, configuration: configuration)
        let on = try measure(workload, shadowing: true, configuration: configuration)
        return result(workload, off: off, on: on)
    }

    static func result(_ workload: any WorkloadModel, off: ShadowRun, on: ShadowRun) -> ShadowWorkloadResult {
        result(name: workload.name, operation: workload.operationName, off: off, on: on)
    }

    /// A row of the figure from the two runs of one workload.
    public static func result(name: String, operation: String, off: ShadowRun, on: ShadowRun,
                              l1OnlyOpsPerSecond: Double? = nil) -> ShadowWorkloadResult {
        func per(_ value: UInt64, _ ops: UInt64) -> Double { ops == 0 ? 0 : Double(value) / Double(ops) }
        let accesses = off.l2Exits == 0 ? 0 : Double(off.trappedVMX) / Double(off.l2Exits)
        return ShadowWorkloadResult(
            name: name, operation: operation,
            opsPerSecondOff: off.opsPerSecond, opsPerSecondOn: on.opsPerSecond,
            relative: off.opsPerSecond == 0 ? 0 : on.opsPerSecond / off.opsPerSecond,
            l2ExitsPerOp: per(off.l2Exits, off.operations),
            trappedVMXPerOpOff: per(off.trappedVMX, off.operations),
            trappedVMXPerOpOn: per(on.trappedVMX, on.operations),
            shadowServedPerOpOn: per(on.servedByShadow, on.operations),
            vmxAccessesPerExit: accesses, off: off, on: on, l1OnlyOpsPerSecond: l1OnlyOpsPerSecond)
    }

    /// Runs the figure for the named workloads.
    public static func run(workloads: [any WorkloadModel], configuration: ShadowBenchmarkConfiguration,
                           sweep: Bool = false) throws(SimError) -> ShadowBenchmarkReport {
        var results: [ShadowWorkloadResult] = []
        for workload in workloads {
            results.append(try compare(workload, configuration: configuration))
        }
        var points: [SweepPoint]?
        if sweep {
            points = try self.sweep(configuration: configuration)
        }
        return ShadowBenchmarkReport(
            backend: "sim", platform: configuration.platform.name,
            platformSummary: configuration.platform.summary, shadowFields: configuration.shadowFields.name,
            seed: configuration.seed, virtualSeconds: configuration.measureSeconds,
            workloads: results, sweep: points)
    }

    /// The pio-loop microbenchmark with L1 making more VMCS reads per exit: the gain grows
    /// with them (every operation is one exit, so nothing else changes).
    public static func sweep(configuration: ShadowBenchmarkConfiguration,
                             extras: [Int] = [0, 8, 16, 32, 64]) throws(SimError) -> [SweepPoint] {
        let workload = PIOLoopWorkload(vcpus: configuration.l2VCPUs)
        var points: [SweepPoint] = []
        for extra in extras {
            let off = try measure(workload, shadowing: false, configuration: configuration, extraL1ReadsPerExit: extra)
            let on = try measure(workload, shadowing: true, configuration: configuration, extraL1ReadsPerExit: extra)
            let accesses = off.l2Exits == 0 ? 0 : Double(off.trappedVMX) / Double(off.l2Exits)
            points.append(SweepPoint(extraReadsPerExit: extra, vmxAccessesPerExit: accesses,
                                     opsPerSecondOff: off.opsPerSecond, opsPerSecondOn: on.opsPerSecond,
                                     relative: off.opsPerSecond == 0 ? 0 : on.opsPerSecond / off.opsPerSecond))
        }
        return points
    }
}
