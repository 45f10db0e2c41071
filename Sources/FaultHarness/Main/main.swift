public import ArgumentParser
import CommandLineSupport
import FaultHarness
import FaultRunner
import FaultScenario
import FaultSimulation
import Foundation
public import Partitioner
#if canImport(Glibc)
import Glibc
#endif

/// The failure-injection harness's command line.
struct NestorHarness: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nestor-harness",
        abstract: "Nestor's failure-injection harness: scenarios of faults against a real cluster, judged by an independent checker.",
        discussion: """
            A scenario file (YAML) names a cluster shape, tenants and their quotas, a workload, \
            timed faults (kill -9 and restart, SIGSTOP/SIGCONT, link faults through the \
            harness's fault proxy, the store's disk full or read-only, an lpar-host crash loop) \
            and expectations. The scenarios shipped with Nestor are in Tests/Scenarios.

            'run' starts a real cluster per scenario and seed on loopback (a PKI, one \
            cluster-controller, one blade-agent per blade, each agent's link through a fault \
            proxy), runs the workload's clients and the faults together, samples every agent's \
            actual LPARs and the store's file five times a second, and has the checker judge each \
            sample and, once every fault has healed and the cluster settled, the end state \
            against the clients' history. Exit 0 when every run kept every invariant and met its \
            expectations, 1 when one did not, 2 on bad input.
            """,
        subcommands: [Run.self, Simulate.self, Check.self]
    )
}

/// Scenario files from the arguments, or every .yaml file in Tests/Scenarios.
func scenarioPaths(_ files: [String]) throws -> [String] {
    guard files.isEmpty else { return files }
    let directory = "Tests/Scenarios"
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
        throw ValidationError("no scenario file given and no \(directory) directory here")
    }
    let paths = names.filter { $0.hasSuffix(".yaml") }.sorted().map { "\(directory)/\($0)" }
    guard !paths.isEmpty else { throw ValidationError("no scenario file given and none in \(directory)") }
    return paths
}

func readScenario(_ path: String) throws -> Scenario {
    let text: String
    do {
        text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw ScenarioError("cannot read the scenario file \(path): \((error as NSError).localizedDescription)")
    }
    return try ScenarioFile.parse(text, file: path)
}

/// Runs scenarios against real processes and prints a table of the results.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run scenarios against a real cluster on loopback, each with each seed, and print the results.",
        discussion: """
            With no file, every .yaml file in Tests/Scenarios (from the current directory) runs. \
            A seed decides the workload's operations and their times and which LPAR a fault \
            hits; the same seed replays the same plan. Each run's files (the processes' logs, \
            the PKI, the store) go to a directory of their own under --work-dir, kept when the \
            run fails. The controller runs with 500 ms heartbeats, suspect after 1.5 s and \
            unreachable after 3 s. The store's disk faults need root (a tmpfs) and, for \
            read-only, FUSE with Debian's python3-fusepy; scenarios that crash lpar-host \
            processes need --backend kvm and are skipped with the reason on sim.
            --json prints {"runs":[{"scenario":S,"seed":N,"faults":N,"ok":N,"refused":N,\
            "failed":N,"unknown":N,"lostAcknowledged":N,"violations":N,"firstViolation":S|null,\
            "longestUnavailableSeconds":N,...}],"skipped":[...]}.
            """
    )

    @Argument(help: "Scenario files (YAML).")
    var files: [String] = []
    @Option(help: "Seeds: a number, a range or a list (1-5, 7, 1,4,9-10).")
    var seeds: String = "1"
    @Option(help: "The agents' backend: sim or kvm.")
    var backend: BackendKind = .sim
    @Flag(help: "Print the results as one JSON object instead of a table.")
    var json = false
    @Option(help: "Directory of cluster-controller and blade-agent (default: next to this executable).")
    var binDir: String?
    @Option(help: "Where each run's directory is made (default: the temporary directory).")
    var workDir: String?
    @Flag(help: "Keep each run's directory also when the run passed.")
    var keep = false
    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func run() async throws {
        let seedList: [UInt64]
        do { seedList = try SeedList.parse(seeds) } catch { throw ValidationError("--seeds \(error.message)") }
        let scenarios = try scenarioPaths(files).map(readScenario)
        var options = RunOptions(binaries: try Binaries.find(in: binDir))
        options.backend = backend
        if let workDir { options.workDirectory = workDir }
        options.keepFiles = keep
        let quiet = self.quiet
        options.log = { line in if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) } }

        var results: [RunResult] = []
        var skipped: [[String: String]] = []
        var errors = 0
        for scenario in scenarios {
            if let reason = ScenarioRunner.unsupported(scenario, backend: backend) {
                options.log("\(scenario.name): skipped on \(backend.rawValue): \(reason)")
                skipped.append(["scenario": scenario.name, "backend": backend.rawValue, "reason": reason])
                continue
            }
            for seed in seedList {
                do {
                    results.append(try await ScenarioRunner.run(scenario, seed: seed, options: options))
                } catch {
                    errors += 1
                    FileHandle.standardError.write(Data("nestor-harness: \(scenario.name) seed \(seed) could not run: \(error)\n".utf8))
                }
            }
        }
        if json {
            let report = RunReport(runs: results, skipped: skipped)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(RunTable.render(results), terminator: "")
            for entry in skipped { print("\(entry["scenario"]!): skipped on \(backend.rawValue): \(entry["reason"]!)") }
        }
        if errors > 0 || results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
}

