/// A level of failure domain: a blade, its chassis, its rack or its power domain.
public enum DomainLevel: String, Sendable, Hashable, CaseIterable, Comparable {
    case blade, chassis, rack, power

    public static func < (lhs: DomainLevel, rhs: DomainLevel) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Where a blade sits: the failure domains it shares with others.
public struct BladeLabels: Sendable, Hashable {
    public var chassis: String
    public var rack: String
    public var powerDomain: String

    public init(chassis: String, rack: String, powerDomain: String) {
        self.chassis = chassis
        self.rack = rack
        self.powerDomain = powerDomain
    }
}

/// Whether a blade takes new partitions.
public enum BladeCondition: String, Sendable, Hashable {
    case ready, cordoned, suspect, unreachable
}

/// A blade as placement sees it: capacity, labels and condition.
public struct BladeSnapshot: Sendable, Hashable {
    public var id: String
    public var labels: BladeLabels
    public var cores: Int
    public var memoryBytes: UInt64
    public var diskBytes: UInt64
    public var nestedCapable: Bool
    public var condition: BladeCondition

    public init(id: String, labels: BladeLabels, cores: Int, memoryBytes: UInt64, diskBytes: UInt64,
                nestedCapable: Bool = true, condition: BladeCondition = .ready) {
        self.id = id
        self.labels = labels
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.diskBytes = diskBytes
        self.nestedCapable = nestedCapable
        self.condition = condition
    }

    /// The name of the domain this blade belongs to at `level`.
    public func domain(_ level: DomainLevel) -> String {
        switch level {
        case .blade: return id
        case .chassis: return labels.chassis
        case .rack: return labels.rack
        case .power: return labels.powerDomain
        }
    }
}

/// How a partition's cores are held: whole dedicated cores, or a share of shared cores
/// (service ratio in percent of one core per requested core).
public enum CPUMode: Sendable, Hashable {
    case dedicated
    case shared(serviceRatio: Int)
}

/// Keep the members of a group apart at a level: hard (never more than `maxPerDomain` in one
/// domain) or soft (prefer spreading; counted in the score).
public struct AntiAffinity: Sendable, Hashable {
    public var group: String
    public var level: DomainLevel
    public var hard: Bool
    public var maxPerDomain: Int

    public init(group: String, level: DomainLevel, hard: Bool = true, maxPerDomain: Int = 1) {
        self.group = group
        self.level = level
        self.hard = hard
        self.maxPerDomain = maxPerDomain
    }
}

/// Whether a tenant's partition may share its blade with other tenants.
public enum Isolation: Sendable, Hashable {
    case sharedBlade, exclusiveBlade
}

/// What a partition asks for.
public struct PlacementRequest: Sendable, Hashable {
    public var name: String
    public var tenant: String
    public var cores: Int
    public var memoryBytes: UInt64
    public var diskBytes: UInt64
    public var cpuMode: CPUMode
    public var vmm: Bool
    public var antiAffinity: AntiAffinity?
    public var isolation: Isolation

    public init(name: String, tenant: String, cores: Int, memoryBytes: UInt64, diskBytes: UInt64 = 0,
                cpuMode: CPUMode = .dedicated, vmm: Bool = false, antiAffinity: AntiAffinity? = nil,
                isolation: Isolation = .sharedBlade) {
        self.name = name
        self.tenant = tenant
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.diskBytes = diskBytes
        self.cpuMode = cpuMode
        self.vmm = vmm
        self.antiAffinity = antiAffinity
        self.isolation = isolation
    }
}

/// A partition already placed on a blade.
public struct Placement: Sendable, Hashable {
    public var request: PlacementRequest
    public var blade: String

    public init(request: PlacementRequest, blade: String) {
        self.request = request
        self.blade = blade
    }
}

/// How the cluster keeps room for failures: after every decision, the partitions of any one
/// domain at `level` must fit on the blades outside it (N+1); `nil` turns the check off.
public struct PlacementPolicy: Sendable, Hashable {
    /// Memory is handed out in blocks of this size.
    public var memoryBlockBytes: UInt64
    /// The level of the N+1 check (default: chassis); nil turns it off.
    public var admissionLevel: DomainLevel?
    /// Test only: the hard anti-affinity filter is skipped (the fault harness's switch
    /// `skip-hard-anti-affinity`, to show that its checker sees the broken rule).
    public var testSkipsHardAntiAffinity: Bool

    public init(memoryBlockBytes: UInt64 = 256 << 20, admissionLevel: DomainLevel? = .chassis, testSkipsHardAntiAffinity: Bool = false) {
        self.memoryBlockBytes = memoryBlockBytes
        self.admissionLevel = admissionLevel
        self.testSkipsHardAntiAffinity = testSkipsHardAntiAffinity
    }

    public static let standard = PlacementPolicy()

    /// Cores a request occupies: whole cores when dedicated; its share, rounded up to whole
    /// cores, when shared (shared cores are not split across partitions here).
    public func coreDemand(_ request: PlacementRequest) -> Int {
        switch request.cpuMode {
        case .dedicated: return request.cores
        case .shared(let ratio): return max(1, (request.cores * ratio + 99) / 100)
        }
    }

    /// Memory a request occupies, rounded up to whole blocks.
    public func memoryDemand(_ request: PlacementRequest) -> UInt64 {
        let blocks = request.memoryBytes / memoryBlockBytes + (request.memoryBytes % memoryBlockBytes == 0 ? 0 : 1)
        let (bytes, overflow) = blocks.multipliedReportingOverflow(by: memoryBlockBytes)
        return overflow ? .max : bytes
    }
}
