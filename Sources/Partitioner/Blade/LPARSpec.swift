public import VMX
import Sizes

/// How an LPAR gets its processors.
public enum CPUAssignment: Equatable, Sendable {
    /// These cores belong to this LPAR alone.
    case dedicated(cores: [Int])
    /// `logicalCPUs` run on the blade's shared pool, weighted by `serviceRatio` against the
    /// other shared LPARs; with `capped`, the LPAR never uses more than its ratio's share.
    case shared(logicalCPUs: Int, serviceRatio: Int, capped: Bool)

    /// How many CPUs the LPAR's guest sees.
    public var logicalCPUCount: Int {
        switch self {
        case .dedicated(let cores): return cores.count
        case .shared(let count, _, _): return count
        }
    }
}

/// A disk the LPAR uses: a whole dedicated disk, or a LUN range of a shared one.
public enum DiskAssignment: Equatable, Sendable {
    case dedicated(diskID: String)
    case shared(diskID: String, luns: Range<Int>)

    public var diskID: String {
        switch self {
        case .dedicated(let id), .shared(let id, _): return id
        }
    }
}

/// A guest-physical memory range of the blade, given to exactly one LPAR.
public struct MemoryRange: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var base: UInt64
    public var size: UInt64

    public init(base: UInt64, size: UInt64) {
        self.base = base
        self.size = size
    }

    public var end: UInt64 { base &+ size }
    public func overlaps(_ other: MemoryRange) -> Bool { base < other.end && other.base < end }
    public var description: String { "[\(hex(base)), \(hex(end)))" }
    /// LPAR memory is carved in 2 MiB blocks so L0 can back it with large pages.
    public static let alignment: UInt64 = 2 * ByteSize.mib
}

/// Everything needed to define one LPAR on a blade.
public struct LPARSpec: Equatable, Sendable {
    public var name: String
    public var cpu: CPUAssignment
    public var memory: MemoryRange
    public var disks: [DiskAssignment]
    public var nics: [String]
    /// Expose VMX to the LPAR so it can run a guest hypervisor (L1) and its VMs (L2).
    public var vmm: Bool
    /// Let L0 use VMCS shadowing for this LPAR's guest hypervisor.
    public var vmcsShadowing: Bool
    /// The fields L0 shadows when `vmcsShadowing` is on.
    public var shadowFields: ShadowFieldSet

    public init(name: String, cpu: CPUAssignment, memory: MemoryRange, disks: [DiskAssignment] = [],
                nics: [String] = [], vmm: Bool = false, vmcsShadowing: Bool = true,
                shadowFields: ShadowFieldSet = .linuxKVM) {
        self.name = name
        self.cpu = cpu
        self.memory = memory
        self.disks = disks
        self.nics = nics
        self.vmm = vmm
        self.vmcsShadowing = vmcsShadowing
        self.shadowFields = shadowFields
    }
}
