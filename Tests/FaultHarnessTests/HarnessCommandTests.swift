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
