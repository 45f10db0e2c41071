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

    public init(blades: Int, rejections: [RejectionReason: Int]) {
        self.blades = blades
        self.rejections = rejections
    }

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
    /// The N+1 loss plans this decision made or remade, kept by `record`.
    var plans: [String: PlacementState.LossPlan] = [:]
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
    private var admissionDomainNames: [String] = []
    /// Capacities and readiness by position (the N+1 plans read them in their inner loops).
    private var capacityCores: [Int] = []
    private var capacityMemory: [UInt64] = []
    private var capacityDisk: [UInt64] = []
    private var isReady: [Bool] = []
    private var maxBladeCores = 0
    /// The loss plan of each admission domain, valid for the current placements.
    private(set) var plans: [String: LossPlan] = [:]

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
            admissionDomainNames = admissionDomains.keys.sorted()
        }
        exclusive = Array(repeating: nil, count: blades.count)
        capacityCores = blades.map(\.cores)
        capacityMemory = blades.map(\.memoryBytes)
        capacityDisk = blades.map(\.diskBytes)
        isReady = blades.map { $0.condition == .ready }
        maxBladeCores = capacityCores.max() ?? 0
    }

    public func freeCores(_ blade: String) -> Int? { index[blade].map { blades[$0].cores - usedCores[$0] } }
    public func freeMemory(_ blade: String) -> UInt64? { index[blade].map { blades[$0].memoryBytes.clampedMinus(usedMemory[$0]) } }

    /// Changes a blade's condition (cordon, suspect, unreachable, ready).
    public mutating func setCondition(_ condition: BladeCondition, of blade: String) {
        if let position = index[blade], blades[position].condition != condition {
            blades[position].condition = condition
            isReady[position] = condition == .ready
            plans.removeAll()
        }
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
            var changedPlans: [String: LossPlan] = [:]
            if let admission {
                // The aggregate check is necessary and cheap; the plans decide.
                guard admission.allows(cores: cores, memory: memory, on: candidate.position),
                      let plans = admissionPlans(adding: request, at: candidate.position, level: admission.level) else {
                    rejections[.admission(level: admission.level), default: 0] += 1
                    continue
                }
                changedPlans = plans
            }
            var decision = PlacementDecision(blade: blades[candidate.position].id, score: candidate.score, rejections: rejections)
            decision.plans = changedPlans
            return .success(decision)
        }
        return .failure(PlacementRefusal(blades: blades.count, rejections: rejections))
    }

    /// Decides and, when a blade fits, records the placement.
    public mutating func place(_ request: PlacementRequest) -> Result<PlacementDecision, PlacementRefusal> {
        let result = decide(request)
        if case .success(let decision) = result { record(Placement(request: request, blade: decision.blade), decision: decision) }
        return result
    }

    /// Records a placement: a decision of `decide` (pass it, so that its N+1 plans are kept),
    /// or one read back from the store (the plans are then made again on the next decision).
    public mutating func record(_ placement: Placement, decision: PlacementDecision? = nil) {
        guard let position = index[placement.blade], placements[placement.request.name] == nil else { return }
        if let decision, decision.blade == placement.blade {
            for (domain, plan) in decision.plans { plans[domain] = plan }
        } else {
            plans.removeAll()
        }
        let request = placement.request
        placements[request.name] = placement
        onBlade[position].insert(request.name)
        usedCores[position] += policy.coreDemand(request)
        usedMemory[position] = usedMemory[position].clampedPlus(policy.memoryDemand(request))
        usedDisk[position] = usedDisk[position].clampedPlus(request.diskBytes)
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
        // Plans stay valid witnesses (capacity only grew), but the removed partition has no move.
        plans.removeAll()
        onBlade[position].remove(name)
        let request = placement.request
        usedCores[position] -= policy.coreDemand(request)
        usedMemory[position] = usedMemory[position].clampedMinus(policy.memoryDemand(request))
        usedDisk[position] = usedDisk[position].clampedMinus(request.diskBytes)
        tenants[position][request.tenant, default: 1] -= 1
        if tenants[position][request.tenant] == 0 { tenants[position][request.tenant] = nil }
        // The blade stays exclusive only while an exclusive partition remains on it (so that a
        // state built by removals decides as one rebuilt by `record` from what is left).
        let remaining = placements
        exclusive[position] = onBlade[position].sorted().compactMap { remaining[$0]?.request }
            .first { $0.isolation == .exclusiveBlade }?.tenant
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
        if blade.cores - usedCores[position] < cores || !vcpusFit(request, on: position) { return .tooFewCores }
        if blade.memoryBytes.clampedMinus(usedMemory[position]) < memory { return .tooLittleMemory }
        if blade.diskBytes.clampedMinus(usedDisk[position]) < request.diskBytes { return .tooLittleDisk }
        if let holder = exclusive[position], holder != request.tenant { return .isolation }
        if request.isolation == .exclusiveBlade, tenants[position].keys.contains(where: { $0 != request.tenant }) { return .isolation }
        if let rule = request.antiAffinity, rule.hard {
            let count = members[rule.group]?[rule.level]?[blade.domain(rule.level)] ?? 0
            if count >= rule.maxPerDomain { return .antiAffinity(level: rule.level, group: rule.group) }
        }
        return nil
    }

    /// A shared partition's logical CPUs time-share the blade's shared pool, but never more
    /// of them than the blade has cores.
    private func vcpusFit(_ request: PlacementRequest, on position: Int) -> Bool {
        if case .shared = request.cpuMode { return request.cores <= capacityCores[position] }
        return true
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

    /// How one domain's partitions would be re-placed if the whole domain failed: a witness
    /// that the cluster can absorb that loss. Kept per domain and reused while it stays valid.
    struct LossPlan: Sendable, Equatable {
        /// The domain whose loss this plan absorbs.
        var domain: String = ""
        /// Partition name -> the blade (position) it would move to.
        var targets: [String: Int] = [:]
        /// What the moves add to each target blade.
        var cores: [Int: Int] = [:]
        var memory: [Int: UInt64] = [:]
        var disk: [Int: UInt64] = [:]
        var tenants: [Int: Set<String>] = [:]
        var exclusiveTenants: [Int: Set<String>] = [:]
        /// Hard group members arriving in, and leaving, each domain: "group|level" -> domain -> count.
        var arrivals: [String: [String: Int]] = [:]
        var departures: [String: [String: Int]] = [:]
    }

    /// N+1, exactly: with `request` placed at `position`, every domain at the admission level
    /// must have a loss plan. The candidate's own domain is planned again; every other domain
    /// keeps its cached plan when the plan still holds with this placement, else is planned
    /// again. Returns the plans that changed, or nil when some domain's loss cannot be absorbed.
    func admissionPlans(adding request: PlacementRequest, at position: Int, level: DomainLevel) -> [String: LossPlan]? {
        var changed: [String: LossPlan] = [:]
        let own = blades[position].domain(level)
        guard let ownPlan = plan(losing: own, adding: request, at: position) else { return nil }
        changed[own] = ownPlan
        for domain in admissionDomainNames where domain != own {
            if let cached = plans[domain] {
                if holds(cached, adding: request, at: position) { continue }
                if let repaired = repair(cached, adding: request, at: position) {
                    changed[domain] = repaired
                    continue
                }
            }
            guard let fresh = plan(losing: domain, adding: request, at: position) else { return nil }
            changed[domain] = fresh
        }
        return changed
    }

    /// Whether `plan` stays a valid witness once `request` takes its place at `position`
    /// (outside the plan's domain).
    func holds(_ plan: LossPlan, adding request: PlacementRequest, at position: Int) -> Bool {
        let blade = blades[position]
        if blade.cores - usedCores[position] - policy.coreDemand(request) < plan.cores[position] ?? 0 { return false }
        if blade.memoryBytes.clampedMinus(usedMemory[position]).clampedMinus(policy.memoryDemand(request)) < plan.memory[position] ?? 0 { return false }
        if blade.diskBytes.clampedMinus(usedDisk[position]) < request.diskBytes.clampedPlus(plan.disk[position] ?? 0) { return false }
        if request.isolation == .exclusiveBlade, plan.tenants[position]?.contains(where: { $0 != request.tenant }) == true { return false }
        if plan.exclusiveTenants[position]?.contains(where: { $0 != request.tenant }) == true { return false }
        if let rule = request.antiAffinity, rule.hard {
            let key = "\(rule.group)|\(rule.level.rawValue)"
            let domain = blade.domain(rule.level)
            let count = (members[rule.group]?[rule.level]?[domain] ?? 0) - (plan.departures[key]?[domain] ?? 0)
                + (plan.arrivals[key]?[domain] ?? 0) + 1
            if count > rule.maxPerDomain { return false }
        }
        return true
    }

    /// Mends a plan that `request` at `position` breaks: the moves that land on that blade
    /// (or that clash with the request's tenant or group) go elsewhere, each to the emptiest
    /// blade that takes it; nil when one finds no place (the caller then plans afresh).
    func repair(_ plan: LossPlan, adding request: PlacementRequest, at position: Int) -> LossPlan? {
        var plan = plan
        let requestKey = request.antiAffinity.flatMap { $0.hard ? "\($0.group)|\($0.level.rawValue)" : nil }
        let requestDomain = request.antiAffinity.map { blades[position].domain($0.level) }
        // Moves that must go: all that land on the blade, and same-group arrivals in its domain.
        var evicted: [PlacementRequest] = []
        for (name, target) in plan.targets.sorted(by: { $0.key < $1.key }) {
            let moved = placements[name]!.request
            var clash = target == position
            if let requestKey, let rule = moved.antiAffinity, rule.hard, "\(rule.group)|\(rule.level.rawValue)" == requestKey,
               blades[target].domain(rule.level) == requestDomain {
                clash = true
            }
            guard clash else { continue }
            evicted.append(moved)
            plan.targets[name] = nil
            plan.cores[target, default: 0] -= policy.coreDemand(moved)
            plan.memory[target, default: 0] -= policy.memoryDemand(moved)
            plan.disk[target, default: 0] -= moved.diskBytes
            if let rule = moved.antiAffinity, rule.hard {
                plan.arrivals["\(rule.group)|\(rule.level.rawValue)", default: [:]][blades[target].domain(rule.level), default: 0] -= 1
            }
        }
        // Tenants and exclusive holders per target are rebuilt from the moves that stay.
        plan.tenants = [:]
        plan.exclusiveTenants = [:]
        for (name, target) in plan.targets {
            let moved = placements[name]!.request
            plan.tenants[target, default: []].insert(moved.tenant)
            if moved.isolation == .exclusiveBlade { plan.exclusiveTenants[target, default: []].insert(moved.tenant) }
        }
        let lost = Set(admissionDomains[plan.domain] ?? [])
        evicted.sort { policy.coreDemand($0) != policy.coreDemand($1) ? policy.coreDemand($0) > policy.coreDemand($1) : $0.name < $1.name }
        for moved in evicted {
            let cores = policy.coreDemand(moved)
            let memory = policy.memoryDemand(moved)
            var best: (position: Int, free: Int)?
            for candidate in blades.indices where candidate != position && isReady[candidate] && !lost.contains(candidate) {
                let free = capacityCores[candidate] - usedCores[candidate] - (plan.cores[candidate] ?? 0)
                guard free >= cores, free > best?.free ?? -1, vcpusFit(moved, on: candidate) else { continue }
                if moved.vmm && !blades[candidate].nestedCapable { continue }
                guard capacityMemory[candidate].clampedMinus(usedMemory[candidate]).clampedMinus(plan.memory[candidate] ?? 0) >= memory,
                      capacityDisk[candidate].clampedMinus(usedDisk[candidate]).clampedMinus(plan.disk[candidate] ?? 0) >= moved.diskBytes else { continue }
                if let holder = exclusive[candidate], holder != moved.tenant { continue }
                if plan.exclusiveTenants[candidate]?.contains(where: { $0 != moved.tenant }) == true { continue }
                if moved.isolation == .exclusiveBlade,
                   tenants[candidate].keys.contains(where: { $0 != moved.tenant }) || plan.tenants[candidate]?.contains(where: { $0 != moved.tenant }) == true {
                    continue
                }
                if let rule = moved.antiAffinity, rule.hard {
                    let key = "\(rule.group)|\(rule.level.rawValue)"
                    let domain = blades[candidate].domain(rule.level)
                    var count = (members[rule.group]?[rule.level]?[domain] ?? 0) - (plan.departures[key]?[domain] ?? 0) + (plan.arrivals[key]?[domain] ?? 0)
                    if key == requestKey, domain == requestDomain { count += 1 }
                    if count >= rule.maxPerDomain { continue }
                }
                best = (candidate, free)
            }
            guard let target = best?.position else { return nil }
            plan.targets[moved.name] = target
            plan.cores[target, default: 0] += cores
            plan.memory[target, default: 0] += memory
            plan.disk[target, default: 0] += moved.diskBytes
            plan.tenants[target, default: []].insert(moved.tenant)
            if moved.isolation == .exclusiveBlade { plan.exclusiveTenants[target, default: []].insert(moved.tenant) }
            if let rule = moved.antiAffinity, rule.hard {
                plan.arrivals["\(rule.group)|\(rule.level.rawValue)", default: [:]][blades[target].domain(rule.level), default: 0] += 1
            }
        }
        // The request itself must not break what stays: checked as for a cached plan.
        return holds(plan, adding: request, at: position) ? plan : nil
    }

    /// Re-places the partitions of domain `lost` (with `request` added at `position`), largest
    /// first, each on the fullest ready blade outside `lost` that fits, honouring capacity,
    /// hard anti-affinity and exclusive blades; nil when one does not fit.
    func plan(losing lost: String, adding request: PlacementRequest, at position: Int) -> LossPlan? {
        // Emptiest blades first leave the fuller blades, where best fit puts new partitions,
        // out of the plan, so it stays valid longer; fullest first packs tighter when that fails.
        plan(losing: lost, adding: request, at: position, emptiestFirst: true)
            ?? plan(losing: lost, adding: request, at: position, emptiestFirst: false)
    }

    func plan(losing lost: String, adding request: PlacementRequest, at position: Int, emptiestFirst: Bool) -> LossPlan? {
        guard policy.admissionLevel != nil, let lostBlades = admissionDomains[lost] else { return LossPlan(domain: lost) }
        var isLost = Array(repeating: false, count: blades.count)
        for blade in lostBlades { isLost[blade] = true }
        let requestInside = isLost[position]
        var displaced: [(request: PlacementRequest, home: Int)] = requestInside ? [(request, position)] : []
        for blade in lostBlades {
            for name in onBlade[blade] { displaced.append((placements[name]!.request, blade)) }
        }
        displaced.sort { policy.coreDemand($0.request) != policy.coreDemand($1.request)
            ? policy.coreDemand($0.request) > policy.coreDemand($1.request) : $0.request.name < $1.request.name }
        // The request, placed outside the lost domain, takes its share of its blade.
        var hypotheticalCores = 0, hypotheticalMemory: UInt64 = 0, hypotheticalDisk: UInt64 = 0
        if !requestInside {
            hypotheticalCores = policy.coreDemand(request)
            hypotheticalMemory = policy.memoryDemand(request)
            hypotheticalDisk = request.diskBytes
        }
        let maxCores = maxBladeCores
        var buckets = Array(repeating: [Int](), count: maxCores + 1)
        var freeMemory = Array(repeating: UInt64(0), count: blades.count)
        var freeDisk = Array(repeating: UInt64(0), count: blades.count)
        for candidate in blades.indices where !isLost[candidate] && isReady[candidate] {
            let extraCores = candidate == position ? hypotheticalCores : 0
            let free = capacityCores[candidate] - usedCores[candidate] - extraCores
            guard free > 0 else { continue }
            buckets[free].append(candidate)
            freeMemory[candidate] = capacityMemory[candidate].clampedMinus(usedMemory[candidate]).clampedMinus(candidate == position ? hypotheticalMemory : 0)
            freeDisk[candidate] = capacityDisk[candidate].clampedMinus(usedDisk[candidate]).clampedMinus(candidate == position ? hypotheticalDisk : 0)
        }
        var result = LossPlan(domain: lost)
        // Group members leave the lost domain; the request, placed outside, joins its domains.
        var counts: [String: [String: Int]] = [:]
        func count(_ rule: AntiAffinity, _ domain: String) -> Int {
            (members[rule.group]?[rule.level]?[domain] ?? 0) + (counts["\(rule.group)|\(rule.level.rawValue)"]?[domain] ?? 0)
        }
        for (partition, home) in displaced {
            guard let rule = partition.antiAffinity, rule.hard, partition.name != request.name || !requestInside else { continue }
            let key = "\(rule.group)|\(rule.level.rawValue)"
            counts[key, default: [:]][blades[home].domain(rule.level), default: 0] -= 1
            result.departures[key, default: [:]][blades[home].domain(rule.level), default: 0] += 1
        }
        if !requestInside, let rule = request.antiAffinity, rule.hard {
            counts["\(rule.group)|\(rule.level.rawValue)", default: [:]][blades[position].domain(rule.level), default: 0] += 1
        }
        var extraTenants: [Int: Set<String>] = [:]
        var extraExclusive: [Int: String] = [:]
        if !requestInside {
            extraTenants[position, default: []].insert(request.tenant)
            if request.isolation == .exclusiveBlade { extraExclusive[position] = request.tenant }
        }
        for (partition, _) in displaced {
            let cores = policy.coreDemand(partition)
            let memory = policy.memoryDemand(partition)
            var chosen: (bucket: Int, slot: Int)?
            guard cores <= maxCores else { return nil }
            search: for step in 0...(maxCores - cores) {
                let free = emptiestFirst ? maxCores - step : cores + step
                // Among equals, the blades best fit takes last (it breaks ties by lowest id).
                let slots = buckets[free].count
                for offset in 0..<slots {
                    let slot = emptiestFirst ? slots - 1 - offset : offset
                    let candidate = buckets[free][slot]
                    guard freeMemory[candidate] >= memory, freeDisk[candidate] >= partition.diskBytes,
                          vcpusFit(partition, on: candidate) else { continue }
                    if partition.vmm && !blades[candidate].nestedCapable { continue }
                    if let holder = exclusive[candidate] ?? extraExclusive[candidate], holder != partition.tenant { continue }
                    if partition.isolation == .exclusiveBlade {
                        let others = tenants[candidate].keys.contains { $0 != partition.tenant }
                            || (extraTenants[candidate]?.contains { $0 != partition.tenant } ?? false)
                        if others { continue }
                    }
                    if let rule = partition.antiAffinity, rule.hard, count(rule, blades[candidate].domain(rule.level)) >= rule.maxPerDomain {
                        continue
                    }
                    chosen = (free, slot)
                    break search
                }
            }
            guard let (free, slot) = chosen else { return nil }
            let target = buckets[free].remove(at: slot)
            let left = free - cores
            if left > 0 { buckets[left].append(target) }
            freeMemory[target] -= memory
            freeDisk[target] -= partition.diskBytes
            extraTenants[target, default: []].insert(partition.tenant)
            if partition.isolation == .exclusiveBlade { extraExclusive[target] = partition.tenant }
            result.targets[partition.name] = target
            result.cores[target, default: 0] += cores
            result.memory[target, default: 0] += memory
            result.disk[target, default: 0] += partition.diskBytes
            result.tenants[target, default: []].insert(partition.tenant)
            if partition.isolation == .exclusiveBlade { result.exclusiveTenants[target, default: []].insert(partition.tenant) }
            if let rule = partition.antiAffinity, rule.hard {
                let key = "\(rule.group)|\(rule.level.rawValue)"
                counts[key, default: [:]][blades[target].domain(rule.level), default: 0] += 1
                result.arrivals[key, default: [:]][blades[target].domain(rule.level), default: 0] += 1
            }
        }
        return result
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
                demandMemory[domain] = demandMemory[domain].clampedPlus(state.usedMemory[position])
                if state.blades[position].condition == .ready {
                    freeCores[domain] += state.blades[position].cores - state.usedCores[position]
                    freeMemory[domain] = freeMemory[domain].clampedPlus(state.blades[position].memoryBytes.clampedMinus(state.usedMemory[position]))
                }
            }
            totalFreeCores = freeCores.reduce(0, +)
            totalFreeMemory = freeMemory.reduce(UInt64(0)) { $0.clampedPlus($1) }
            for domain in 0..<domains.count {
                let cores = totalFreeCores - freeCores[domain] - demandCores[domain]
                if cores < coreSlack.first {
                    coreSlack = (cores, domain, coreSlack.first)
                } else if cores < coreSlack.second {
                    coreSlack.second = cores
                }
                let memory = Int64(clampingBytes: totalFreeMemory.clampedMinus(freeMemory[domain])) - Int64(clampingBytes: demandMemory[domain])
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
                  demandMemory[domain].clampedPlus(memory) <= totalFreeMemory.clampedMinus(freeMemory[domain]) else { return false }
            // Every other domain: the survivors lose what this placement takes.
            let otherCores = coreSlack.domain == domain ? coreSlack.second : coreSlack.first
            let otherMemory = memorySlack.domain == domain ? memorySlack.second : memorySlack.first
            return cores <= otherCores && Int64(clampingBytes: memory) <= otherMemory
        }
    }
}
