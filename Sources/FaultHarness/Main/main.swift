import ArgumentParser
import CommandLineSupport
import FaultScenario
import Foundation

/// The failure-injection harness's command line.
struct NestorHarness: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nestor-harness",
        abstract: "Nestor's failure-injection harness: scenarios of faults against a real cluster, judged by an independent checker.",
        discussion: """
            A scenario file (YAML) names a cluster shape, tenants and their quotas, a workload, \
            timed faults (kill -9 and restart, SIGSTOP/SIGCONT, link faults through the \
            harness's fault proxy, the store's disk full or read-only, an lpar-host crash loop) \
            and expectations. The scenarios shipped with Nestor are in Tests/Scenarios.
            """,
        subcommands: [Check.self]
    )
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
        var paths = files
        if paths.isEmpty {
            let directory = "Tests/Scenarios"
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
                throw ValidationError("no scenario file given and no \(directory) directory here")
            }
            paths = names.filter { $0.hasSuffix(".yaml") }.sorted().map { "\(directory)/\($0)" }
            guard !paths.isEmpty else { throw ValidationError("no scenario file given and none in \(directory)") }
        }
        for path in paths {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ScenarioError("cannot read the scenario file \(path): \((error as NSError).localizedDescription)")
            }
            print(try ScenarioFile.parse(text, file: path).outline)
        }
    }
}

exit(CommandRunner.run(NestorHarness.self) { error in
    (error as? ScenarioError).map { ($0.message, 2) }
})
