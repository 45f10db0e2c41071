/// Why a blade was not chosen for a request.
public enum RejectionReason: Hashable, Sendable, Comparable, CustomStringConvertible {
    case condition(BladeCondition)
    case notNestedCapable
    case tooFewCores
    case tooLittleMemory
    case tooLittleDisk
    case isolation
    case antiAffinity(level: DomainLevel, group: String)
    case admission(level: DomainLevel)

    public var description: String {
        switch self {
        case .condition(let condition): return condition.rawValue
        case .notNestedCapable: return "not nested-capable"
        case .tooFewCores: return "too few free cores"
        case .tooLittleMemory: return "too little free memory"
        case .tooLittleDisk: return "too little free disk"
        case .isolation: return "tenant isolation"
        case .antiAffinity(let level, let group): return "\(level.rawValue) anti-affinity (group \(group))"
        case .admission(let level): return "N+1 at \(level.rawValue) level"
        }
    }

    public static func < (lhs: RejectionReason, rhs: RejectionReason) -> Bool { lhs.description < rhs.description }
}

/// No blade can take a request: how many were considered and why each was not chosen.
public struct PlacementRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var blades: Int
    public var rejections: [RejectionReason: Int]

    /// "no blade fits: 40 blades; 28 too few free cores, 9 chassis anti-affinity (group web), 3 N+1 at chassis level"
    public var description: String {
        let parts = rejections.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.value) \($0.key)" }
        return "no blade fits: \(blades) blade\(blades == 1 ? "" : "s")" + (parts.isEmpty ? "" : "; " + parts.joined(separator: ", "))
    }
}

/// Where a request goes, and why the other blades were not chosen.
public struct PlacementDecision: Equatable, Sendable {
    public var blade: String
    public var score: Double
    public var rejections: [RejectionReason: Int]
}

/// The cluster as placement tracks it: blades, what is placed where, and the counts that
/// make a decision cheap (per-blade use, tenants per blade, group members per domain, and
/// per-domain use for the N+1 check). Pure: no I/O, no clocks.
public struct PlacementState: Sendable {
    public let policy: PlacementPolicy
    public private(set) var blades: [BladeSnapshot]
    public private(set) var placements: [String: Placement] = [:]
    private var index: [String: Int] = [:]
    private var usedCores: [Int]
    private var usedMemory: [UInt64]
    private var usedDisk: [UInt64]
    /// Partitions per tenant on each blade.
    private var tenants: [[String: Int]]
    /// The tenant holding a blade exclusively, if any.
    private var exclusive: [String?]
    /// group -> level -> domain -> members.
    private var members: [String: [DomainLevel: [String: Int]]] = [:]
    /// The partitions on each blade, by name.
    private var onBlade: [Set<String>]
    /// The blades of each domain of the admission level.
    private var admissionDomains: [String: [Int]] = [:]

    public init(blades: [BladeSnapshot], policy: PlacementPolicy = .standard) {
        self.policy = policy
        self.blades = blades
        for (position, blade) in blades.enumerated() { index[blade.id] = position }
        usedCores = Array(repeating: 0, count: blades.count)
        usedMemory = Array(repeating: 0, count: blades.count)
        usedDisk = Array(repeating: 0, count: blades.count)
        tenants = Array(repeating: [:], count: blades.count)
        onBlade = Array(repeating: [], count: blades.count)
        if let level = policy.admissionLevel {
            for (position, blade) in blades.enumerated() { admissionDomains[blade.domain(level), default: []].append(position) }
        }
        exclusive = Array(repeating: nil, count: blades.count)
    }

    public func freeCores(_ blade: String) -> Int? { index[blade].map { blades[$0].cores - usedCores[$0] } }
    public func freeMemory(_ blade: String) -> UInt64? { index[blade].map { blades[$0].memoryBytes - usedMemory[$0] } }

    /// Changes a blade's condition (cordon, suspect, unreachable, ready).
    public mutating func setCondition(_ condition: BladeCondition, of blade: String) {
        if let position = index[blade] { blades[position].condition = condition }
    }

