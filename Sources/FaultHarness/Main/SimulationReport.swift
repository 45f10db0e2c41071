import FaultHarness
import FaultScenario
import FaultSimulation
import Foundation

/// Seeds on several threads, each seed on one; results in seed order.
enum SimulationRunner {
    static func run(seeds: [UInt64], config: SimulationConfig, workers: Int,
                    progress: @escaping @Sendable (Int, SimSeedResult) -> Void) -> [SimSeedResult] {
        let lock = NSLock()
        nonisolated(unsafe) var results: [SimSeedResult?] = Array(repeating: nil, count: seeds.count)
        nonisolated(unsafe) var nextIndex = 0
        nonisolated(unsafe) var done = 0
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            let thread = Thread {
                while true {
                    let index: Int? = lock.withLock {
                        guard nextIndex < seeds.count else { return nil }
                        nextIndex += 1
                        return nextIndex - 1
                    }
                    guard let index else { break }
                    let result = Simulation.run(seed: seeds[index], config: config)
                    let count = lock.withLock {
                        results[index] = result
                        done += 1
                        return done
                    }
                    progress(count, result)
                }
                group.leave()
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        group.wait()
        return results.compactMap { $0 }
    }
}

/// What `simulate` prints.
struct SimulationReport {
    let results: [SimSeedResult]
    let blades: Int
    let seconds: Double
    let switches: Set<TestSwitch>
    let workers: Int

    /// Whether the switches break the code (shared-store alone does not: the compare-and-swap
    /// keeps two controllers apart).
    static func breaking(_ switches: Set<TestSwitch>) -> Bool { !switches.subtracting([.sharedStore]).isEmpty }

    /// A seed passes when it broke no invariant; with a breaking test switch, any seed passes
    /// (the run as a whole must show a violation).
    static func passed(_ result: SimSeedResult, switches: Set<TestSwitch>) -> Bool {
        breaking(switches) || result.violations.isEmpty
    }

    var failing: [SimSeedResult] { results.filter { !$0.violations.isEmpty } }
    var simulatedSeconds: Double { results.reduce(0) { $0 + Double($1.simulatedMillis) / 1_000 } }
    var breaking: Bool { Self.breaking(switches) }

    /// Without a breaking switch: no seed broke an invariant. With one: some seed did (the
    /// checker saw what the switch breaks).
    var passed: Bool { breaking ? !failing.isEmpty : failing.isEmpty }

    static func line(_ result: SimSeedResult) -> String {
        let ok = result.history.filter { $0.outcome == .ok }.count
        let first = result.firstViolation.map { "first violation: \($0)" } ?? "no violation"
        return "\(result.history.count) operations (\(ok) ok), \(result.faults) faults, \(result.events) events, \(result.simulatedMillis / 1_000) simulated s; \(result.violations.count) violations; \(first)"
    }

    var table: String {
        var lines = [
            "seeds                 \(results.count)",
            "blades                \(blades)",
            "test switches         \(switches.isEmpty ? "none" : switches.map(\.rawValue).sorted().joined(separator: ", "))",
            "threads               \(workers)",
            "real seconds          \(Self.format(seconds))",
            "seeds per second      \(Self.format(Double(results.count) / max(seconds, 1e-9)))",
            "simulated / real      \(Self.format(simulatedSeconds / max(seconds, 1e-9)))x",
            "operations            \(results.reduce(0) { $0 + $1.history.count })",
            "faults                \(results.reduce(0) { $0 + $1.faults })",
            "seeds with violations \(failing.count)\(failing.isEmpty ? "" : ": " + failing.prefix(20).map { String($0.seed) }.joined(separator: ", "))",
        ]
        if let first = failing.first {
            lines.append("first failing seed    \(first.seed): \(first.firstViolation.map(\.description) ?? "")")
            lines.append("replay it with        nestor-harness simulate --seed \(first.seed) --blades \(blades) --trace")
        }
        if breaking {
            lines.append(passed ? "the checker saw what the test switches break" : "the checker saw nothing broken, though the test switches break the code")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var json: String {
        let object: [String: Any] = [
            "seeds": results.count, "blades": blades, "seedsPerSecond": Double(results.count) / max(seconds, 1e-9),
            "simulatedToReal": simulatedSeconds / max(seconds, 1e-9), "violations": results.reduce(0) { $0 + $1.violations.count },
            "failingSeeds": failing.map(\.seed), "realSeconds": seconds, "threads": workers,
            "testSwitches": switches.map(\.rawValue).sorted(),
            "operations": results.reduce(0) { $0 + $1.history.count }, "faults": results.reduce(0) { $0 + $1.faults },
            "simulatedSeconds": simulatedSeconds,
            "firstViolation": failing.first?.firstViolation.map { "seed \(failing.first!.seed): \($0)" } ?? NSNull(),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func format(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.2f", value) }
}
