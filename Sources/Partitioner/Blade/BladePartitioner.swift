/// One LPAR as the partitioner tracks it.
public struct LPAR: Equatable, Sendable {
    public var spec: LPARSpec
    public var state: LPARState
    /// Why the LPAR failed, when it is in `failed`.
    public var failureReason: String?

    public init(spec: LPARSpec, state: LPARState = .defined, failureReason: String? = nil) {
        self.spec = spec
        self.state = state
        self.failureReason = failureReason
    }
}

/// The L0 partitioner's view of one blade: its resources and the LPARs cut from them.
///
/// A value type: every change is validated in full against the isolation rules before it is
/// applied, so a refused change leaves the blade as it was.
/// - a dedicated core belongs to one LPAR only, and never to the shared pool;
/// - LPAR memory ranges are 2 MiB aligned, disjoint, and inside the blade's LPAR memory;
/// - a dedicated disk or NIC has one user; a shared disk's LUN ranges are disjoint;
/// - `vmm` needs a nested-capable blade.
public struct BladePartitioner: Equatable, Sendable {
    public private(set) var resources: BladeResources
    public private(set) var lpars: [String: LPAR] = [:]

    public init(resources: BladeResources) throws(PartitionerError) {
        if let problem = resources.problem() { throw .invalidBlade(problem) }
        self.resources = resources
    }

    /// LPAR names in a stable order.
    public var lparNames: [String] { lpars.keys.sorted() }

    /// Defines a new LPAR; refused with the first conflict found.
    public mutating func define(_ spec: LPARSpec) throws(PartitionerError) {
        if lpars[spec.name] != nil { throw .duplicateName(spec.name) }
        try validate(spec, ignoring: nil)
        lpars[spec.name] = LPAR(spec: spec)
    }

    /// Replaces an LPAR's specification (for example to resize it while it is stopped).
    public mutating func redefine(_ spec: LPARSpec) throws(PartitionerError) {
        guard let existing = lpars[spec.name] else { throw .unknownLPAR(spec.name) }
        guard LPARLifecycle.removable.contains(existing.state) else {
            throw .badTransition(lpar: spec.name, from: existing.state, event: "redefine")
        }
        try validate(spec, ignoring: spec.name)
        lpars[spec.name]?.spec = spec
    }

    /// Removes an LPAR that runs nothing.
    public mutating func remove(_ name: String) throws(PartitionerError) {
        guard let lpar = lpars[name] else { throw .unknownLPAR(name) }
        guard LPARLifecycle.removable.contains(lpar.state) else {
            throw .notRemovable(lpar: name, state: lpar.state)
        }
        lpars[name] = nil
    }

    /// Moves an LPAR along the transition table and returns its new state.
    @discardableResult
    public mutating func apply(_ event: LPAREvent, to name: String) throws(PartitionerError) -> LPARState {
        guard let lpar = lpars[name] else { throw .unknownLPAR(name) }
        guard let next = LPARLifecycle.next(from: lpar.state, on: event) else {
            throw .badTransition(lpar: name, from: lpar.state, event: event.name)
        }
        lpars[name]?.state = next
        if case .fault(let reason) = event {
            lpars[name]?.failureReason = reason
        } else if next != .failed {
            lpars[name]?.failureReason = nil
        }
        return next
    }

    /// Cores no LPAR has dedicated and that are not in the shared pool.
    public var freeCores: [Int] {
        let used = Set(lpars.values.flatMap { lpar -> [Int] in
            if case .dedicated(let cores) = lpar.spec.cpu { return cores }
            return []
        })
        let pool = Set(resources.sharedPool)
        return (0..<resources.coreCount).filter { !used.contains($0) && !pool.contains($0) }
    }

    /// The capacity a shared LPAR is guaranteed, in percent of one core: its logical CPUs
    /// times its service ratio (a ratio above 100 weighs more against the others but
    /// guarantees no more than whole cores); 0 for dedicated cores.
    public static func entitlement(_ cpu: CPUAssignment) -> Int {
        guard case .shared(let count, let ratio, _) = cpu else { return 0 }
        return count * min(max(ratio, 0), 100)
    }

