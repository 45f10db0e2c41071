public import FaultHarness

/// One fault-injection scenario as a value: the cluster to start, the workload its clients
/// run, the faults injected at their times, and what must be seen. Scenario files are YAML
/// (see `ScenarioFile`); every key is known, every value checked, and a cluster that cannot
/// hold what the scenario asks (a hard group with more replicas than domains) is refused.
public struct Scenario: Sendable, Equatable {
    public var name: String
    public var summary: String
    /// How long the workload and the faults run, before everything heals.
    public var durationMillis: UInt64
    public var cluster: ClusterShape
    public var tenants: [TenantSpec]
    public var workload: Workload
    public var faults: [FaultEvent]
    public var expectations: [Expectation]
    /// The switches that break the code under test on purpose, to show the checker sees it.
    public var testSwitches: Set<TestSwitch>
    /// How long the cluster may take to settle once every fault has healed.
    public var settleMillis: UInt64 = 60_000

    public init(name: String, summary: String, durationMillis: UInt64, cluster: ClusterShape, tenants: [TenantSpec],
                workload: Workload, faults: [FaultEvent], expectations: [Expectation], testSwitches: Set<TestSwitch> = []) {
        self.name = name
        self.summary = summary
        self.durationMillis = durationMillis
        self.cluster = cluster
        self.tenants = tenants
        self.workload = workload
        self.faults = faults
        self.expectations = expectations
        self.testSwitches = testSwitches
    }
}

/// The blades to start: `blades` of one size, spread round-robin over chassis, the chassis
/// over racks, the racks over power domains.
public struct ClusterShape: Sendable, Equatable {
    public var blades: Int
    public var coresPerBlade: Int
    public var memoryPerBlade: UInt64
    public var chassis: Int
    public var racks: Int
    public var powerDomains: Int
    /// The controller's N+1 admission level; nil: none.
    public var admission: DomainLevel?

    public init(blades: Int, coresPerBlade: Int, memoryPerBlade: UInt64, chassis: Int, racks: Int, powerDomains: Int,
                admission: DomainLevel? = .chassis) {
        self.blades = blades
        self.coresPerBlade = coresPerBlade
        self.memoryPerBlade = memoryPerBlade
        self.chassis = chassis
        self.racks = racks
        self.powerDomains = powerDomains
        self.admission = admission
    }

    /// The admission level as the controller's flag takes it.
    public var admissionArgument: String { admission?.rawValue ?? "none" }

    /// The blade names, `blade-1` ... `blade-N`.
    public var bladeIDs: [String] { (1...blades).map { "blade-\($0)" } }

    /// The domain of blade `index` (0-based) at each level.
    public func domains(ofBlade index: Int) -> [String: String] {
        let chassisIndex = index % chassis
        let rackIndex = chassisIndex % racks
        let powerIndex = rackIndex % powerDomains
        return ["chassis": "chassis-\(chassisIndex + 1)", "rack": "rack-\(rackIndex + 1)", "power": "power-\(powerIndex + 1)"]
    }

    /// How many distinct domains the cluster has at `level`.
    public func domainCount(at level: DomainLevel) -> Int {
        switch level {
        case .blade: blades
        case .chassis: min(chassis, blades)
        case .rack: min(racks, chassis, blades)
        case .power: min(powerDomains, racks, chassis, blades)
        }
    }
}

public enum DomainLevel: String, Sendable, Equatable, CaseIterable {
    case blade, chassis, rack, power
}

/// A tenant the harness creates, with its quota.
public struct TenantSpec: Sendable, Equatable {
    public var name: String
    public var quotaCores: Int
    public var quotaMemory: UInt64
    public var quotaPartitions: Int

    public init(name: String, quotaCores: Int, quotaMemory: UInt64, quotaPartitions: Int) {
        self.name = name
        self.quotaCores = quotaCores
        self.quotaMemory = quotaMemory
        self.quotaPartitions = quotaPartitions
    }
}

/// What the clients do: operations at a total rate, drawn by weight, bounded in count.
public struct Workload: Sendable, Equatable {
    public enum Operation: String, Sendable, Equatable, CaseIterable, Comparable {
        case createPartition = "create-partition"
        case deletePartition = "delete-partition"
        case createVM = "create-vm"
        case deleteVM = "delete-vm"
        case cordon
        case uncordon

        public static func < (a: Operation, b: Operation) -> Bool { a.rawValue < b.rawValue }
    }

    public var clients: Int
    /// Operations per second, all clients together.
    public var ratePerSecond: Double
    /// The most operations the run issues, whatever its duration.
    public var maxOperations: Int
    /// Relative weights; an operation absent has weight zero.
    public var mix: [Operation: Double]
    public var partitionCores: Int
    public var partitionMemory: UInt64
    /// Whether the partitions run a guest hypervisor (so that VMs can be created in them).
    public var partitionVMM: Bool
    public var groups: [GroupSpec]

    public init(clients: Int, ratePerSecond: Double, maxOperations: Int, mix: [Operation: Double], partitionCores: Int,
                partitionMemory: UInt64, partitionVMM: Bool = false, groups: [GroupSpec]) {
        self.clients = clients
        self.ratePerSecond = ratePerSecond
        self.maxOperations = maxOperations
        self.mix = mix
        self.partitionCores = partitionCores
        self.partitionMemory = partitionMemory
        self.partitionVMM = partitionVMM
        self.groups = groups
    }
}

/// An anti-affinity group the workload puts partitions in.
public struct GroupSpec: Sendable, Equatable {
    public var name: String
    public var tenant: String
    public var level: DomainLevel
    public var hard: Bool
    /// The members the group is meant to have: a hard group cannot ask for more than the
    /// cluster has domains at its level.
    public var replicas: Int
    /// The fraction of the tenant's creates that ask to join the group (0 < share <= 1).
    public var share: Double

