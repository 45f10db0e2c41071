import Foundation
import Testing

/// `nestor-harness` as a user runs it: a real process, its exit code and its output.
struct HarnessCommandTests {
    static var executable: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("nestor-harness").path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("nestor-harness")
    }

    /// Runs the harness on a thread of its own (waiting holds no thread of the cooperative pool).
    static func harness(_ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let process = Process()
                    process.executableURL = executable
                    process.arguments = arguments
                    let out = Pipe(), err = Pipe()
                    process.standardOutput = out
                    process.standardError = err
                    try process.run()
                    let stdout = out.fileHandleForReading.readDataToEndOfFile()
                    let stderr = err.fileHandleForReading.readDataToEndOfFile()
                    process.waitUntilExit()
                    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
                })
            }.start()
        }
    }

    @Test func checkReadsTheShippedScenarios() async throws {
        let files = try ScenarioFileTests.files().map(\.path)
        let result = try await Self.harness(["check"] + files)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("agent-kill: 20 s, 4 blades of 8 cores"))
        #expect(result.out.contains("fault: at 4 s kill -9 agent blade-2, restarted 5 s later"))
    }

    @Test func aBadScenarioIsRefusedInOneLineWithExitTwo() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestor-harness-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let unknownKey = directory.appendingPathComponent("unknown.yaml")
        try ScenarioFileTests.text { $0.replacingOccurrences(of: "  rate: 5", with: "  rates: 5") }.write(to: unknownKey, atomically: true, encoding: .utf8)
        let impossible = directory.appendingPathComponent("impossible.yaml")
        try ScenarioFileTests.text { $0.replacingOccurrences(of: "replicas: 3", with: "replicas: 5") }.write(to: impossible, atomically: true, encoding: .utf8)
        for (file, expected) in [
            (unknownKey, "workload has an unknown key 'rates'; did you mean 'rate'?"),
            (impossible, "group web: 5 replicas in a hard group at chassis level, but the cluster has 3 chassis domains"),
        ] {
            let result = try await Self.harness(["check", file.path])
            #expect(result.status == 2)
            #expect(result.err == "nestor-harness: \(file.path): \(expected)\n")
            #expect(result.out.isEmpty)
        }
        let missing = try await Self.harness(["check", directory.appendingPathComponent("absent.yaml").path])
        #expect(missing.status == 2 && missing.err.hasPrefix("nestor-harness: cannot read the scenario file"))
        let help = try await Self.harness(["--help"])
        #expect(help.status == 0 && help.out.contains("check"))
    }
}

/// `nestor-harness simulate` as a user runs it.
struct SimulateCommandTests {
    @Test func simulatePrintsItsFiguresAsJSON() async throws {
        let result = try await HarnessCommandTests.harness(["simulate", "--seeds", "1-3", "--blades", "10", "--minutes", "0.5", "--json", "--quiet"])
        #expect(result.status == 0, "\(result.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
        #expect(report["seeds"] as? Int == 3)
        #expect(report["blades"] as? Int == 10)
        #expect(report["violations"] as? Int == 0)
        #expect((report["failingSeeds"] as? [Any])?.isEmpty == true)
        #expect((report["seedsPerSecond"] as? Double ?? 0) > 0)
        #expect((report["simulatedToReal"] as? Double ?? 0) > 1)
    }

    @Test func aTraceReplaysOneSeedTheSameInEveryProcess() async throws {
        let arguments = ["simulate", "--seed", "4", "--blades", "10", "--minutes", "0.5", "--trace"]
        let first = try await HarnessCommandTests.harness(arguments)
        let second = try await HarnessCommandTests.harness(arguments)
        #expect(first.status == 0, "\(first.err)")
        #expect(first.out == second.out)
        #expect(first.out.contains("FAULT"))
        #expect(first.out.split(separator: "\n").count > 100)
    }

    @Test func badOptionsAreRefusedInOneLine() async throws {
        for (arguments, expected) in [
            (["simulate", "--trace"], "--trace replays one seed: name it with --seed N"),
            (["simulate", "--blades", "3"], "--blades 3 is not between 4 and 2000"),
            (["simulate", "--test-switch", "no-cas"], "--test-switch 'no-cas' is not one of"),
            (["simulate", "--test-switch", "no-store-cas"], "needs --test-switch shared-store"),
            (["simulate", "--seeds", "5-1"], "--seeds '5-1' is not a seed"),
        ] {
            let result = try await HarnessCommandTests.harness(arguments)
            #expect(result.status == 2, "\(arguments)")
            #expect(result.err.contains(expected), "\(result.err)")
            #expect(result.err.split(separator: "\n").count == 1)
        }
    }
}