    /// Replaces the shared pool (the agent of a cluster blade grows it with the cores its
    /// shared partitions were given, and shrinks it when they go). Refused when a pool core is
    /// dedicated to an LPAR, or when the pool would no longer hold the shared LPARs'
    /// entitlements; a refused change leaves the blade as it was.
    public mutating func setSharedPool(_ cores: [Int]) throws(PartitionerError) {
        var changed = resources
        changed.sharedPool = cores.sorted()
        if let problem = changed.problem() { throw .invalidBlade(problem) }
        for core in changed.sharedPool {
            for lpar in lpars.values.sorted(by: { $0.spec.name < $1.spec.name }) {
                if case .dedicated(let theirs) = lpar.spec.cpu, theirs.contains(core) {
                    throw .coreAlreadyDedicated(lpar: "(shared pool)", core: core, owner: lpar.spec.name)
                }
            }
        }
        let entitled = lpars.values.reduce(0) { $0 + Self.entitlement($1.spec.cpu) }
        if entitled > changed.sharedPool.count * 100,
           let first = lpars.values.filter({ Self.entitlement($0.spec.cpu) > 0 }).map(\.spec.name).min() {
            throw .sharedPoolTooSmall(lpar: first, entitledPercent: entitled, poolSize: changed.sharedPool.count)
        }
        resources = changed
    }

    /// Bytes of LPAR memory not given to any LPAR.
    public var freeMemoryBytes: UInt64 {
        let total = resources.memoryBytes - resources.l0ReservedBytes
        return total - lpars.values.reduce(0) { $0 + $1.spec.memory.size }
    }

    /// The lowest 2 MiB-aligned base where `size` bytes fit, or nil when none does.
    public func firstFit(memory size: UInt64) -> UInt64? {
        let align = MemoryRange.alignment
        var base = (resources.l0ReservedBytes + align - 1) / align * align
        let taken = lpars.values.map(\.spec.memory).sorted { $0.base < $1.base }
        for range in taken {
            if base + size <= range.base { return base }
            base = max(base, (range.end + align - 1) / align * align)
        }
        return base + size <= resources.memoryBytes ? base : nil
    }

