import Foundation
public import Logging
public import Partitioner
public import SimBackend
import VMX
import Sizes

/// `blade-agent bench shadow-vmcs`: the whitepaper's figure 10 on a backend.
public struct ShadowBenchOptions: Equatable, Sendable {
    public var backend: BackendKind = .sim
    public var workload: ShadowBenchWorkload = .all
    public var json = false
    public var sweep = false
    public var specPath: String?
    public var seed: UInt64 = 1
    public var seconds: Double = 1.0
    public var warmup: Double = 0.02
    public var shadowFields: String?
    public var platform: String = PlatformCostModel.xeonE52667v3.name
    /// Constants to scale, as NAME=FACTOR, for sensitivity studies.
    public var scale: [String] = []
    /// sysbench-oltp: share of statements whose server thread runs on another vCPU.
    public var crossVCPUShare: Double = 0

    public init() {}
}

/// The workloads `bench shadow-vmcs` runs in its L2 VM; `all` is the whitepaper's two.
public enum ShadowBenchWorkload: String, Sendable, Equatable, CaseIterable {
    case iometer
    case sysbenchOLTP = "sysbench-oltp"
    case pioLoop = "pio-loop"
    case idle
    case all

    /// The workload models' names this choice runs.
    public var modelNames: [String] {
        self == .all ? [Self.iometer.rawValue, Self.sysbenchOLTP.rawValue] : [rawValue]
    }
}

public enum ShadowBench {
    /// The cost models available by name.
    public static let platforms: [PlatformCostModel] = [.xeonE52667v3]

    /// Builds the benchmark configuration from the options, refusing bad input in one line.
    public static func configuration(_ options: ShadowBenchOptions) throws(AgentError) -> (ShadowBenchmarkConfiguration, [any WorkloadModel]) {
        let backend = options.backend
        guard var platform = platforms.first(where: { $0.name == options.platform }) else {
            throw .badInput("unknown platform '\(options.platform)' (known: \(platforms.map(\.name).joined(separator: ", ")))")
        }
        for item in options.scale {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let factor = Double(parts[1]), factor > 0, factor.isFinite else {
                throw .badInput("--scale '\(item)' is not NAME=FACTOR with a positive factor")
            }
            guard let scaled = platform.scaling(parts[0], by: factor) else {
                throw .badInput("--scale: '\(parts[0])' is not a constant of \(platform.name) (see blade-agent cost-model)")
            }
            platform = scaled
        }
        if !(options.seconds > 0) || !options.seconds.isFinite {
            throw .badInput("--seconds \(options.seconds) must be a positive number of virtual seconds")
        }
        if !(options.warmup >= 0) || !options.warmup.isFinite {
            throw .badInput("--warmup \(options.warmup) must be zero or a positive number of virtual seconds")
        }
        var config = ShadowBenchmarkConfiguration(platform: platform)
        config.seed = options.seed
        config.measureSeconds = options.seconds
        config.warmupSeconds = options.warmup
        if let path = options.specPath {
            let spec = try BladeSpec.load(path: path)
            guard let lpar = spec.lpars.first(where: \.vmm) else {
                throw .badInput("\(path): no LPAR with vmm: true to run the guest hypervisor in")
            }
            config.lpar = lpar
            config.shadowFields = lpar.shadowFields
            if let vcpus = spec.l2VCPUs { config.l2VCPUs = vcpus }
            if let memory = spec.l2MemoryBytes { config.l2MemoryBytes = memory }
        }
        if let name = options.shadowFields {
            if let set = ShadowFieldSet.named(name) {
                config.shadowFields = set
            } else {
                let names = name.split(separator: ",").map(String.init)
                config.shadowFields = try BladeSpec.customFieldSet(names, where: "--shadow-fields")
            }
        }
        if let problem = config.problem() { throw .badInput(problem) }
        let names = options.workload.modelNames
        if !(0...1).contains(options.crossVCPUShare) {
            throw .badInput("--cross-vcpu-share \(options.crossVCPUShare) is not a share between 0 and 1")
        }
        let workloads = names.compactMap {
            Workloads.named($0, vcpus: config.l2VCPUs, crossVCPUShare: options.crossVCPUShare)
        }
        let hypervisor = try BackendFactory.make(backend, platform: config.platform, seed: config.seed)
        guard hypervisor.capabilities.nestedVMX, hypervisor.capabilities.vmcsShadowing else {
            throw .badInput("backend \(backend.rawValue) cannot run a guest hypervisor with VMCS shadowing on this host")
        }
        return (config, workloads)
    }

