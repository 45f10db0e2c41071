import ClusterCore
public import FaultHarness
public import FaultScenario

/// What a simulation run is made of: the cluster, the workload, the faults and the leases.
/// One configuration and one seed make one run, the same every time.
public struct SimulationConfig: Sendable {
    public var blades: Int
    /// Simulated minutes of workload and faults; then everything heals and the cluster must
    /// settle within `settleMillis`.
    public var minutes: Double
    public var faultsPerMinute: Double = 6
    public var testSwitches: Set<FaultScenario.TestSwitch> = []
    public var coresPerBlade = 16
    public var memoryPerBlade: UInt64 = 64 << 30
    public var l0ReservedBytes: UInt64 = 1 << 30
    public var heartbeatMillis: UInt64 = 1_000
    public var suspectAfterMillis: UInt64 = 3_000
    public var unreachableAfterMillis: UInt64 = 6_000
    /// A controller drops an agent's connection it heard nothing on for this long.
    public var idleTimeoutMillis: UInt64 = 30_000
    public var sampleMillis: UInt64 = 1_000
    public var settleMillis: UInt64 = 120_000
    /// The N+1 admission level; nil: none.
    public var admission: FaultScenario.DomainLevel? = .chassis

    public init(blades: Int = 100, minutes: Double = 2) {
        self.blades = blades
        self.minutes = minutes
    }

    public var durationMillis: UInt64 { UInt64(minutes * 60_000) }

    var controllerSettings: ControllerCore.Settings {
        ControllerCore.Settings(suspectAfterMillis: suspectAfterMillis, unreachableAfterMillis: unreachableAfterMillis)
    }

    /// The cluster's shape (ten blades a chassis, at least two chassis, two chassis a rack, two
    /// power domains), its
    /// tenants (one per ten blades, each with a quota of a tenth of the cores that N+1 leaves)
    /// and the workload the clients run, as a scenario.
    public var scenario: Scenario {
        let chassis = min(blades, max(2, (blades + 9) / 10))
        let racks = max(1, (chassis + 1) / 2)
        let power = min(2, racks)
        let shape = ClusterShape(blades: blades, coresPerBlade: coresPerBlade, memoryPerBlade: memoryPerBlade, chassis: chassis, racks: racks,
                                 powerDomains: power)
        let tenantCount = max(2, blades / 10)
        let usable = blades * coresPerBlade * max(1, chassis - 1) / chassis
        let quotaCores = max(4, usable / tenantCount)
        let tenants = (1...tenantCount).map { index in
            TenantSpec(name: "t\(index)", quotaCores: quotaCores, quotaMemory: UInt64(quotaCores) * (2 << 30), quotaPartitions: quotaCores / 2)
        }
        var groups: [GroupSpec] = []
        for tenant in tenants {
            groups.append(GroupSpec(name: "spread", tenant: tenant.name, level: .chassis, hard: true, replicas: chassis, share: 0.3))
            groups.append(GroupSpec(name: "near", tenant: tenant.name, level: .rack, hard: false, replicas: racks, share: 0.2))
        }
        let minutes = self.minutes
        let workload = Workload(clients: 8, ratePerSecond: Double(max(5, blades / 10)), maxOperations: Int(minutes * 60 * Double(max(5, blades / 10)) * 2),
                                mix: [.createPartition: 5, .deletePartition: 3, .createVM: 1, .deleteVM: 1, .cordon: 0.1, .uncordon: 0.1],
                                partitionCores: 2, partitionMemory: 2 << 30, partitionVMM: true, groups: groups)
        return Scenario(name: "simulation", summary: "", durationMillis: durationMillis, cluster: shape, tenants: tenants, workload: workload,
                        faults: [], expectations: [], testSwitches: testSwitches)
    }
}

/// The deterministic cluster simulation: seeds run one after another (or on several threads,
/// each seed on one), each judged by the same checker as the real-process runs.
public enum Simulation {
    /// One seed. `trace` receives every event of the run, with its virtual time.
    public static func run(seed: UInt64, config: SimulationConfig, trace: ((UInt64, String) -> Void)? = nil) -> SimSeedResult {
        let world = SimWorld(config: config, seed: seed)
        world.trace = trace
        return world.run()
    }

    /// What a seed's run is remembered by: every event's text, hashed (FNV-1a), so that two
    /// runs of a seed can be compared event for event.
    public static func digest(seed: UInt64, config: SimulationConfig) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        _ = run(seed: seed, config: config) { time, text in
            for byte in "\(time) \(text)\n".utf8 {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
        }
        return hash
    }
}

extension SimSeedResult {
    /// The first violation, in full, or nil.
    public var firstViolation: Violation? { violations.min { ($0.timeMillis, $0.description) < ($1.timeMillis, $1.description) } }
}
