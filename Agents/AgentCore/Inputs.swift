public import Partitioner

/// What the controller asks of the blade, as the agent's core sees it (the shell maps the
/// wire's `AgentCommandRequest` onto it).
public enum BladeCommand: Equatable, Sendable {
    case define(LPARDefinitionInput)
    case activate(lpar: String)
    case deactivate(lpar: String)
    case remove(lpar: String)
    case createVM(VMRequest)
    case deleteVM(partition: String, name: String)
    /// Define a shell LPAR that receives migration `migration` from `source`.
    case prepareIncoming(LPARDefinitionInput, migration: String, source: String)
    /// Send the running LPAR to `target`'s agent at `address`.
    case migrateOut(lpar: String, migration: String, target: String, address: String, maxDowntimeMillis: UInt64)
    /// Stop migration `migration` of the LPAR on the source: the guest runs on.
    case cancelMigration(lpar: String, migration: String)

    /// The LPAR the command is about.
    public var lpar: String {
        switch self {
        case .define(let definition): return definition.name
        case .activate(let name), .deactivate(let name), .remove(let name): return name
        case .createVM(let vm): return vm.partition
        case .deleteVM(let partition, _): return partition
        case .prepareIncoming(let definition, _, _): return definition.name
        case .migrateOut(let name, _, _, _, _), .cancelMigration(let name, _): return name
        }
    }
}

/// An LPAR as the controller's claim defines it.
public struct LPARDefinitionInput: Equatable, Sendable {
    public var name: String
    public var dedicatedCores: [Int]
    /// Shared mode: the LPAR's logical CPUs and service ratio (percent of a core each).
    public var sharedCPUs: Int?
    public var serviceRatio: Int?
    public var capped: Bool?
    /// From the start of the memory above L0's reserve.
    public var memoryBase: UInt64
    public var memoryBytes: UInt64
    public var vmm: Bool
    public var vmcsShadowing: Bool
    public var diskBytes: UInt64
    /// The cores this shared LPAR's claim adds to the blade's shared pool.
    public var poolCores: [Int]
    /// The tenant whose partition the LPAR is, as the controller named it; nil when not said.
    public var tenant: String?

    public init(name: String, dedicatedCores: [Int] = [], sharedCPUs: Int? = nil, serviceRatio: Int? = nil, capped: Bool? = nil,
                memoryBase: UInt64, memoryBytes: UInt64, vmm: Bool = false, vmcsShadowing: Bool = false, diskBytes: UInt64 = 0,
                poolCores: [Int] = [], tenant: String? = nil) {
        self.name = name
        self.dedicatedCores = dedicatedCores
        self.sharedCPUs = sharedCPUs
        self.serviceRatio = serviceRatio
        self.capped = capped
        self.memoryBase = memoryBase
        self.memoryBytes = memoryBytes
        self.vmm = vmm
        self.vmcsShadowing = vmcsShadowing
        self.diskBytes = diskBytes
        self.poolCores = poolCores
        self.tenant = tenant
    }
}

/// The workloads an L2 VM can run.
public enum VMWorkload: Equatable, Sendable, CaseIterable {
    case iometer, sysbenchOLTP, idle
}

/// An L2 VM the controller wants in a VMM partition.
public struct VMRequest: Equatable, Sendable {
    public var partition: String
    public var name: String
    public var vcpus: Int
    public var memoryBytes: UInt64
    public var workload: VMWorkload

    public init(partition: String, name: String, vcpus: Int = 1, memoryBytes: UInt64 = 0, workload: VMWorkload = .idle) {
        self.partition = partition
        self.name = name
        self.vcpus = vcpus
        self.memoryBytes = memoryBytes
        self.workload = workload
    }
}

/// What an LPAR driver reports about one LPAR.
public enum DriverReport: Equatable, Sendable {
    /// The LPAR's guest is up (the answer to `start`).
    case started
    /// The LPAR could not be started (the answer to `start`).
    case startFailed(reason: String)
    /// The LPAR's guest or its process failed while it was up or stopping.
    case failed(reason: String)
    /// The LPAR is stopped (the answer to `stop`).
    case stopped
    /// The LPAR's disk is released: its own image deleted, its LUN range zeroed.
    case diskReleased
    /// The disk could not be released; its LUN range stays kept.
    case diskReleaseFailed(reason: String)
    /// An L2 VM of the LPAR's guest hypervisor changed state.
    case vm(name: String, VMEvent)
    /// The shell's sender or receiver of migration `id` moved on.
    case migration(id: String, MigrationUpdate)
}

/// The link to the controller.
public enum LinkEvent: Equatable, Sendable {
    case up
    case down
}

/// Everything that moves the agent's core.
public enum AgentInput: Equatable, Sendable {
    /// A command of the controller, to be answered by a `reply` directive with the same id.
    case command(id: String, BladeCommand)
    /// A report of the LPAR driver about one LPAR.
    case driver(lpar: String, DriverReport)
    /// The heartbeat timer fired.
    case tick
    /// The link to the controller came up or went down.
    case link(LinkEvent)
}