    /// Runs the benchmark on the kvm backend (real KVM) and returns what to print.
    public static func runKVM(_ options: ShadowBenchOptions, images: String, logger: Logger) async throws(AgentError) -> String {
        #if os(Linux)
        logger.info("shadow-vmcs benchmark starting", metadata: ["bench.backend": "kvm", "bench.seconds": "\(options.seconds)"])
        let report = try await ShadowBenchKVM.run(options, images: images)
        return options.json ? try json(report) : textKVM(report)
        #else
        throw .badInput("the kvm backend runs on Linux only")
        #endif
    }

    /// Where each workload's vCPU time goes, off and on, and L1's VMX accesses.
    static func timeSplit(_ report: ShadowBenchmarkReport) -> String {
        var out = ""
        for w in report.workloads {
            out += "\n\(w.name) (one op = \(w.operation)): vCPU time per op off "
            out += "L0 \(fixed(w.off.l0MicrosPerOp, 1)) us, L1 \(fixed(w.off.l1MicrosPerOp, 1)) us, L2 \(fixed(w.off.l2MicrosPerOp, 1)) us; "
            out += "on L0 \(fixed(w.on.l0MicrosPerOp, 1)) us, L1 \(fixed(w.on.l1MicrosPerOp, 1)) us, L2 \(fixed(w.on.l2MicrosPerOp, 1)) us\n"
            out += "  VMX accesses of L1 per L2 exit: \(fixed(w.vmxAccessesPerExit, 1)); served by the shadow per op (on): \(fixed(w.shadowServedPerOpOn, 1))\n"
        }
        return out
    }

    public static func textKVM(_ report: ShadowBenchmarkReport) -> String {
        var out = "VMCS shadowing, VMM on LPAR (backend kvm: \(report.platform))\n"
        out += "\(report.platformSummary)\n"
        out += "LPAR 1 core / 64MiB with the l1-vmm guest hypervisor; one L2 VM (l2-os, 4MiB) on a 16MiB slice of its disk; "
        out += "shadow fields \(report.shadowFields); \(fixed(report.virtualSeconds, 1)) s of wall-clock time per run\n\n"
        let table = TextTable(
            header: ["workload", "ops/s off", "ops/s on", "relative", "L2 exits/op", "trapped VMX/op off", "trapped VMX/op on", "ops/s L1 only"],
            rows: report.workloads.map { w in
                [w.name, grouped(w.opsPerSecondOff), grouped(w.opsPerSecondOn), fixed(w.relative, 2) + "x",
                 fixed(w.l2ExitsPerOp, 1), fixed(w.trappedVMXPerOpOff, 1), fixed(w.trappedVMXPerOpOn, 1),
                 grouped(w.l1OnlyOpsPerSecond ?? 0)]
            },
            rightAligned: [1, 2, 3, 4, 5, 6, 7])
        out += table.render() + "\n"
        out += timeSplit(report)
        out += "\nWhitepaper (Xeon E5-2667 v3, Virtage, hardware VMX): iometer 1.8x, sysbench-oltp 1.4x.\n"
        return out
    }

    /// Runs the benchmark and returns what to print.
    public static func run(_ options: ShadowBenchOptions, logger: Logger) throws(AgentError) -> String {
        let (config, workloads) = try configuration(options)
        logger.info("shadow-vmcs benchmark starting", metadata: [
            "bench.backend": "\(options.backend)", "bench.platform": "\(config.platform.name)",
            "bench.seed": "\(config.seed)", "bench.seconds": "\(config.measureSeconds)",
            "bench.shadow_fields": "\(config.shadowFields.name)",
        ])
        let report: ShadowBenchmarkReport
        do {
            report = try ShadowBenchmark.run(workloads: workloads, configuration: config, sweep: options.sweep)
        } catch {
            throw .failure("simulation failed: \(error)")
        }
        return options.json ? try json(report) : text(report, config: config)
    }