    /// Chooses a blade for `request`, or says why none fits. Does not change the state.
    public func decide(_ request: PlacementRequest) -> Result<PlacementDecision, PlacementRefusal> {
        let cores = policy.coreDemand(request)
        let memory = policy.memoryDemand(request)
        var rejections: [RejectionReason: Int] = [:]
        var candidates: [(position: Int, score: Double)] = []
        for position in blades.indices {
            if let reason = reject(request, at: position, cores: cores, memory: memory) {
                rejections[reason, default: 0] += 1
                continue
            }
            candidates.append((position, score(request, at: position, cores: cores, memory: memory)))
        }
        candidates.sort { $0.score != $1.score ? $0.score > $1.score : blades[$0.position].id < blades[$1.position].id }
        let admission = policy.admissionLevel.map { AdmissionCheck(state: self, level: $0) }
        for candidate in candidates {
            if let admission, !admission.allows(cores: cores, memory: memory, on: candidate.position)
                || !survivesLoss(of: candidate.position, adding: request, level: admission.level) {
                rejections[.admission(level: admission.level), default: 0] += 1
                continue
            }
            return .success(PlacementDecision(blade: blades[candidate.position].id, score: candidate.score, rejections: rejections))
        }
        return .failure(PlacementRefusal(blades: blades.count, rejections: rejections))
    }

    /// Decides and, when a blade fits, records the placement.
    public mutating func place(_ request: PlacementRequest) -> Result<PlacementDecision, PlacementRefusal> {
        let result = decide(request)
        if case .success(let decision) = result { record(Placement(request: request, blade: decision.blade)) }
        return result
    }

    /// Records a placement (a decision, or one read back from the store).
    public mutating func record(_ placement: Placement) {
        guard let position = index[placement.blade], placements[placement.request.name] == nil else { return }
        let request = placement.request
        placements[request.name] = placement
        onBlade[position].insert(request.name)
        usedCores[position] += policy.coreDemand(request)
        usedMemory[position] += policy.memoryDemand(request)
        usedDisk[position] += request.diskBytes
        tenants[position][request.tenant, default: 0] += 1
        if request.isolation == .exclusiveBlade { exclusive[position] = request.tenant }
        if let rule = request.antiAffinity {
            for level in DomainLevel.allCases {
                members[rule.group, default: [:]][level, default: [:]][blades[position].domain(level), default: 0] += 1
            }
        }
    }

    /// Removes a placement (the partition was deleted).
    public mutating func remove(_ name: String) {
        guard let placement = placements.removeValue(forKey: name), let position = index[placement.blade] else { return }
        onBlade[position].remove(name)
        let request = placement.request
        usedCores[position] -= policy.coreDemand(request)
        usedMemory[position] -= policy.memoryDemand(request)
        usedDisk[position] -= request.diskBytes
        tenants[position][request.tenant, default: 1] -= 1
        if tenants[position][request.tenant] == 0 { tenants[position][request.tenant] = nil }
        if request.isolation == .exclusiveBlade, tenants[position][request.tenant] == nil { exclusive[position] = nil }
        if let rule = request.antiAffinity {
            for level in DomainLevel.allCases {
                members[rule.group]?[level]?[blades[position].domain(level), default: 1] -= 1
            }
        }
    }

    // MARK: - Filters and scores

    private func reject(_ request: PlacementRequest, at position: Int, cores: Int, memory: UInt64) -> RejectionReason? {
        let blade = blades[position]
        if blade.condition != .ready { return .condition(blade.condition) }
        if request.vmm && !blade.nestedCapable { return .notNestedCapable }
        if blade.cores - usedCores[position] < cores { return .tooFewCores }
        if blade.memoryBytes - usedMemory[position] < memory { return .tooLittleMemory }
        if blade.diskBytes - usedDisk[position] < request.diskBytes { return .tooLittleDisk }
        if let holder = exclusive[position], holder != request.tenant { return .isolation }
        if request.isolation == .exclusiveBlade, tenants[position].keys.contains(where: { $0 != request.tenant }) { return .isolation }
        if let rule = request.antiAffinity, rule.hard {
            let count = members[rule.group]?[rule.level]?[blade.domain(rule.level)] ?? 0
            if count >= rule.maxPerDomain { return .antiAffinity(level: rule.level, group: rule.group) }
        }
        return nil
    }