extension BackendKind: ExpressibleByArgument {}

/// The JSON `run --json` prints.
struct RunReport: Encodable {
    var runs: [RunResult]
    var skipped: [[String: String]]

    enum Keys: String, CodingKey { case runs, skipped }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(runs.map(JSONRun.init), forKey: .runs)
        try container.encode(skipped, forKey: .skipped)
    }

    /// A run with `firstViolation` written as null when there is none.
    struct JSONRun: Encodable {
        let result: RunResult
        init(_ result: RunResult) { self.result = result }

        enum Keys: String, CodingKey {
            case scenario, seed, backend, durationSeconds, faults, ok, refused, failed, unknown, lostAcknowledged, violations,
                 firstViolation, longestUnavailableSeconds, unmetExpectations, passed
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(result.scenario, forKey: .scenario)
            try container.encode(result.seed, forKey: .seed)
            try container.encode(result.backend, forKey: .backend)
            try container.encode(result.durationSeconds, forKey: .durationSeconds)
            try container.encode(result.faults, forKey: .faults)
            try container.encode(result.ok, forKey: .ok)
            try container.encode(result.refused, forKey: .refused)
            try container.encode(result.failed, forKey: .failed)
            try container.encode(result.unknown, forKey: .unknown)
            try container.encode(result.lostAcknowledged, forKey: .lostAcknowledged)
            try container.encode(result.violations, forKey: .violations)
            try container.encode(result.firstViolation, forKey: .firstViolation)
            try container.encode(result.longestUnavailableSeconds, forKey: .longestUnavailableSeconds)
            try container.encode(result.unmetExpectations, forKey: .unmetExpectations)
            try container.encode(result.passed, forKey: .passed)
        }
    }
}

