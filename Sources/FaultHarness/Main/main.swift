import ArgumentParser
import CommandLineSupport
import FaultHarness
import FaultRunner
import FaultScenario
import Foundation

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
        subcommands: [Run.self, Check.self]
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
    var backend: String = "sim"
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
        guard backend == "sim" || backend == "kvm" else { throw ValidationError("--backend '\(backend)' is not sim or kvm") }
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
                options.log("\(scenario.name): skipped on \(backend): \(reason)")
                skipped.append(["scenario": scenario.name, "backend": backend, "reason": reason])
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
            for entry in skipped { print("\(entry["scenario"]!): skipped on \(backend): \(entry["reason"]!)") }
        }
        if errors > 0 || results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
}

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