    /// Higher is better: fill blades (best fit on cores, then memory), so that large whole-core
    /// slots stay free elsewhere; a slot left too small for most requests costs a little; soft
    /// anti-affinity costs for each group member already in the domain.
    private func score(_ request: PlacementRequest, at position: Int, cores: Int, memory: UInt64) -> Double {
        let blade = blades[position]
        let coresAfter = Double(usedCores[position] + cores) / Double(max(blade.cores, 1))
        let memoryAfter = Double(usedMemory[position] + memory) / Double(max(blade.memoryBytes, 1))
        var score = coresAfter + 0.5 * memoryAfter
        let left = blade.cores - usedCores[position] - cores
        if left > 0 && left < 2 { score -= 0.05 }
        if let rule = request.antiAffinity, !rule.hard {
            score -= Double(members[rule.group]?[rule.level]?[blade.domain(rule.level)] ?? 0)
        }
        return score
    }

    // MARK: - N+1

    /// The exact check for the domain the candidate is in: if that whole domain failed right
    /// after this placement, its partitions (the new one included) are re-placed, largest
    /// first and each on the fullest ready blade outside it that fits, honouring capacity,
    /// hard anti-affinity and exclusive blades. False when one does not fit. (Other domains
    /// are checked in aggregate by `AdmissionCheck`.)
    func survivesLoss(of position: Int, adding request: PlacementRequest, level: DomainLevel) -> Bool {
        let lost = blades[position].domain(level)
        guard let lostBlades = admissionDomains[lost] else { return true }
        var displaced = [request]
        for blade in lostBlades {
            for name in onBlade[blade] { displaced.append(placements[name]!.request) }
        }
        displaced.sort { policy.coreDemand($0) > policy.coreDemand($1) }
        // Survivors by free cores, so that each partition goes to the fullest blade that fits.
        let lostSet = Set(lostBlades)
        let maxCores = blades.map(\.cores).max() ?? 0
        var buckets = Array(repeating: [Int](), count: maxCores + 1)
        var freeCores = [Int: Int]()
        var freeMemory = [Int: UInt64]()
        for candidate in blades.indices where !lostSet.contains(candidate) && blades[candidate].condition == .ready {
            let free = blades[candidate].cores - usedCores[candidate]
            guard free > 0 else { continue }
            buckets[free].append(candidate)
            freeCores[candidate] = free
            freeMemory[candidate] = blades[candidate].memoryBytes - usedMemory[candidate]
        }
        // Group members move out of the lost domain: their counts there go.
        var moved: [String: [String: Int]] = [:]
        for partition in displaced {
            guard let rule = partition.antiAffinity, rule.hard, let placed = placements[partition.name],
                  let home = index[placed.blade].map({ blades[$0].domain(rule.level) }) else { continue }
            moved["\(rule.group)|\(rule.level.rawValue)", default: [:]][home, default: 0] -= 1
        }
        var extraTenants: [Int: Set<String>] = [:]
        var extraExclusive: [Int: String] = [:]
        for partition in displaced {
            let cores = policy.coreDemand(partition)
            let memory = policy.memoryDemand(partition)
            var chosen: (bucket: Int, slot: Int)?
            search: for free in stride(from: cores, through: maxCores, by: 1) {
                for (slot, candidate) in buckets[free].enumerated() {
                    guard freeMemory[candidate]! >= memory else { continue }
                    if let holder = exclusive[candidate] ?? extraExclusive[candidate], holder != partition.tenant { continue }
                    if partition.isolation == .exclusiveBlade {
                        let others = tenants[candidate].keys.contains { $0 != partition.tenant }
                            || (extraTenants[candidate]?.contains { $0 != partition.tenant } ?? false)
                        if others { continue }
                    }
                    if let rule = partition.antiAffinity, rule.hard {
                        let key = "\(rule.group)|\(rule.level.rawValue)"
                        let domain = blades[candidate].domain(rule.level)
                        let count = (members[rule.group]?[rule.level]?[domain] ?? 0) + (moved[key]?[domain] ?? 0)
                        if count >= rule.maxPerDomain { continue }
                    }
                    chosen = (free, slot)
                    break search
                }
            }
            guard let (free, slot) = chosen else { return false }
            let target = buckets[free].remove(at: slot)
            let left = free - cores
            if left > 0 { buckets[left].append(target) }
            freeMemory[target]! -= memory
            extraTenants[target, default: []].insert(partition.tenant)
            if partition.isolation == .exclusiveBlade { extraExclusive[target] = partition.tenant }
            if let rule = partition.antiAffinity, rule.hard {
                moved["\(rule.group)|\(rule.level.rawValue)", default: [:]][blades[target].domain(rule.level), default: 0] += 1
            }
        }
        return true
    }