/// Runs the deterministic cluster simulation over many seeds.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the deterministic cluster simulation: the controller's and every agent's pure cores over a simulated network, store and clock, one seed per run.",
        discussion: """
            Each seed is one run: the workload's clients, faults drawn from the seed (links cut \
            one way or both, delayed, lossy and duplicating; agents killed, restarted, paused; \
            the controller killed, or killed right after a commit before it answers; LPARs \
            failed; with the test switch shared-store, a second controller on the same store), \
            then everything heals and the cluster must settle. The checker of 'run' judges a \
            sample every simulated second and the end. A failing seed is printed; \
            --seed N --trace replays it event by event. Runs use deterministic hashing (the \
            command restarts itself with SWIFT_DETERMINISTIC_HASHING=1), so a seed replays \
            exactly in any process. Exit 1 when a seed broke an invariant (or, with a test \
            switch, when none did).
            --json prints {"seeds":N,"blades":N,"seedsPerSecond":N,"simulatedToReal":N,\
            "violations":N,"failingSeeds":[N],...}.
            """
    )

    @Option(help: "Seeds: a number, a range or a list (1-1000, 7, 1,4,9-10).")
    var seeds: String = "1-100"
    @Option(help: "Replay this one seed (with --trace, event by event).")
    var seed: UInt64?
    @Flag(help: "Print every event of the run (with --seed).")
    var trace = false
    @Option(help: "Blades in the simulated cluster (ten a chassis), 4 to 2000.")
    var blades: Int = 100
    @Option(help: "Simulated minutes of workload and faults per seed, 0.2 to 120.")
    var minutes: Double = 1
    @Option(help: "Faults per simulated minute, 0 to 600.")
    var faultsPerMinute: Double = 6
    @Option(help: "A test switch that breaks the code under test (no-store-cas, skip-hard-anti-affinity, shared-store); repeatable. The run then expects violations.")
    var testSwitch: [String] = []
    @Option(help: "Seeds run at once, on threads of their own (default: the machine's cores).")
    var jobs: Int?
    @Flag(help: "Print one JSON object.")
    var json = false
    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func run() throws {
        Self.ensureDeterministicHashing()
        guard (4...2_000).contains(blades) else { throw ValidationError("--blades \(blades) is not between 4 and 2000") }
        guard minutes >= 0.2, minutes <= 120 else { throw ValidationError("--minutes \(minutes) is not between 0.2 and 120") }
        guard faultsPerMinute >= 0, faultsPerMinute <= 600 else { throw ValidationError("--faults-per-minute \(faultsPerMinute) is not between 0 and 600") }
        if trace && seed == nil { throw ValidationError("--trace replays one seed: name it with --seed N") }
        var config = SimulationConfig(blades: blades, minutes: minutes)
        config.faultsPerMinute = faultsPerMinute
        for name in testSwitch {
            guard let value = TestSwitch(rawValue: name) else {
                throw ValidationError("--test-switch '\(name)' is not one of \(TestSwitch.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            config.testSwitches.insert(value)
        }
        if config.testSwitches.contains(.noStoreCAS) && !config.testSwitches.contains(.sharedStore) {
            throw ValidationError("--test-switch no-store-cas needs --test-switch shared-store too: with one controller, nothing else writes its store")
        }
        let seedList: [UInt64]
        if let seed { seedList = [seed] } else {
            do { seedList = try SeedList.parse(seeds) } catch { throw ValidationError("--seeds \(error.message)") }
        }
        let workers = max(1, min(jobs ?? ProcessInfo.processInfo.activeProcessorCount, 64, seedList.count))
        let quiet = self.quiet
        if trace, let seed {
            let result = Simulation.run(seed: seed, config: config) { time, text in
                print("\(Self.seconds(time)) \(text)")
            }
            print(SimulationReport.line(result))
            if !SimulationReport.passed(result, switches: config.testSwitches) { throw ExitCode(1) }
            return
        }
        let started = ContinuousClock.now
        let switches = config.testSwitches
        let results = SimulationRunner.run(seeds: seedList, config: config, workers: workers) { done, result in
            guard !quiet else { return }
            if !result.violations.isEmpty && !SimulationReport.breaking(switches) {
                FileHandle.standardError.write(Data("seed \(result.seed): \(SimulationReport.line(result))\n".utf8))
            }
            if done % 100 == 0 { FileHandle.standardError.write(Data("\(done)/\(seedList.count) seeds\n".utf8)) }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let report = SimulationReport(results: results, blades: blades, seconds: seconds, switches: config.testSwitches, workers: workers)
        if json {
            print(report.json)
        } else {
            print(report.table, terminator: "")
        }
        if !report.passed { throw ExitCode(1) }
    }

    static func seconds(_ millis: UInt64) -> String {
        let text = String(millis % 1_000)
        return "\(millis / 1_000).\(String(repeating: "0", count: 3 - text.count))\(text)"
    }

    /// Restarts this process with SWIFT_DETERMINISTIC_HASHING=1 unless it has it: a
    /// dictionary's order then depends on its contents alone, in every process.
    static func ensureDeterministicHashing() {
        guard ProcessInfo.processInfo.environment["SWIFT_DETERMINISTIC_HASHING"] == nil else { return }
        setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var arguments = CommandLine.arguments.map { strdup($0) }
        arguments.append(nil)
        execv(executable, arguments)
        // Only when exec failed: run on, with the process's own hashing.
    }
}

/// Reads scenario files and says what each would run, or why it cannot.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Read scenario files and print what each runs; a file with an unknown key, a bad value or an impossible cluster is refused (exit 2).",
        discussion: "With no file, every .yaml file in Tests/Scenarios (from the current directory) is read."
    )

    @Argument(help: "Scenario files (YAML).")
    var files: [String] = []

    func run() throws {
        for path in try scenarioPaths(files) {
            print(try readScenario(path).outline)
        }
    }
}

exit(await CommandRunner.runAsync(NestorHarness.self) { error in
    if let scenario = error as? ScenarioError { return (scenario.message, 2) }
    if let harness = error as? HarnessError { return (harness.description, 1) }
    return nil
})
