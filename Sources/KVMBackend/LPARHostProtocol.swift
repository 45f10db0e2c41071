#if os(Linux)
public import Partitioner

/// What the agent asks of an LPAR's process: one JSON object per line on its stdin.
public enum LPARHostCommand: Codable, Sendable, Equatable {
    /// Run one of lpar-os's workloads.
    case workload(GuestABI.Workload)
    /// Triple-fault the guest on purpose.
    case crash
    /// Read one sector (the probe's result tells whether the LPAR may).
    case readLBA(UInt64)
    /// Read one guest-physical quadword.
    case peek(UInt64)
    /// Time N port writes that exit to L0.
    case exitLoop(UInt64)
    /// A mailbox command of the guest (the guest hypervisor's L2 VMs among them).
    case post(GuestABI.Command, argument: UInt64)
    /// A shared LPAR's vCPUs move onto these host cores.
    case pool(cores: [Int])
    /// Pause, write the LPAR's snapshot to `path` and end (the LPAR goes on from it elsewhere).
    case save(path: String)
    /// Stop the LPAR and end.
    case stop
}

/// Where an LPAR's process is in its life, as it reports it.
public enum LPARHostState: Codable, Sendable, Equatable {
    /// The machine is built; the guest has not yet said it is up.
    case booting
    /// The guest is up and waits for a command.
    case ready
    /// The guest runs a workload.
    case running
    /// Told to stop, it stopped; the process ends.
    case stopped
    /// Saved to the snapshot at `path`; the process ends.
    case saved(path: String)
    /// The guest or the process failed; the process ends (or has ended).
    case failed(reason: String)

    /// States after which the process ends by itself.
    public var isFinal: Bool {
        switch self {
        case .stopped, .saved, .failed: return true
        case .booting, .ready, .running: return false
        }
    }

    /// Booted: ready or running.
    public var isUp: Bool { self == .ready || self == .running }

    public var failureReason: String? {
        if case .failed(let reason) = self { return reason }
        return nil
    }
}

/// What an LPAR's process reports: one JSON object per line on its stdout, every 100 ms and
/// when it ends.
public struct LPARHostStatus: Codable, Sendable, Equatable {
    public var state: LPARHostState
    public var workload: GuestABI.Workload?
    public var operations: UInt64 = 0
    public var bytes: UInt64 = 0
    public var passes: UInt64 = 0
    public var checksum: UInt64 = 0
    public var errors: UInt64 = 0
    public var probeStatus: UInt64 = 0
    public var probeValue: UInt64 = 0
    public var commandsTaken: UInt64 = 0
    public var exits: UInt64 = 0
    /// Console lines since the last report.
    public var console: [String] = []
    public var pinning: String?
    public var pid: Int32 = 0
    public var vcpus: UInt64 = 0
    /// Compute rounds of each vCPU.
    public var cpuOperations: [UInt64] = []
    /// The guest hypervisor's L2 VMs (an LPAR created with vmm), by slot.
    public var vms: [VMReport]?
    /// vCPU 0's nested-VMX counters (an LPAR created with vmm).
    public var nested: NestedCounters?

    public init(state: LPARHostState) { self.state = state }

    /// Why the LPAR failed, when it did.
    public var reason: String? { state.failureReason }
}
#endif
