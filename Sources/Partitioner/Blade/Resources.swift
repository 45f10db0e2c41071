import Sizes

/// A disk (or a LUN-carved volume behind an HBA) the blade offers its LPARs.
public struct BladeDisk: Codable, Hashable, Sendable {
    public var id: String
    /// How many LUNs the disk exposes; a dedicated disk gives all of them to one LPAR.
    public var lunCount: Int
    /// True when several LPARs may each own a disjoint LUN range of this disk (a shared HBA).
    public var shared: Bool

    public init(id: String, lunCount: Int, shared: Bool) {
        self.id = id
        self.lunCount = lunCount
        self.shared = shared
    }
}

/// A network interface the blade offers its LPARs.
public struct BladeNIC: Codable, Hashable, Sendable {
    public var id: String
    /// True when the NIC is shared (each LPAR gets a virtual function); false when dedicated.
    public var shared: Bool

    public init(id: String, shared: Bool) {
        self.id = id
        self.shared = shared
    }
}

/// What one blade has to cut into LPARs.
public struct BladeResources: Codable, Equatable, Sendable {
    /// Physical cores, numbered 0..<coreCount.
    public var coreCount: Int
    /// Cores (by number) that form the shared pool shared-mode LPARs run on; no LPAR may
    /// dedicate one of these.
    public var sharedPool: [Int]
    public var memoryBytes: UInt64
    /// Memory at the bottom of the blade kept by L0 itself; LPAR memory starts above it.
    public var l0ReservedBytes: UInt64
    public var disks: [BladeDisk]
    public var nics: [BladeNIC]
    /// True when the blade can run guest hypervisors in LPARs (VMX exposed to L1).
    public var nestedCapable: Bool

    public init(coreCount: Int, sharedPool: [Int] = [], memoryBytes: UInt64,
                l0ReservedBytes: UInt64 = 0, disks: [BladeDisk] = [], nics: [BladeNIC] = [],
                nestedCapable: Bool = true) {
        self.coreCount = coreCount
        self.sharedPool = sharedPool
        self.memoryBytes = memoryBytes
        self.l0ReservedBytes = l0ReservedBytes
        self.disks = disks
        self.nics = nics
        self.nestedCapable = nestedCapable
    }

    /// The whitepaper's blade: 2 x Xeon E5-2667 v3 (16 cores, HT off), 64 GiB, one FC HBA
    /// shared by LUN range and one shared 10 GbE NIC.
    public static let whitepaperBlade = BladeResources(
        coreCount: 16, sharedPool: [], memoryBytes: 64 * ByteSize.gib,
        l0ReservedBytes: 1 * ByteSize.gib,
        disks: [BladeDisk(id: "fc0", lunCount: 64, shared: true)],
        nics: [BladeNIC(id: "eth0", shared: true)], nestedCapable: true)

    /// Why these resources cannot describe a blade, or nil when they can.
    public func problem() -> String? {
        if coreCount <= 0 { return "a blade needs at least one core (coreCount \(coreCount))" }
        if memoryBytes == 0 { return "a blade needs memory (memory 0)" }
        if l0ReservedBytes >= memoryBytes {
            return "the L0 reservation (\(ByteSize.format(l0ReservedBytes))) leaves no memory of \(ByteSize.format(memoryBytes))"
        }
        var pool = Set<Int>()
        for core in sharedPool {
            if core < 0 || core >= coreCount { return "shared-pool core \(core) is not a core of this blade (0..<\(coreCount))" }
            if !pool.insert(core).inserted { return "shared-pool core \(core) is listed twice" }
        }
        var ids = Set<String>()
        for disk in disks {
            if disk.id.isEmpty { return "a disk has an empty id" }
            if !ids.insert("disk:" + disk.id).inserted { return "disk \(disk.id) is listed twice" }
            if disk.lunCount <= 0 { return "disk \(disk.id) has no LUNs (lunCount \(disk.lunCount))" }
        }
        for nic in nics {
            if nic.id.isEmpty { return "a NIC has an empty id" }
            if !ids.insert("nic:" + nic.id).inserted { return "NIC \(nic.id) is listed twice" }
        }
        return nil
    }
}