    private func validate(_ spec: LPARSpec, ignoring: String?) throws(PartitionerError) {
        let name = spec.name
        if name.isEmpty || name.count > 63 || !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) {
            throw .invalidSpec(lpar: name.isEmpty ? "(unnamed)" : name,
                               reason: "a name is 1-63 letters, digits, '-', '_' or '.'")
        }
        if let problem = spec.shadowFields.problem() {
            throw .invalidSpec(lpar: name, reason: "shadow field set: \(problem)")
        }
        let others = lpars.values.filter { $0.spec.name != ignoring }
        // Processors.
        switch spec.cpu {
        case .dedicated(let cores):
            if cores.isEmpty { throw .invalidSpec(lpar: name, reason: "at least one dedicated core is needed") }
            for core in cores where core < 0 || core >= resources.coreCount {
                throw .coreOutOfRange(lpar: name, core: core, coreCount: resources.coreCount)
            }
            var seen = Set<Int>()
            for core in cores {
                if !seen.insert(core).inserted { throw .coreListedTwice(lpar: name, core: core) }
                if resources.sharedPool.contains(core) { throw .coreInSharedPool(lpar: name, core: core) }
                for other in others {
                    if case .dedicated(let theirs) = other.spec.cpu, theirs.contains(core) {
                        throw .coreAlreadyDedicated(lpar: name, core: core, owner: other.spec.name)
                    }
                }
            }
        case .shared(let count, let ratio, _):
            if count <= 0 { throw .invalidSpec(lpar: name, reason: "a shared LPAR needs at least one logical CPU") }
            if ratio <= 0 || ratio > 1000 {
                throw .invalidSpec(lpar: name, reason: "service ratio \(ratio) is not within 1...1000")
            }
            if count > resources.coreCount {
                throw .invalidSpec(lpar: name, reason: "\(count) shared logical CPUs exceed the blade's \(resources.coreCount) cores")
            }
            let entitled = others.reduce(Self.entitlement(spec.cpu)) { $0 + Self.entitlement($1.spec.cpu) }
            if entitled > resources.sharedPool.count * 100 {
                throw .sharedPoolTooSmall(lpar: name, entitledPercent: entitled, poolSize: resources.sharedPool.count)
            }
        }
        // Memory.
        let range = spec.memory
        if range.size == 0 { throw .invalidSpec(lpar: name, reason: "memory size is 0") }
        if range.base % MemoryRange.alignment != 0 || range.size % MemoryRange.alignment != 0 {
            throw .memoryMisaligned(lpar: name, range: range)
        }
        if range.base < resources.l0ReservedBytes || range.end > resources.memoryBytes || range.end < range.base {
            throw .memoryOutsideBlade(lpar: name, range: range, usableFrom: resources.l0ReservedBytes,
                                      usableTo: resources.memoryBytes)
        }
        for other in others.sorted(by: { $0.spec.name < $1.spec.name }) where other.spec.memory.overlaps(range) {
            throw .memoryOverlap(lpar: name, range: range, owner: other.spec.name, ownerRange: other.spec.memory)
        }
        // Disks.
        var claimed: [String: [Range<Int>]] = [:]
        for assignment in spec.disks {
            guard let disk = resources.disks.first(where: { $0.id == assignment.diskID }) else {
                throw .unknownDisk(lpar: name, disk: assignment.diskID)
            }
            let users = others.filter { $0.spec.disks.contains { $0.diskID == disk.id } }.map(\.spec.name).sorted()
            switch assignment {
            case .dedicated:
                if disk.shared { throw .diskIsShared(lpar: name, disk: disk.id) }
                if let owner = users.first { throw .diskAlreadyDedicated(lpar: name, disk: disk.id, owner: owner) }
                if claimed[disk.id] != nil { throw .invalidSpec(lpar: name, reason: "disk \(disk.id) is listed twice") }
                claimed[disk.id] = [0..<disk.lunCount]
            case .shared(_, let luns):
                if !disk.shared { throw .diskNotShared(lpar: name, disk: disk.id) }
                if luns.isEmpty || luns.lowerBound < 0 || luns.upperBound > disk.lunCount {
                    throw .lunRangeInvalid(lpar: name, disk: disk.id, luns: luns, lunCount: disk.lunCount)
                }
                for mine in claimed[disk.id] ?? [] where mine.overlaps(luns) {
                    throw .lunOverlap(lpar: name, disk: disk.id, luns: luns, owner: name, ownerLUNs: mine)
                }
                for other in others.sorted(by: { $0.spec.name < $1.spec.name }) {
                    for case .shared(let id, let theirs) in other.spec.disks where id == disk.id && theirs.overlaps(luns) {
                        throw .lunOverlap(lpar: name, disk: disk.id, luns: luns, owner: other.spec.name, ownerLUNs: theirs)
                    }
                }
                claimed[disk.id, default: []].append(luns)
            }
        }
        // NICs.
        var nicSeen = Set<String>()
        for nicID in spec.nics {
            guard let nic = resources.nics.first(where: { $0.id == nicID }) else {
                throw .unknownNIC(lpar: name, nic: nicID)
            }
            if !nicSeen.insert(nicID).inserted { throw .invalidSpec(lpar: name, reason: "NIC \(nicID) is listed twice") }
            if !nic.shared {
                let users = others.filter { $0.spec.nics.contains(nicID) }.map(\.spec.name).sorted()
                if let owner = users.first { throw .nicAlreadyDedicated(lpar: name, nic: nicID, owner: owner) }
            }
        }
        if spec.vmm && !resources.nestedCapable { throw .nestedNotSupported(lpar: name) }
    }
}