    public static func json(_ report: ShadowBenchmarkReport) throws(AgentError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return String(decoding: try encoder.encode(report), as: UTF8.self)
        } catch {
            throw .failure("cannot encode the report: \(error)")
        }
    }

    public static func text(_ report: ShadowBenchmarkReport, config: ShadowBenchmarkConfiguration) -> String {
        var out = "VMCS shadowing, VMM on LPAR (backend \(report.backend), platform \(report.platform))\n"
        out += "\(report.platformSummary)\n"
        out += "LPAR \(config.lpar.cpu.logicalCPUCount) cores / \(ByteSize.format(config.lpar.memory.size)); "
        out += "L2 VM \(config.l2VCPUs) vCPUs / \(ByteSize.format(config.l2MemoryBytes)); shadow fields \(report.shadowFields); "
        out += "\(fixed(report.virtualSeconds, 2)) s of virtual time per run, seed \(report.seed)\n\n"
        let table = TextTable(
            header: ["workload", "ops/s off", "ops/s on", "relative", "L2 exits/op", "trapped VMX/op off", "trapped VMX/op on"],
            rows: report.workloads.map { w in
                [w.name, grouped(w.opsPerSecondOff), grouped(w.opsPerSecondOn), fixed(w.relative, 2) + "x",
                 fixed(w.l2ExitsPerOp, 1), fixed(w.trappedVMXPerOpOff, 1), fixed(w.trappedVMXPerOpOn, 1)]
            },
            rightAligned: [1, 2, 3, 4, 5, 6])
        out += table.render() + "\n"
        out += timeSplit(report)
        if let sweep = report.sweep {
            out += "\nSweep (pio-loop: 2 us of work, then one exit L1 handles in its kernel): the gain grows with L1's VMCS accesses per exit\n"
            out += TextTable(
                header: ["extra reads/exit", "VMX accesses/exit", "ops/s off", "ops/s on", "relative"],
                rows: sweep.map { p in
                    [String(p.extraReadsPerExit), fixed(p.vmxAccessesPerExit, 1), grouped(p.opsPerSecondOff),
                     grouped(p.opsPerSecondOn), fixed(p.relative, 2) + "x"]
                },
                rightAligned: [0, 1, 2, 3, 4]).render() + "\n"
        }
        out += "\nWhitepaper (Xeon E5-2667 v3, Virtage): iometer 1.8x, sysbench-oltp 1.4x.\n"
        return out
    }
}

/// `blade-agent cost-model`: a platform's constants and their sources.
public enum CostModelReport {
    public static func run(platform name: String, json: Bool) throws(AgentError) -> String {
        guard let platform = ShadowBench.platforms.first(where: { $0.name == name }) else {
            throw .badInput("unknown platform '\(name)' (known: \(ShadowBench.platforms.map(\.name).joined(separator: ", ")))")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            guard let data = try? encoder.encode(platform) else { throw .failure("cannot encode the cost model") }
            return String(decoding: data, as: UTF8.self) + "\n"
        }
        var out = "\(platform.name): \(platform.summary), \(fixed(platform.cpuHz / 1e9, 1)) GHz\n\n"
        for constant in platform.constants {
            let micros = platform.seconds(platform.c(constant)) * 1e6
            out += "\(constant.name) = \(grouped(constant.cycles)) cycles (\(fixed(micros, 3)) us)\n  \(constant.source)\n"
        }
        out += "vmx-emulation-vmcs-accesses = \(platform.vmxEmulationVMCSAccesses) (count)\n"
        out += "nested-entry-control-fields = \(platform.nestedEntryControlFields) (count)\n"
        return out
    }
}
