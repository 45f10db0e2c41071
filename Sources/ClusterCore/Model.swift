public import Placement

/// A tenant and the most it may hold across all its partitions.
public struct Tenant: Sendable, Hashable, Codable {
    public var name: String
    public var maxCores: Int
    public var maxMemoryBytes: UInt64
    public var maxDiskBytes: UInt64
    /// The most partitions it may own; nil: no limit beyond cores, memory and disk.
    public var maxPartitions: Int?
    public var createdMillis: UInt64

    public init(name: String, maxCores: Int, maxMemoryBytes: UInt64, maxDiskBytes: UInt64,
                maxPartitions: Int? = nil, createdMillis: UInt64 = 0) {
        self.name = name
        self.maxCores = maxCores
        self.maxMemoryBytes = maxMemoryBytes
        self.maxDiskBytes = maxDiskBytes
        self.maxPartitions = maxPartitions
        self.createdMillis = createdMillis
    }
}

/// A disk (or an HBA's LUNs) a blade offers its LPARs.
public struct BladeDiskInfo: Sendable, Hashable, Codable {
    public var id: String
    public var luns: Int
    public var shared: Bool

    public init(id: String, luns: Int, shared: Bool) {
        self.id = id
        self.luns = luns
        self.shared = shared
    }
}

/// A blade as its agent registered it: inventory, failure-domain labels, and whether an
/// operator cordoned it.
public struct Blade: Sendable, Hashable, Codable {
    public var id: String
    public var cores: Int
    /// Memory the blade offers its LPARs (what L0 keeps is not counted); claims address it
    /// from 0, and the agent adds its own L0 reservation.
    public var memoryBytes: UInt64
    public var diskBytes: UInt64
    public var nestedCapable: Bool
    public var chassis: String
    public var rack: String
    public var powerDomain: String
    public var cordoned: Bool
    public var agentVersion: String
    public var backend: String
    public var registeredMillis: UInt64
    public var disks: [BladeDiskInfo]
    public var nics: [String]
    /// Where the blade's agent takes incoming migrations (HOST:PORT); nil: it takes none.
    public var migrationAddress: String?

    public init(id: String, cores: Int, memoryBytes: UInt64, diskBytes: UInt64,
                nestedCapable: Bool, chassis: String, rack: String, powerDomain: String, cordoned: Bool = false,
                agentVersion: String = "", backend: String = "sim", registeredMillis: UInt64 = 0,
                disks: [BladeDiskInfo] = [], nics: [String] = [], migrationAddress: String? = nil) {
        self.id = id
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.diskBytes = diskBytes
        self.nestedCapable = nestedCapable
        self.chassis = chassis
        self.rack = rack
        self.powerDomain = powerDomain
        self.cordoned = cordoned
        self.agentVersion = agentVersion
        self.backend = backend
        self.registeredMillis = registeredMillis
        self.disks = disks
        self.nics = nics
        self.migrationAddress = migrationAddress
    }

    public var labels: BladeLabels { BladeLabels(chassis: chassis, rack: rack, powerDomain: powerDomain) }
}

/// Whether a partition should be running.
public enum DesiredState: String, Sendable, Hashable, Codable {
    case running, stopped
}

/// A partition's request: what the tenant asked for.
public struct PartitionSpec: Sendable, Hashable, Codable {
    public enum CPU: Sendable, Hashable, Codable {
        case dedicated
        case shared(serviceRatio: Int)
    }
    public var name: String
    public var tenant: String
    public var cores: Int
    public var memoryBytes: UInt64
    public var diskBytes: UInt64
    public var cpu: CPU
    public var vmm: Bool
    public var shadowVMCS: Bool
    public var antiAffinity: AntiAffinityRule?
    public var exclusiveBlade: Bool

    public init(name: String, tenant: String, cores: Int, memoryBytes: UInt64, diskBytes: UInt64, cpu: CPU = .dedicated,
                vmm: Bool = false, shadowVMCS: Bool = true, antiAffinity: AntiAffinityRule? = nil, exclusiveBlade: Bool = false) {
        self.name = name
        self.tenant = tenant
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.diskBytes = diskBytes
        self.cpu = cpu
        self.vmm = vmm
        self.shadowVMCS = shadowVMCS
        self.antiAffinity = antiAffinity
        self.exclusiveBlade = exclusiveBlade
    }

    /// The group's name as placement sees it: groups belong to their tenant, so two tenants'
    /// groups of the same name are different groups.
    public static func placementGroup(_ group: String, tenant: String) -> String { "\(tenant)/\(group)" }

