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
    /// The N+1 search ran out of budget before it found a plan or proved there is none.
    case admissionUndecided(level: DomainLevel)
    /// A reason shown to a tenant in place of one about other tenants (isolation).
    case unavailable
    /// The blade the partition runs on now (a migration's target must be another).
    case currentBlade

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
        case .admissionUndecided(let level): return "N+1 at \(level.rawValue) level not decided within the search budget"
        case .unavailable: return "not available"
        case .currentBlade: return "its current blade"
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
    var plans: [String: LossPlan] = [:]
}

/// The cluster as placement tracks it: blades, what is placed where, and the counts that
/// make a decision cheap (per-blade use, tenants per blade, group members per domain, and
/// per-domain use for the N+1 check). Pure: no I/O, no clocks.
public struct PlacementState: Sendable, Occupancy {
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
    /// The domains of the admission level, sorted.
    private var admissionDomainNames: [String] = []
    /// Each blade's admission domain, as an index into `admissionDomainNames` (empty without N+1).
    private(set) var admissionDomainOf: [Int] = []
    /// Each admission domain's partitions in the order a loss plan re-places them, and the
    /// group counts they would take with them: kept as placements come and go.
    private(set) var displacedBy: [[DisplacedPartition]] = []
    private(set) var departuresBy: [[GroupDomain: Int]] = []
    /// Capacities by position (the rules read them in their inner loops).
    private var capacityCores: [Int] = []
    private var capacityMemory: [UInt64] = []
    private var capacityDisk: [UInt64] = []
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
            admissionDomainNames = Set(blades.map { $0.domain(level) }).sorted()
            let indexOf = Dictionary(uniqueKeysWithValues: admissionDomainNames.enumerated().map { ($0.element, $0.offset) })
            admissionDomainOf = blades.map { indexOf[$0.domain(level)]! }
            displacedBy = Array(repeating: [], count: admissionDomainNames.count)
            departuresBy = Array(repeating: [:], count: admissionDomainNames.count)
        }
        exclusive = Array(repeating: nil, count: blades.count)
        capacityCores = blades.map(\.cores)
        capacityMemory = blades.map(\.memoryBytes)
        capacityDisk = blades.map(\.diskBytes)
    }

    /// Candidate checks one decision's N+1 searches may spend together; past it, the
    /// remaining candidates are refused as undecided.
    static let searchBudget = 5_000

    public func freeCores(_ blade: String) -> Int? { index[blade].map { blades[$0].cores - usedCores[$0] } }
    public func freeMemory(_ blade: String) -> UInt64? { index[blade].map { blades[$0].memoryBytes.clampedMinus(usedMemory[$0]) } }

    /// Changes a blade's condition (cordon, suspect, unreachable, ready).
    public mutating func setCondition(_ condition: BladeCondition, of blade: String) {
        if let position = index[blade], blades[position].condition != condition {
            blades[position].condition = condition
            plans.removeAll()
        }
    }

    /// Chooses a blade for `request`, or says why none fits. Does not change the state.
    /// `among`: only these blades are considered (a migration to a named blade); `excluding`:
    /// these are refused as the partition's current blade (a migration's source).
    public func decide(_ request: PlacementRequest, among: Set<String>? = nil,
                       excluding: Set<String> = []) -> Result<PlacementDecision, PlacementRefusal> {
        let cores = policy.coreDemand(request)
        let memory = policy.memoryDemand(request)
        var rejections: [RejectionReason: Int] = [:]
        var candidates: [(position: Int, score: Double)] = []
        var considered = 0
        for position in blades.indices {
            if let among, !among.contains(blades[position].id) { continue }
            considered += 1
            if excluding.contains(blades[position].id) {
                rejections[.currentBlade, default: 0] += 1
                continue
            }
            if let reason = PlacementRules.rejection(request, at: position, in: self) {
                rejections[reason, default: 0] += 1
                continue
            }
            candidates.append((position, score(request, at: position, cores: cores, memory: memory)))
        }
        candidates.sort { $0.score != $1.score ? $0.score > $1.score : blades[$0.position].id < blades[$1.position].id }
        let admission = policy.admissionLevel.map { AdmissionCheck(state: self, level: $0) }
        var budget = Self.searchBudget
        let order = CandidateOrder(self)
        for candidate in candidates {
            var changedPlans: [String: LossPlan] = [:]
            if let admission {
                // The aggregate check is necessary and cheap; the plans decide.
                guard admission.allows(cores: cores, memory: memory, on: candidate.position) else {
                    rejections[.admission(level: admission.level), default: 0] += 1
                    continue
                }
                switch admissionPlans(adding: request, at: candidate.position, level: admission.level, order: order, budget: &budget) {
                case .admitted(let plans):
                    changedPlans = plans
                case .refused(let undecided):
                    rejections[undecided ? .admissionUndecided(level: admission.level) : .admission(level: admission.level), default: 0] += 1
                    continue
                }
            }
            var decision = PlacementDecision(blade: blades[candidate.position].id, score: candidate.score, rejections: rejections)
            decision.plans = changedPlans
            return .success(decision)
        }
        return .failure(PlacementRefusal(blades: considered, rejections: rejections))
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
        if policy.admissionLevel != nil {
            let domain = admissionDomainOf[position]
            let entry = DisplacedPartition(request, policy: policy)
            let at = displacedBy[domain].firstIndex { entry.goesBefore($0) } ?? displacedBy[domain].count
            displacedBy[domain].insert(entry, at: at)
            if let rule = request.antiAffinity {
                departuresBy[domain][GroupDomain(group: rule.group, level: rule.level, domain: blades[position].domain(rule.level)), default: 0] -= 1
            }
        }
        if let rule = request.antiAffinity {
            for level in DomainLevel.allCases {
                members[rule.group, default: [:]][level, default: [:]][blades[position].domain(level), default: 0] += 1
            }
        }
    }

    /// Removes a placement (the partition was deleted).
    public mutating func remove(_ name: String) {
        guard let placement = placements.removeValue(forKey: name), let position = index[placement.blade] else { return }
        // Plans stay valid witnesses (capacity only grew, counts only fell); the removed
        // partition's move goes (its blade stays marked as touched, which only costs a check).
        for domain in plans.keys {
            guard let target = plans[domain]?.targets.removeValue(forKey: name) else { continue }
            plans[domain]?.overlay.land(placement.request, on: target, blade: blades[target], policy: policy, sign: -1)
        }
        onBlade[position].remove(name)
        let request = placement.request
        usedCores[position] -= policy.coreDemand(request)
        usedMemory[position] = usedMemory[position].clampedMinus(policy.memoryDemand(request))
        usedDisk[position] = usedDisk[position].clampedMinus(request.diskBytes)
        if policy.admissionLevel != nil {
            let domain = admissionDomainOf[position]
            displacedBy[domain].removeAll { $0.request.name == name }
            if let rule = request.antiAffinity {
                departuresBy[domain][GroupDomain(group: rule.group, level: rule.level, domain: blades[position].domain(rule.level)), default: 0] += 1
            }
        }
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

    func condition(_ position: Int) -> BladeCondition { blades[position].condition }
    func freeCores(_ position: Int) -> Int { capacityCores[position] - usedCores[position] }
    func freeMemory(_ position: Int) -> UInt64 { capacityMemory[position].clampedMinus(usedMemory[position]) }
    func freeDisk(_ position: Int) -> UInt64 { capacityDisk[position].clampedMinus(usedDisk[position]) }
    func exclusiveHolder(_ position: Int) -> String? { exclusive[position] }
    func hasTenant(otherThan tenant: String, _ position: Int) -> Bool { tenants[position].keys.contains { $0 != tenant } }
    func members(_ group: String, _ level: DomainLevel, _ domain: String) -> Int { members[group]?[level]?[domain] ?? 0 }

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

    /// What N+1 says about `request` at `position`: the plans that changed, or why not.
    enum Admission {
        case admitted([String: LossPlan])
        case refused(undecided: Bool)
    }

    /// N+1 with `request` placed at `position`: every domain at the admission level must have
    /// a loss plan. The candidate's own domain keeps its plan with one more move when the
    /// request finds a target on top of it, else is planned again; every other domain keeps
    /// its plan when the placement cannot touch it, or when the moves it touches still obey
    /// the rules with the request in place, else is planned again. A search tries the kept
    /// plan's moves first.
    func admissionPlans(adding request: PlacementRequest, at position: Int, level: DomainLevel, order: CandidateOrder,
                        budget: inout Int) -> Admission {
        var changed: [String: LossPlan] = [:]
        let ownIndex = admissionDomainOf[position]
        let group = request.antiAffinity.flatMap { $0.hard ? GroupDomain(group: $0.group, level: $0.level, domain: blades[position].domain($0.level)) : nil }
        for index in [ownIndex] + admissionDomainNames.indices.filter({ $0 != ownIndex }) {
            let domain = admissionDomainNames[index]
            let kept = plans[domain]
            if index == ownIndex, let kept, let extended = extend(kept, lost: index, with: request, order: order, budget: &budget) {
                changed[domain] = extended
                continue
            }
            if index != ownIndex, let kept {
                if !kept.isTouched(by: position, group: group) { continue }
                switch mend(kept, lost: index, adding: request, at: position, order: order, budget: &budget) {
                case .holds: continue
                case .mended(let plan):
                    changed[domain] = plan
                    continue
                case .failed: break
                }
            }
            var view = PlanView(state: self, lost: index)
            var entries = displacedBy[index]
            if index == ownIndex {
                let entry = DisplacedPartition(request, policy: policy)
                entries.insert(entry, at: entries.firstIndex { entry.goesBefore($0) } ?? entries.count)
            } else {
                view.land(request, on: position)
            }
            var search = LossPlanSearch(view: view, entries: entries, hint: kept?.targets ?? [:], order: order)
            switch search.run(budget: &budget) {
            case .found(let targets):
                var overlay = search.overlay
                if index != ownIndex { overlay.land(request, on: position, blade: blades[position], policy: policy, sign: -1) }
                changed[domain] = LossPlan(domain: domain, targets: targets, overlay: overlay)
            case .impossible: return .refused(undecided: false)
            case .undecided: return .refused(undecided: true)
            }
        }
        return .admitted(changed)
    }

    /// `plan` (for the request's own domain `lost`) with one more move: the request itself,
    /// to the first blade that takes it on top of the plan's moves; nil when none does.
    func extend(_ plan: LossPlan, lost: Int, with request: PlacementRequest, order: CandidateOrder, budget: inout Int) -> LossPlan? {
        var view = PlanView(state: self, lost: lost, overlay: plan.overlay)
        for candidate in order.blades where !view.isLost(candidate) {
            guard budget > 0 else { return nil }
            budget -= 1
            guard PlacementRules.rejection(request, at: candidate, in: view) == nil else { continue }
            view.land(request, on: candidate)
            var extended = plan
            extended.targets[request.name] = candidate
            extended.overlay = view.overlay
            return extended
        }
        return nil
    }

    enum Mending {
        case holds
        case mended(LossPlan)
        case failed
    }

    /// `plan` (for domain `lost`, outside the request's) with `request` placed at `position`:
    /// the moves the placement touches (onto that blade, and same-group ones into the same
    /// domain) are taken back and placed again by the search, the others kept; `holds` when
    /// they go where they were.
    func mend(_ plan: LossPlan, lost: Int, adding request: PlacementRequest, at position: Int, order: CandidateOrder,
              budget: inout Int) -> Mending {
        var view = PlanView(state: self, lost: lost, overlay: plan.overlay)
        view.land(request, on: position)
        let rule = request.antiAffinity.flatMap { $0.hard ? $0 : nil }
        var suspects: [DisplacedPartition] = []
        var hint: [String: Int] = [:]
        for (name, target) in plan.targets {
            guard let moved = placements[name]?.request else { continue }
            var touched = target == position
            if let rule, let theirs = moved.antiAffinity, theirs.group == rule.group,
               blades[target].domain(rule.level) == blades[position].domain(rule.level) {
                touched = true
            }
            guard touched else { continue }
            view.land(moved, on: target, sign: -1)
            suspects.append(DisplacedPartition(moved, policy: policy))
            hint[name] = target
        }
        suspects.sort { $0.goesBefore($1) }
        var search = LossPlanSearch(view: view, entries: suspects, hint: hint, order: order)
        guard case .found(let targets) = search.run(budget: &budget) else { return .failed }
        if targets == hint { return .holds }
        var overlay = search.overlay
        overlay.land(request, on: position, blade: blades[position], policy: policy, sign: -1)
        var mended = plan
        for (name, target) in targets { mended.targets[name] = target }
        mended.overlay = overlay
        return .mended(mended)
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