    public init(name: String, tenant: String, level: DomainLevel, hard: Bool, replicas: Int, share: Double = 0.5) {
        self.name = name
        self.tenant = tenant
        self.level = level
        self.hard = hard
        self.replicas = replicas
        self.share = share
    }
}

/// What a process fault hits.
public enum ProcessTarget: Sendable, Equatable, CustomStringConvertible {
    case controller
    case agent(String)
    /// The `lpar-host` process of some running LPAR the seed picks (kvm backend).
    case lparHost

    public var description: String {
        switch self {
        case .controller: "controller"
        case .agent(let blade): "agent \(blade)"
        case .lparHost: "an lpar-host"
        }
    }
}

/// Which agents' links a link fault applies to.
public enum LinkTarget: Sendable, Equatable, CustomStringConvertible {
    case agent(String)
    case all

    public var description: String {
        switch self {
        case .agent(let blade): "\(blade)'s link"
        case .all: "every agent's link"
        }
    }
}

/// A fault, injected at a time, lasting a while (or, for a kill, restarted after a while).
public struct FaultEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// SIGKILL, then a restart after `durationMillis`.
        case kill(ProcessTarget)
        /// SIGSTOP, then SIGCONT after `durationMillis`.
        case pause(ProcessTarget)
        /// The link's faults for `durationMillis`, then healthy again.
        case link(LinkTarget, LinkFaults)
        /// The controller's data directory fills up (ENOSPC) for `durationMillis`.
        case diskFull
        /// The controller's data directory is remounted read-only for `durationMillis`.
        case diskReadOnly
        /// An `lpar-host` process killed every `durationMillis` until the end (a crash loop).
        case crashLoop
        /// A second controller on the same store for `durationMillis` (then killed), taking
        /// half the clients' requests; needs the test switch `shared-store`.
        case secondController
    }

    public var atMillis: UInt64
    public var durationMillis: UInt64
    public var kind: Kind

    public init(atMillis: UInt64, durationMillis: UInt64, kind: Kind) {
        self.atMillis = atMillis
        self.durationMillis = durationMillis
        self.kind = kind
    }
}

/// What a scenario expects besides the invariants, which always hold.
public enum Expectation: Sendable, Equatable {
    /// The controller reports the blade `unreachable` within this long after `afterMillis`.
    case unreachable(blade: String, afterMillis: UInt64, withinMillis: UInt64)
    /// At least this many operations complete `ok`.
    case minimumOK(Int)
    /// At least this many creates are refused (a quota or a hard rule at its edge).
    case minimumRefused(Int)
    /// The checker finds a violation of one of these kinds (a scenario that breaks the code
    /// under test with a test switch expects the checker to see it); violations of these
    /// kinds do not fail the run, and finding none does.
    case violation([Violation.Kind])
}

/// Test-only switches that remove a safety check from the code under test.
public enum TestSwitch: String, Sendable, Equatable, Hashable, CaseIterable {
    /// The store commits without comparing what it read (no compare-and-swap).
    case noStoreCAS = "no-store-cas"
    /// Placement skips the hard anti-affinity filter.
    case skipHardAntiAffinity = "skip-hard-anti-affinity"
    /// The data directory takes no lock: a second controller can open the same store.
    case sharedStore = "shared-store"
}

extension FaultEvent: CustomStringConvertible {
    public var description: String {
        let at = Self.seconds(atMillis), lasting = Self.seconds(durationMillis)
        switch kind {
        case .kill(let target): return "at \(at) kill -9 \(target), restarted \(lasting) later"
        case .pause(let target): return "at \(at) pause \(target) for \(lasting)"
        case .link(let target, let faults): return "at \(at) \(target) \(faults) for \(lasting)"
        case .diskFull: return "at \(at) the store's disk full for \(lasting)"
        case .diskReadOnly: return "at \(at) the store's disk read-only for \(lasting)"
        case .crashLoop: return "from \(at) an lpar-host killed every \(lasting)"
        case .secondController: return "at \(at) a second controller on the same store for \(lasting)"
        }
    }

    public static func seconds(_ millis: UInt64) -> String {
        millis % 1_000 == 0 ? "\(millis / 1_000) s" : "\(Double(millis) / 1_000) s"
    }
}

extension Scenario {
    /// What the scenario runs, in a few lines.
    public var outline: String {
        let shape = "\(cluster.blades) blades of \(cluster.coresPerBlade) cores (\(cluster.chassis) chassis, \(cluster.racks) racks, \(cluster.powerDomains) power domains)"
        let work = "\(workload.clients) clients at \(FaultEvent.number(workload.ratePerSecond))/s, at most \(workload.maxOperations) operations, "
            + "\(tenants.count) tenant\(tenants.count == 1 ? "" : "s"), \(workload.groups.count) group\(workload.groups.count == 1 ? "" : "s")"
        var lines = ["\(name): \(FaultEvent.seconds(durationMillis)), \(shape); \(work)"]
        lines += faults.map { "  fault: \($0)" }
        if !testSwitches.isEmpty { lines.append("  test switches: \(testSwitches.map(\.rawValue).sorted().joined(separator: ", "))") }
        return lines.joined(separator: "\n")
    }
}

extension FaultEvent {
    static func number(_ value: Double) -> String { value == value.rounded() ? String(Int(value)) : String(value) }
}

extension Scenario {
    /// The kinds of violation the scenario expects the checker to find.
    public var expectedViolations: Set<Violation.Kind> {
        var kinds: Set<Violation.Kind> = []
        for case .violation(let listed) in expectations { kinds.formUnion(listed) }
        return kinds
    }
}