    /// The request placement sees.
    public var placementRequest: PlacementRequest {
        let mode: CPUMode
        switch cpu {
        case .dedicated: mode = .dedicated
        case .shared(let ratio): mode = .shared(serviceRatio: ratio)
        }
        return PlacementRequest(
            name: name, tenant: tenant, cores: cores, memoryBytes: memoryBytes, diskBytes: diskBytes, cpuMode: mode,
            vmm: vmm, antiAffinity: antiAffinity.map {
                AntiAffinity(group: Self.placementGroup($0.group, tenant: tenant), level: $0.level.domainLevel, hard: $0.hard,
                             maxPerDomain: $0.maxPerDomain)
            }, isolation: exclusiveBlade ? .exclusiveBlade : .sharedBlade)
    }
}

/// A failure-domain level, as stored and shown.
public enum SpreadLevel: String, Sendable, Hashable, Codable, CaseIterable {
    case blade, chassis, rack, power

    public var domainLevel: DomainLevel {
        switch self {
        case .blade: return .blade
        case .chassis: return .chassis
        case .rack: return .rack
        case .power: return .power
        }
    }
}

/// Keep a group's members apart at a level.
public struct AntiAffinityRule: Sendable, Hashable, Codable {
    public var group: String
    public var level: SpreadLevel
    public var hard: Bool
    public var maxPerDomain: Int

    public init(group: String, level: SpreadLevel, hard: Bool = true, maxPerDomain: Int = 1) {
        self.group = group
        self.level = level
        self.hard = hard
        self.maxPerDomain = maxPerDomain
    }

    public var description: String {
        "\(hard ? "hard" : "soft") \(level.rawValue) spread, at most \(maxPerDomain) per \(level.rawValue)"
    }
}

/// What a placed partition holds on its blade: cores by index, a memory range, disk.
public struct Claim: Sendable, Hashable, Codable {
    public var partition: String
    public var blade: String
    /// Host cores of the blade, by index, that the LPAR gets.
    public var cores: [Int]
    public var memoryBase: UInt64
    public var memoryBytes: UInt64
    public var diskBytes: UInt64
    /// Why placement chose this blade.
    public var reason: String

    public init(partition: String, blade: String, cores: [Int], memoryBase: UInt64, memoryBytes: UInt64,
                diskBytes: UInt64, reason: String) {
        self.partition = partition
        self.blade = blade
        self.cores = cores
        self.memoryBase = memoryBase
        self.memoryBytes = memoryBytes
        self.diskBytes = diskBytes
        self.reason = reason
    }
}

/// A partition: the spec, whether it should run, and its generation (bumped on every change
/// to what the agent must do).
public struct Partition: Sendable, Hashable, Codable {
    public var spec: PartitionSpec
    public var desired: DesiredState
    public var generation: UInt64
    public var createdMillis: UInt64
    /// Why the partition holds no claim, when the controller took it away (its blade came
    /// back too small for it); nil while it is placed. Starting it places it again.
    public var evictedBecause: String?

    public init(spec: PartitionSpec, desired: DesiredState = .running, generation: UInt64 = 1, createdMillis: UInt64 = 0,
                evictedBecause: String? = nil) {
        self.spec = spec
        self.desired = desired
        self.generation = generation
        self.createdMillis = createdMillis
        self.evictedBecause = evictedBecause
    }

    public var name: String { spec.name }
}

/// The workload an L2 VM runs (simulated).
public enum VMWorkload: String, Sendable, Hashable, Codable, CaseIterable {
    case iometer
    case sysbenchOLTP = "sysbench-oltp"
    case idle
}

/// An L2 VM inside a VMM partition; the tenant's own.
public struct VM: Sendable, Hashable, Codable {
    public var name: String
    public var partition: String
    public var vcpus: Int
    public var memoryBytes: UInt64
    public var workload: VMWorkload
    public var createdMillis: UInt64

    public init(name: String, partition: String, vcpus: Int, memoryBytes: UInt64, workload: VMWorkload, createdMillis: UInt64 = 0) {
        self.name = name
        self.partition = partition
        self.vcpus = vcpus
        self.memoryBytes = memoryBytes
        self.workload = workload
        self.createdMillis = createdMillis
    }

    public var key: VMKey { VMKey(partition: partition, name: name) }
}

/// A VM's name within its partition.
public struct VMKey: Sendable, Hashable, Codable, Comparable {
    public var partition: String
    public var name: String

    public init(partition: String, name: String) {
        self.partition = partition
        self.name = name
    }

    public static func < (lhs: VMKey, rhs: VMKey) -> Bool { (lhs.partition, lhs.name) < (rhs.partition, rhs.name) }
}

/// Something that happened, kept in order.
public struct ClusterEvent: Sendable, Hashable, Codable {
    public var sequence: UInt64
    public var timeMillis: UInt64
    public var kind: String
    public var subject: String
    public var message: String
    /// The tenant whose object it concerns; nil for cluster-wide events.
    public var tenant: String?

    public init(sequence: UInt64 = 0, timeMillis: UInt64, kind: String, subject: String, message: String, tenant: String? = nil) {
        self.sequence = sequence
        self.timeMillis = timeMillis
        self.kind = kind
        self.subject = subject
        self.message = message
        self.tenant = tenant
    }
}
