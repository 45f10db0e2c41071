import ArgumentParser
import CommandLineSupport
import BladeAgentKit
import Foundation
import Logging

/// The per-blade agent of Nestor.
struct BladeAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blade-agent",
        abstract: "Nestor's per-blade agent: runs the partitioner (L0) that cuts a blade into LPARs.",
        discussion: """
            Errors in the input (flags, spec files) are reported in one line with exit code 2.
            """,
        version: "0.1.0",
        subcommands: [Bench.self, LPARCommand.self, CostModel.self])
}

/// Options every command shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "warning"

    func logger(_ label: String) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw AgentError.badInput("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        return logger
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks of the partitioner.",
        subcommands: [ShadowVMCS.self])
}

struct ShadowVMCS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadow-vmcs",
        abstract: "VMM on LPAR with VMCS shadowing off and on: the whitepaper's figure 10.",
        discussion: """
            Runs each workload in an L2 VM under a guest hypervisor (L1) in an LPAR, once with \
            L0's VMCS shadowing off and once on, and prints operations per second, the relative \
            performance (on/off), L2 exits per operation and L1's VMX instructions per operation \
            that trapped to L0. The sim backend is deterministic: the same seed gives the same \
            figures, bit for bit. Constants of the cost model: blade-agent cost-model.
            """)

    @Option(help: "Backend: sim (simulated, any host) or kvm.")
    var backend: String = "sim"
    @Option(help: "Workload: iometer, sysbench-oltp, pio-loop, idle or all (iometer and sysbench-oltp).")
    var workload: String = "all"
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Flag(help: "Also show how the gain grows with L1's VMCS accesses per exit.")
    var sweep = false
    @Option(help: "Spec file (YAML or JSON) with the blade, the VMM LPAR and the L2 VM to use.")
    var spec: String?
    @Option(help: "Seed of the simulation.")
    var seed: UInt64 = 1
    @Option(help: "Virtual seconds measured per run.")
    var seconds: Double = 1.0
    @Option(help: "Virtual seconds of warm-up before measuring.")
    var warmup: Double = 0.02
    @Option(help: "Shadow field set: linux-kvm (default), linux-kvm-3.10, none, or a comma-separated list of fields.")
    var shadowFields: String?
    @Option(help: "Cost model of the simulated platform.")
    var platform: String = "xeon-e5-2667v3"
    @Option(help: "Scale one cost-model constant, NAME=FACTOR (repeatable), for sensitivity studies.")
    var scale: [String] = []
    @Option(help: "sysbench-oltp: share (0 to 1) of statements whose server thread runs on another vCPU than its client.")
    var crossVCPUShare: Double = 0
    @OptionGroup var common: CommonOptions

    func run() throws {
        var options = ShadowBenchOptions()
        options.crossVCPUShare = crossVCPUShare
        options.backend = backend
        options.workload = workload
        options.json = json
        options.sweep = sweep
        options.specPath = spec
        options.seed = seed
        options.seconds = seconds
        options.warmup = warmup
        options.shadowFields = shadowFields
        options.platform = platform
        options.scale = scale
        let output = try ShadowBench.run(options, logger: try common.logger("nestor.blade-agent.bench"))
        print(output, terminator: output.hasSuffix("\n") ? "" : "\n")
    }
}

struct LPARCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lpar",
        abstract: "LPAR layouts.",
        subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a blade's LPAR layout against the isolation rules and print it.")

        @Option(help: "Spec file (YAML or JSON) with the blade and its LPARs.")
        var spec: String
        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            print(try LPARCheck.run(specPath: spec, json: json), terminator: "")
        }
    }
}

struct CostModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cost-model",
        abstract: "Print a simulated platform's cost model: every constant and its source.")

    @Option(help: "Platform.")
    var platform: String = "xeon-e5-2667v3"
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        print(try CostModelReport.run(platform: platform, json: json), terminator: "")
    }
}

exit(CommandRunner.run(BladeAgent.self) { error in
    (error as? AgentError).map { ($0.message, $0.exitCode) }
})
