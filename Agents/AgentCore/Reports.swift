public import Partitioner

/// L0's counters of one LPAR, as a driver measures them.
public struct LPARCounterValues: Equatable, Sendable {
    public var l2Exits: UInt64 = 0
    public var reflected: UInt64 = 0
    public var trappedVMX: UInt64 = 0
    public var servedByShadow: UInt64 = 0
    public var l0Nanoseconds: UInt64 = 0

    public init(l2Exits: UInt64 = 0, reflected: UInt64 = 0, trappedVMX: UInt64 = 0, servedByShadow: UInt64 = 0, l0Nanoseconds: UInt64 = 0) {
        self.l2Exits = l2Exits
        self.reflected = reflected
        self.trappedVMX = trappedVMX
        self.servedByShadow = servedByShadow
        self.l0Nanoseconds = l0Nanoseconds
    }
}

/// What a driver measures of one LPAR now: its counters and each L2 VM's operations.
public struct LPARObservation: Equatable, Sendable {
    public var counters: LPARCounterValues
    public var vmOperations: [String: UInt64]

    public init(counters: LPARCounterValues = .init(), vmOperations: [String: UInt64] = [:]) {
        self.counters = counters
        self.vmOperations = vmOperations
    }
}

/// One L2 VM in a heartbeat.
public struct VMReportValue: Equatable, Sendable {
    public var name: String
    public var state: VMState
    public var operations: UInt64
}

/// One LPAR in a heartbeat: the core's state and the driver's measurements.
public struct LPARReportValue: Equatable, Sendable {
    public var name: String
    public var state: LPARState
    public var failureReason: String?
    public var counters: LPARCounterValues
    public var vms: [VMReportValue]
    public var migration: AgentMigration?
}

extension AgentCore {
    /// The LPAR's report, nil when it is not defined.
    public func report(of name: String, observation: LPARObservation?) -> LPARReportValue? {
        guard let lpar = partitioner.lpars[name] else { return nil }
        let vms = (records[name]?.vms ?? [:]).values.sorted { $0.request.name < $1.request.name }.map { vm in
            VMReportValue(name: vm.request.name, state: vm.state, operations: observation?.vmOperations[vm.request.name] ?? 0)
        }
        return LPARReportValue(name: name, state: lpar.state, failureReason: lpar.failureReason,
                               counters: observation?.counters ?? .init(), vms: vms, migration: records[name]?.migration)
    }

    /// Every LPAR's report, by name.
    public func reports(observations: [String: LPARObservation]) -> [LPARReportValue] {
        partitioner.lparNames.compactMap { report(of: $0, observation: observations[$0]) }
    }
}

/// One LPAR as the blade actually holds it: what L0 gave it and the state it is in, whatever
/// the controller believes (what `virsh list` is to a libvirt host).
public struct ActualLPARValue: Equatable, Sendable {
    public var name: String
    /// The tenant the controller named when it defined the LPAR; nil when it named none.
    public var tenant: String?
    public var state: LPARState
    public var failureReason: String?
    public var cpu: CPUAssignment
    /// The cores a shared LPAR's claim brought to the blade's shared pool.
    public var poolCores: [Int]
    /// Where the LPAR's memory lies in the blade's memory (L0's reserve included in the base).
    public var memory: MemoryRange
    public var vms: Int
    /// The migration the LPAR takes part in here, if any.
    public var migration: AgentMigration?
}

extension AgentCore {
    /// Every LPAR the blade holds, by name.
    public func actualLPARs() -> [ActualLPARValue] {
        partitioner.lparNames.compactMap { name in
            guard let lpar = partitioner.lpars[name] else { return nil }
            let record = records[name]
            return ActualLPARValue(name: name, tenant: record?.tenant, state: lpar.state, failureReason: lpar.failureReason,
                                   cpu: lpar.spec.cpu, poolCores: record?.poolCores ?? [], memory: lpar.spec.memory,
                                   vms: record?.vms.count ?? 0, migration: record?.migration)
        }
    }
}
