import FaultHarness
import FaultScenario
import FaultSimulation
import Foundation
import Testing

/// The deterministic simulation: a seed replays exactly, a healthy cluster keeps every
/// invariant under the faults, and a test switch that breaks the code is seen by the checker.
struct SimulationTests {
    static func config(blades: Int = 10, minutes: Double = 0.5, switches: Set<TestSwitch> = []) -> SimulationConfig {
        var config = SimulationConfig(blades: blades, minutes: minutes)
        config.faultsPerMinute = 12
        config.testSwitches = switches
        return config
    }

    @Test func aSeedReplaysEventForEvent() {
        let config = Self.config()
        let first = Simulation.digest(seed: 7, config: config)
        #expect(first == Simulation.digest(seed: 7, config: config))
        #expect(first != Simulation.digest(seed: 8, config: config))
    }

    @Test func theRunsKeepEveryInvariantUnderFaults() {
        for seed in 1...6 as ClosedRange<UInt64> {
            let result = Simulation.run(seed: seed, config: Self.config())
            #expect(result.violations.isEmpty, "seed \(seed): \(result.firstViolation.map(\.description) ?? "")")
            #expect(result.faults > 0, "seed \(seed) injected faults")
            #expect(result.history.contains { $0.outcome == .ok }, "seed \(seed) got work done")
        }
    }

    @Test func skippingTheHardAntiAffinityFilterIsSeen() {
        let config = Self.config(switches: [.skipHardAntiAffinity])
        let found = (1...5 as ClosedRange<UInt64>).contains { seed in
            Simulation.run(seed: seed, config: config).violations.contains { $0.kind == .antiAffinity }
        }
        #expect(found)
    }

    @Test func twoControllersWithoutTheCompareAndSwapAreSeenAndWithItAreNot() {
        let broken = Self.config(blades: 20, minutes: 1, switches: [.sharedStore, .noStoreCAS])
        let found = (1...8 as ClosedRange<UInt64>).contains { seed in !Simulation.run(seed: seed, config: broken).violations.isEmpty }
        #expect(found, "no seed showed what removing the compare-and-swap breaks")
        let safe = Self.config(blades: 20, minutes: 1, switches: [.sharedStore])
        for seed in 1...3 as ClosedRange<UInt64> {
            let result = Simulation.run(seed: seed, config: safe)
            #expect(result.violations.isEmpty, "seed \(seed): \(result.firstViolation.map(\.description) ?? "")")
        }
    }
}