    /// After a placement, for every domain D at the level, D's partitions must fit on the
    /// ready blades outside D (in cores and in memory, in aggregate).
    struct AdmissionCheck {
        let level: DomainLevel
        private var domainOf: [Int]
        private var demandCores: [Int]
        private var demandMemory: [UInt64]
        private var freeCores: [Int]
        private var freeMemory: [UInt64]
        private var totalFreeCores = 0
        private var totalFreeMemory: UInt64 = 0
        /// The smallest slack over all domains, the domain that has it, and the second smallest.
        private var coreSlack: (first: Int, domain: Int, second: Int) = (.max, -1, .max)
        private var memorySlack: (first: Int64, domain: Int, second: Int64) = (.max, -1, .max)

        init(state: PlacementState, level: DomainLevel) {
            self.level = level
            var domains: [String: Int] = [:]
            domainOf = state.blades.map { blade in
                let name = blade.domain(level)
                if let existing = domains[name] { return existing }
                domains[name] = domains.count
                return domains.count - 1
            }
            demandCores = Array(repeating: 0, count: domains.count)
            demandMemory = Array(repeating: 0, count: domains.count)
            freeCores = Array(repeating: 0, count: domains.count)
            freeMemory = Array(repeating: 0, count: domains.count)
            for position in state.blades.indices {
                let domain = domainOf[position]
                demandCores[domain] += state.usedCores[position]
                demandMemory[domain] += state.usedMemory[position]
                if state.blades[position].condition == .ready {
                    freeCores[domain] += state.blades[position].cores - state.usedCores[position]
                    freeMemory[domain] += state.blades[position].memoryBytes - state.usedMemory[position]
                }
            }
            totalFreeCores = freeCores.reduce(0, +)
            totalFreeMemory = freeMemory.reduce(0, +)
            for domain in 0..<domains.count {
                let cores = totalFreeCores - freeCores[domain] - demandCores[domain]
                if cores < coreSlack.first {
                    coreSlack = (cores, domain, coreSlack.first)
                } else if cores < coreSlack.second {
                    coreSlack.second = cores
                }
                let memory = Int64(totalFreeMemory) - Int64(freeMemory[domain]) - Int64(demandMemory[domain])
                if memory < memorySlack.first {
                    memorySlack = (memory, domain, memorySlack.first)
                } else if memory < memorySlack.second {
                    memorySlack.second = memory
                }
            }
        }

        /// Whether placing `cores` and `memory` on the blade at `position` keeps N+1.
        func allows(cores: Int, memory: UInt64, on position: Int) -> Bool {
            let domain = domainOf[position]
            // The blade's own domain: its demand grows; the survivors are unchanged.
            guard demandCores[domain] + cores <= totalFreeCores - freeCores[domain],
                  Int64(demandMemory[domain] + memory) <= Int64(totalFreeMemory) - Int64(freeMemory[domain]) else { return false }
            // Every other domain: the survivors lose what this placement takes.
            let otherCores = coreSlack.domain == domain ? coreSlack.second : coreSlack.first
            let otherMemory = memorySlack.domain == domain ? memorySlack.second : memorySlack.first
            return cores <= otherCores && Int64(memory) <= otherMemory
        }
    }
}
