/// What the harness saw at one instant: every blade's actual LPARs (as its agent reports
/// them, independent of the controller) and the partitions the store holds.
///
/// These types are the checker's own: the harness fills them from the agents' and the
/// store's answers, and nothing here imports the code under test. A partition is named the
/// same way everywhere (in the history, the store and the LPARs): by its name, which is
/// unique in the cluster; an anti-affinity group by `TENANT/GROUP`, since groups belong to
/// their tenant.
public struct Observation: Sendable, Hashable, Codable {
    public var timeMillis: UInt64
    public var blades: [ObservedBlade]
    public var partitions: [StoredPartition]

    public init(timeMillis: UInt64, blades: [ObservedBlade], partitions: [StoredPartition]) {
        self.timeMillis = timeMillis
        self.blades = blades
        self.partitions = partitions
    }
}

/// One blade: its capacity, its failure domains and the LPARs its agent actually has.
public struct ObservedBlade: Sendable, Hashable, Codable {
    public var id: String
    public var cores: Int
    public var memoryBytes: UInt64
    /// The blade's domain at each level: "chassis", "rack", "power" (the blade itself is its own).
    public var domains: [String: String]
    public var lpars: [ObservedLPAR]

    public init(id: String, cores: Int, memoryBytes: UInt64, domains: [String: String], lpars: [ObservedLPAR]) {
        self.id = id
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.domains = domains
        self.lpars = lpars
    }

    /// The domain of this blade at `level` ("blade" is the blade itself).
    public func domain(at level: String) -> String? { level == "blade" ? id : domains[level] }
}

/// An LPAR as its agent reports it.
public struct ObservedLPAR: Sendable, Hashable, Codable {
    public enum State: String, Sendable, Hashable, Codable {
        case defined, activating, running, deactivating, stopped, failed, migrating
    }

    public var name: String
    /// The partition this LPAR runs, when it runs one.
    public var partition: String?
    public var tenant: String?
    public var state: State
    public var cores: [Int]
    public var memoryStart: UInt64
    public var memoryBytes: UInt64
    /// Its part in a migration, when it takes part in one.
    public var migration: Migration?

    /// A migrating LPAR's part: the source (whose guest runs until it has handed over) or the
    /// target's shell (which runs nothing until it is activated).
    public struct Migration: Sendable, Hashable, Codable {
        public var target: Bool
        public var handedOver: Bool

        public init(target: Bool, handedOver: Bool) {
            self.target = target
            self.handedOver = handedOver
        }
    }

    public init(name: String, partition: String?, tenant: String?, state: State, cores: [Int], memoryStart: UInt64, memoryBytes: UInt64,
                migration: Migration? = nil) {
        self.name = name
        self.partition = partition
        self.tenant = tenant
        self.state = state
        self.cores = cores
        self.memoryStart = memoryStart
        self.memoryBytes = memoryBytes
        self.migration = migration
    }

    /// An LPAR holds its cores and memory from its definition to its removal, in every state:
    /// the partitioner keeps them for it (a stopped or failed LPAR can be started again).
    public var holdsResources: Bool { true }
}

/// A partition as the store holds it: its tenant and the rules placement had to keep.
public struct StoredPartition: Sendable, Hashable, Codable {
    public struct Spread: Sendable, Hashable, Codable {
        public var group: String
        public var level: String
        public var hard: Bool
        public var maxPerDomain: Int

        public init(group: String, level: String, hard: Bool, maxPerDomain: Int) {
            self.group = group
            self.level = level
            self.hard = hard
            self.maxPerDomain = maxPerDomain
        }
    }

    /// Where the store placed it: a blade, its cores, and a memory range in the memory the
    /// blade offers (claims are compared with claims, not with LPARs).
    public struct Claim: Sendable, Hashable, Codable {
        public var blade: String
        public var cores: [Int]
        public var memoryBase: UInt64
        public var memoryBytes: UInt64

        public init(blade: String, cores: [Int], memoryBase: UInt64, memoryBytes: UInt64) {
            self.blade = blade
            self.cores = cores
            self.memoryBase = memoryBase
            self.memoryBytes = memoryBytes
        }
    }

    public var name: String
    public var tenant: String
    public var spread: Spread?
    public var exclusiveBlade: Bool
    /// Its claim; nil while it holds none.
    public var claim: Claim?
    /// Whether it should run (its desired state), as opposed to stay stopped.
    public var shouldRun: Bool

    public init(name: String, tenant: String, spread: Spread? = nil, exclusiveBlade: Bool = false, claim: Claim? = nil, shouldRun: Bool = true) {
        self.name = name
        self.tenant = tenant
        self.spread = spread
        self.exclusiveBlade = exclusiveBlade
        self.claim = claim
        self.shouldRun = shouldRun
    }
}
