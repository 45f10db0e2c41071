import Foundation
import Testing

/// `nestor-harness run` against a real cluster: a controller and agents as processes on
/// loopback, a fault injected, the checker's verdict and the JSON a user reads.
struct HarnessRunTests {
    static let scenario = """
        name: short-agent-kill
        description: One agent killed for 4 s in a short run.
        duration: 10s
        cluster:
          blades: 3
          cores: 4
          memory: 4GiB
          chassis: 3
        tenants:
          - name: acme
            cores: 6
            memory: 6GiB
            partitions: 6
        workload:
          clients: 2
          rate: 10
          max-operations: 80
          mix:
            create-partition: 3
            delete-partition: 1
          partition:
            cores: 1
            memory: 512MiB
          groups:
            - name: web
              tenant: acme
              level: chassis
              mode: hard
              replicas: 3
        faults:
          - at: 2s
            kill: blade-2
            restart-after: 4s
        expect:
          - unreachable: blade-2
            after: 2s
            within: 6s
          - minimum-ok: 3
        """

    @Test(.timeLimit(.minutes(3)))
    func aRunKillsAnAgentAndTheCheckerFindsTheInvariantsKept() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestor-harness-run-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("short-agent-kill.yaml")
        try Self.scenario.write(to: file, atomically: true, encoding: .utf8)
        let result = try await HarnessCommandTests.harness(["run", file.path, "--seeds", "1", "--json", "--work-dir", directory.path])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.err.contains("kill -9 agent blade-2"), "the progress names the fault")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
        let runs = try #require(report["runs"] as? [[String: Any]])
        #expect(runs.count == 1)
        let run = try #require(runs.first)
        #expect(run["scenario"] as? String == "short-agent-kill")
        #expect(run["seed"] as? Int == 1)
        #expect(run["faults"] as? Int == 1)
        #expect(run["violations"] as? Int == 0)
        #expect(run["lostAcknowledged"] as? Int == 0)
        #expect(run["firstViolation"] is NSNull)
        #expect((run["ok"] as? Int ?? 0) >= 3)
        for key in ["refused", "failed", "unknown", "longestUnavailableSeconds"] { #expect(run[key] != nil, "\(key)") }
        // A passing run leaves no files behind.
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("nestor-harness-") }
        #expect(left.isEmpty, "\(left)")
    }
}
