import FaultHarness
import FaultScenario
import Testing

/// The nemesis plan: every fault injected at its time and healed by the end of the run, the
/// LPAR a crash hits drawn from the seed.
struct NemesisPlanTests {
    static func scenario(faults: String, duration: String = "20s") throws -> Scenario {
        try ScenarioFile.parse(ScenarioFileTests.text {
            $0.replacingOccurrences(of: "duration: 10s", with: "duration: \(duration)")
                .replacingOccurrences(of: "faults:\n  - at: 2s\n    kill: blade-2\n    restart-after: 3s", with: "faults:\n" + faults)
        }, file: "n.yaml")
    }

    @Test func eachFaultIsHealedAfterItsDurationOrAtTheEnd() throws {
        let scenario = try Self.scenario(faults: """
          - at: 2s
            kill: blade-2
            restart-after: 3s
          - at: 4s
            pause: controller
            for: 100s
          - at: 1s
            link: all
            blackhole: both
            for: 5s
        """)
        let steps = NemesisPlanner.plan(scenario, seed: 1).map(\.description)
        #expect(steps == ["1 s: every agent's link both ways blackholed", "2 s: kill -9 agent blade-2", "4 s: SIGSTOP controller",
                          "5 s: restart agent blade-2", "6 s: every agent's link healed", "20 s: SIGCONT controller"])
    }

    @Test func aCrashLoopKillsEveryPeriodUntilTheEndAndTheSeedPicks() throws {
        let scenario = try Self.scenario(faults: """
          - at: 3s
            crash-loop: lpar-host
            every: 4s
        """)
        let first = NemesisPlanner.plan(scenario, seed: 1)
        #expect(first.map(\.atMillis) == [3_000, 7_000, 11_000, 15_000, 19_000])
        #expect(first.allSatisfy { $0.injects })
        #expect(first == NemesisPlanner.plan(scenario, seed: 1))
        #expect(first != NemesisPlanner.plan(scenario, seed: 2))
    }

    @Test func seedsAreANumberARangeOrAList() throws {
        #expect(try SeedList.parse("3") == [3])
        #expect(try SeedList.parse("1-3") == [1, 2, 3])
        #expect(try SeedList.parse("1,4,9-10") == [1, 4, 9, 10])
        for bad in ["", "a", "3-1", "1-", "-2", "1--2", "1,,2", "0-99999999999"] {
            #expect(throws: ScenarioError.self, "\(bad)") { try SeedList.parse(bad) }
        }
    }
}
