import FaultHarness
import FaultScenario
import Foundation
import Testing

/// The scenario files as a user writes them: every shipped file is read, and each kind of
/// mistake is refused in one line that names the file, the place and the problem.
struct ScenarioFileTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Scenarios")

    static func files() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "yaml" }.sorted { $0.path < $1.path }
    }

    /// A small valid scenario, changed by `edit` into the case under test.
    static func text(_ edit: (String) -> String = { $0 }) -> String {
        edit("""
        name: small
        duration: 10s
        cluster:
          blades: 3
          cores: 4
          memory: 2GiB
          chassis: 3
        tenants:
          - name: acme
            cores: 4
            memory: 2GiB
            partitions: 4
        workload:
          clients: 2
          rate: 5
          mix:
            create-partition: 1
          partition:
            cores: 1
            memory: 256MiB
          groups:
            - name: web
              tenant: acme
              level: chassis
              mode: hard
              replicas: 3
        faults:
          - at: 2s
            kill: blade-2
            restart-after: 3s
        """)
    }

    static func refusal(_ text: String) -> String? {
        do {
            _ = try ScenarioFile.parse(text, file: "s.yaml")
            return nil
        } catch {
            return error.message
        }
    }

    @Test func everyShippedScenarioIsReadAndTheIssueListIsCovered() throws {
        let files = try Self.files()
        var names: Set<String> = []
        for file in files {
            let scenario = try ScenarioFile.parse(String(contentsOf: file, encoding: .utf8), file: file.lastPathComponent)
            #expect(scenario.name + ".yaml" == file.lastPathComponent, "a scenario is named as its file")
            #expect(!scenario.summary.isEmpty)
            names.insert(scenario.name)
        }
        for required in ["controller-kill-in-create-storm", "agent-kill", "agent-pause-3s", "agent-pause-30s",
                         "link-blackhole-one-way", "all-agents-cut", "store-disk-full", "store-read-only",
                         "lpar-crash-loop", "hard-group-quota-edge", "slow-link"] {
            #expect(names.contains(required), "missing scenario \(required)")
        }
    }

    @Test func aScenarioIsReadIntoItsValues() throws {
        let scenario = try ScenarioFile.parse(Self.text(), file: "s.yaml")
        #expect(scenario.durationMillis == 10_000)
        #expect(scenario.cluster.bladeIDs == ["blade-1", "blade-2", "blade-3"])
        #expect(scenario.cluster.domains(ofBlade: 2) == ["chassis": "chassis-3", "rack": "rack-1", "power": "power-1"])
        #expect(scenario.tenants == [TenantSpec(name: "acme", quotaCores: 4, quotaMemory: 2 << 30, quotaPartitions: 4)])
        #expect(scenario.workload.mix == [.createPartition: 1])
        #expect(scenario.workload.maxOperations == 10_000, "bounded by default")
        #expect(scenario.workload.groups == [GroupSpec(name: "web", tenant: "acme", level: .chassis, hard: true, replicas: 3)])
        #expect(scenario.faults == [FaultEvent(atMillis: 2_000, durationMillis: 3_000, kind: .kill(.agent("blade-2")))])
        #expect(scenario.testSwitches.isEmpty)
    }

    @Test func linkFaultsAreReadOneWayOrBoth() throws {
        let oneWay = try ScenarioFile.parse(String(contentsOf: Self.directory.appendingPathComponent("link-blackhole-one-way.yaml"), encoding: .utf8), file: "f")
        guard case .link(.agent("blade-1"), let faults) = oneWay.faults.first?.kind else {
            Issue.record("expected a link fault on blade-1, got \(oneWay.faults)")
            return
        }
        #expect(faults.toClient.blackholed && !faults.toServer.blackholed, "from-controller holds what the controller sends")
        let slow = try ScenarioFile.parse(String(contentsOf: Self.directory.appendingPathComponent("slow-link.yaml"), encoding: .utf8), file: "f")
        guard case .link(.all, let both) = slow.faults.first?.kind else {
            Issue.record("expected a link fault on every agent, got \(slow.faults)")
            return
        }
        #expect(both.toServer == both.toClient)
        #expect(both.toServer.latencyMillis == 50 && both.toServer.jitterMillis == 10)
        #expect(both.toServer.bytesPerSecond == 125_000)
    }

    @Test func anUnknownKeyIsRefusedWithTheNearestKnownOne() {
        let message = Self.refusal(Self.text { $0.replacingOccurrences(of: "  chassis: 3", with: "  chasis: 3") })
        #expect(message == "s.yaml: cluster has an unknown key 'chasis'; did you mean 'chassis'?")
        let top = Self.refusal(Self.text { $0 + "\nseeds: 3\n" })
        #expect(top?.hasPrefix("s.yaml: has an unknown key 'seeds'") == true, "\(top ?? "accepted")")
    }

    @Test func anImpossibleClusterIsRefused() {
        let message = Self.refusal(Self.text { $0.replacingOccurrences(of: "replicas: 3", with: "replicas: 4") })
        #expect(message == "s.yaml: group web: 4 replicas in a hard group at chassis level, but the cluster has 3 chassis domains")
        // A soft group may have more replicas than domains.
        #expect(Self.refusal(Self.text { $0.replacingOccurrences(of: "replicas: 3", with: "replicas: 4").replacingOccurrences(of: "mode: hard", with: "mode: soft") }) == nil)
        #expect(Self.refusal(Self.text { $0.replacingOccurrences(of: "  chassis: 3", with: "  chassis: 3\n  racks: 4") })
            == "s.yaml: cluster: 4 racks for 3 chassis")
        #expect(Self.refusal(Self.text { $0.replacingOccurrences(of: "memory: 256MiB", with: "memory: 2GiB") })
             == "s.yaml: workload: partitions of 2GiB do not fit blades of 2GiB")
    }

    @Test func badValuesAreRefusedNamingTheirPlace() {
        let cases: [(String, String, String)] = [
            ("duration: 10s", "duration: soon", "s.yaml: duration 'soon' is not a duration (like 250ms, 3s, 2m)"),
            ("kill: blade-2", "kill: blade-9", "s.yaml: fault: there is no blade-9 in a cluster of 3 blades"),
            ("kill: blade-2", "kill: router", "s.yaml: faults[1].kill must be controller, lpar-host, all or a blade (blade-1, blade-2...), not 'router'"),
            ("  - at: 2s", "  - at: 20s", "s.yaml: fault at 20000 ms is not before the end of the run (10000 ms)"),
            ("level: chassis", "level: row", "s.yaml: workload.groups[1].level must be one of blade, chassis, rack, power, not 'row'"),
            ("mode: hard", "mode: strict", "s.yaml: workload.groups[1].mode must be hard or soft, not 'strict'"),
            ("blades: 3", "blades: 0", "s.yaml: cluster.blades is 0, not between 1 and 64"),
            ("create-partition: 1", "create-partition: 0", "s.yaml: workload.mix gives every operation weight 0"),
            ("tenant: acme", "tenant: initech", "s.yaml: group web: tenant 'initech' is not among the tenants"),
            ("    restart-after: 3s", "    restart-after: 3s\n    link: all", "s.yaml: faults[1] names 2 faults (kill, link); give each its own entry"),
        ]
        for (old, new, expected) in cases {
            let text = Self.text { $0.replacingOccurrences(of: old, with: new) }
            #expect(text != Self.text(), "the edit \(new) applies")
            #expect(Self.refusal(text) == expected)
        }
        #expect(Self.refusal("- a\n- b\n") == "s.yaml: the file must be a mapping of 'key: value' lines")
        #expect(Self.refusal("name: [unclosed\n")?.hasPrefix("s.yaml: not valid YAML:") == true)
        #expect(Self.refusal(Self.text { $0 + "\ntest-switches: [no-cas]\n" })?.contains("unknown switch 'no-cas'") == true)
        let switched = try? ScenarioFile.parse(Self.text { $0 + "\ntest-switches: [no-store-cas, skip-hard-anti-affinity]\n" }, file: "s.yaml")
        #expect(switched?.testSwitches == [.noStoreCAS, .skipHardAntiAffinity])
    }

    /// The scenarios that break the code on purpose each name their switch and the violation
    /// the checker must then find.
    @Test func everyTestSwitchScenarioExpectsAViolation() throws {
        let directory = Self.directory.appendingPathComponent("test-switches")
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil).filter { $0.pathExtension == "yaml" }
        var switches: Set<TestSwitch> = []
        for file in files {
            let scenario = try ScenarioFile.parse(String(contentsOf: file, encoding: .utf8), file: file.lastPathComponent)
            #expect(scenario.name + ".yaml" == file.lastPathComponent)
            #expect(!scenario.testSwitches.isEmpty && !scenario.expectedViolations.isEmpty, "\(scenario.name)")
            switches.formUnion(scenario.testSwitches)
        }
        #expect(switches.isSuperset(of: [.noStoreCAS, .skipHardAntiAffinity]))
    }

    @Test func aSecondControllerNeedsTheSharedStoreSwitch() throws {
        let fault = "  - at: 2s\n    second-controller: start\n    for: 3s\n"
        let without = Self.text { $0.replacingOccurrences(of: "faults:\n", with: "faults:\n" + fault) }
        #expect(Self.refusal(without)?.contains("needs test-switches: [shared-store]") == true, "\(Self.refusal(without) ?? "accepted")")
        let with = try ScenarioFile.parse(without + "\ntest-switches: [shared-store]\n", file: "s.yaml")
        #expect(with.faults.first?.kind == .secondController)
        let expecting = try ScenarioFile.parse(Self.text { $0 + "\nexpect:\n  - violation: [core-shared, anti-affinity]\n" }, file: "s.yaml")
        #expect(expecting.expectedViolations == [.coreShared, .antiAffinity])
        #expect(Self.refusal(Self.text { $0 + "\nexpect:\n  - violation: broken\n" })?.contains("must be one of active-twice") == true)
    }

    @Test func theRefusalIsOneLine() throws {
        for text in [Self.text { $0 + "\nbogus: 1\n" }, "name: [unclosed\n", Self.text { $0.replacingOccurrences(of: "replicas: 3", with: "replicas: 9") }] {
            let message = try #require(Self.refusal(text))
            #expect(!message.contains("\n"), "\(message)")
        }
    }
}
