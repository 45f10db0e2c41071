import ArgumentParser
import CommandLineSupport
import Foundation
import Placement
import SeededRandom

/// Places a synthetic workload on a synthetic cluster and reports speed, packing and safety.
struct PlacementBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placement-bench",
        abstract: "Placement decisions on a synthetic cluster: speed, packing and hard-rule safety.",
        discussion: """
            The cluster: 1,000 blades (2 sockets x 16 cores, 512 GiB each) in 40 chassis of 25, \
            10 racks and 4 power domains. The workload: 10,000 partition requests of 1 to 16 \
            cores (memory 8 GiB per core), a third of them in hard chassis-level anti-affinity \
            groups of 3, with N+1 at chassis level. The requests come from a fixed seed. An \
            independent checker counts hard-rule violations in the result (it must find none).
            """)

    @Flag(help: "Print one JSON object.")
    var json = false
    @Option(help: "Number of blades (a multiple of 25).")
    var blades = 1000
    @Option(help: "Number of partition requests.")
    var requests = 10_000
    @Option(help: "Seed of the request generator.")
    var seed: UInt64 = 1

    func validate() throws {
        guard blades >= 50, blades % 25 == 0 else { throw ValidationError("--blades \(blades) must be a multiple of 25, at least 50") }
        guard requests > 0 else { throw ValidationError("--requests must be positive") }
    }

    func run() throws {
        let gib: UInt64 = 1 << 30
        let cluster = (0..<blades).map { index in
            BladeSnapshot(id: String(format: "blade-%04d", index),
                          labels: BladeLabels(chassis: "chassis-\(index / 25)", rack: "rack-\(index / 25 % 10)",
                                              powerDomain: "power-\(index / 25 % 4)"),
                          cores: 32, memoryBytes: 512 * gib, diskBytes: 8 << 40)
        }
        var generator = SplitMix64(seed: seed)
        var workload: [PlacementRequest] = []
        var groupIndex = 0
        while workload.count < requests {
            let grouped = generator.next() % 3 == 0
            let members = grouped ? min(3, requests - workload.count) : 1
            let group = grouped ? AntiAffinity(group: "group-\(groupIndex)", level: .chassis) : nil
            if grouped { groupIndex += 1 }
            for _ in 0..<members {
                let cores = 1 + Int(generator.next() % 16)
                workload.append(PlacementRequest(name: "p-\(workload.count)", tenant: "tenant-\(generator.next() % 50)",
                                                 cores: cores, memoryBytes: UInt64(cores) * 8 * gib, vmm: true, antiAffinity: group))
            }
        }

        var state = PlacementState(blades: cluster)
        var latencies: [Double] = []
        latencies.reserveCapacity(workload.count)
        var refusals: [String: Int] = [:]
        let clock = ContinuousClock()
        let start = clock.now
        for request in workload {
            let before = clock.now
            let result = state.place(request)
            let elapsed = clock.now - before
            latencies.append(Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12)
            if case .failure(let refusal) = result {
                let reason = refusal.rejections.max { $0.value < $1.value }.map { "\($0.key)" } ?? "no blades"
                refusals[reason, default: 0] += 1
            }
        }
        let total = clock.now - start
        let seconds = Double(total.components.seconds) + Double(total.components.attoseconds) / 1e18
        latencies.sort()
        let placed = Array(state.placements.values)
        let coresPlaced = placed.reduce(0) { $0 + state.policy.coreDemand($1.request) }
        let memoryPlaced = placed.reduce(UInt64(0)) { $0 + state.policy.memoryDemand($1.request) }
        let lowerBound = max((coresPlaced + 31) / 32, Int((memoryPlaced + 512 * gib - 1) / (512 * gib)))
        let used = Set(placed.map(\.blade)).count
        let efficiency = used == 0 ? 0 : Double(lowerBound) / Double(used)
        let violations = PlacementChecker.violations(blades: cluster, placements: placed, policy: state.policy)
        let refused = workload.count - placed.count
        func percentile(_ fraction: Double) -> Double {
            latencies[min(latencies.count - 1, max(0, Int((fraction * Double(latencies.count)).rounded(.up)) - 1))]
        }
        let figures: [String: Any] = [
            "decisionsPerSecond": (Double(workload.count) / seconds).rounded(),
            "p50Micros": (percentile(0.5) * 10).rounded() / 10,
            "p99Micros": (percentile(0.99) * 10).rounded() / 10,
            "packingEfficiency": (efficiency * 1000).rounded() / 1000,
            "violations": violations.count,
            "refused": refused,
        ]
        if json {
            let data = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("blades \(cluster.count), requests \(workload.count) (\(groupIndex) hard chassis anti-affinity groups), N+1 at chassis level")
            print(String(format: "decisions/s        %.0f", Double(workload.count) / seconds))
            print(String(format: "p50 / p99 (us)     %.1f / %.1f", percentile(0.5), percentile(0.99)))
            print("placed             \(placed.count) on \(used) blades (lower bound \(lowerBound))")
            print(String(format: "packing efficiency %.3f", efficiency))
            print("refused            \(refused)" + (refusals.isEmpty ? "" : " (" + refusals.sorted { $0.value > $1.value }.map { "\($0.value) mostly \($0.key)" }.joined(separator: ", ") + ")"))
            print("violations         \(violations.count)" + (violations.isEmpty ? "" : ": " + violations.prefix(3).joined(separator: "; ")))
        }
        if !violations.isEmpty { throw ExitCode(1) }
    }
}


exit(CommandRunner.run(PlacementBench.self))
