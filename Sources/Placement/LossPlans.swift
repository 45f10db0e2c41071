/// N+1 admission: for every domain at the admission level, a loss plan must exist that
/// re-places all of that domain's partitions on the ready blades outside it, obeying every
/// placement rule (`PlacementRules`) as a decision does. A plan is found by a depth-first
/// search with pruning, so that "no plan" is a proof, not a heuristic's failure; the search
/// has a budget, and a domain it cannot decide within it counts as refused (and says so).

/// A group's members in one domain (the key of the counts a plan changes).
struct GroupDomain: Hashable, Sendable {
    var group: String
    var level: DomainLevel
    var domain: String
}

/// What a loss plan's moves add to the blades they land on (sparse: by position).
struct PlanOverlay: Sendable, Equatable {
    struct Load: Sendable, Equatable {
        var cores = 0
        var memory: UInt64 = 0
        var disk: UInt64 = 0
        var partitions = 0
    }

    var loads: [Int: Load] = [:]
    var tenants: [Int: [String: Int]] = [:]
    var exclusive: [Int: [String: Int]] = [:]
    /// Group members arriving in each group domain.
    var arrivals: [GroupDomain: Int] = [:]

    /// Like `land`, for a delta over a kept overlay: its loads may go below zero (a kept move
    /// taken back); memory and disk are kept as two's-complement sums.
    mutating func landSigned(_ request: PlacementRequest, on position: Int, blade: BladeSnapshot, policy: PlacementPolicy, sign: Int) {
        var load = loads[position] ?? Load()
        load.cores += sign * policy.coreDemand(request)
        let memory = policy.memoryDemand(request)
        load.memory = sign > 0 ? load.memory &+ memory : load.memory &- memory
        load.disk = sign > 0 ? load.disk &+ request.diskBytes : load.disk &- request.diskBytes
        load.partitions += sign
        loads[position] = load.partitions == 0 && load.cores == 0 && load.memory == 0 && load.disk == 0 ? nil : load
        tenants[position, default: [:]][request.tenant, default: 0] += sign
        if request.isolation == .exclusiveBlade { exclusive[position, default: [:]][request.tenant, default: 0] += sign }
        if let rule = request.antiAffinity {
            arrivals[GroupDomain(group: rule.group, level: rule.level, domain: blade.domain(rule.level)), default: 0] += sign
        }
    }

    /// `request` lands on `position` (`sign` -1 takes it back).
    mutating func land(_ request: PlacementRequest, on position: Int, blade: BladeSnapshot, policy: PlacementPolicy, sign: Int) {
        var load = loads[position] ?? Load()
        load.cores += sign * policy.coreDemand(request)
        let memory = policy.memoryDemand(request)
        load.memory = sign > 0 ? load.memory.clampedPlus(memory) : load.memory.clampedMinus(memory)
        load.disk = sign > 0 ? load.disk.clampedPlus(request.diskBytes) : load.disk.clampedMinus(request.diskBytes)
        load.partitions += sign
        loads[position] = load.partitions == 0 ? nil : load
        tenants[position, default: [:]][request.tenant, default: 0] += sign
        if request.isolation == .exclusiveBlade { exclusive[position, default: [:]][request.tenant, default: 0] += sign }
        if let rule = request.antiAffinity {
            arrivals[GroupDomain(group: rule.group, level: rule.level, domain: blade.domain(rule.level)), default: 0] += sign
        }
    }
}

/// How one domain's partitions would be re-placed if the whole domain failed: a witness that
/// the cluster can absorb that loss. Kept per domain and reused while it stays valid.
struct LossPlan: Sendable, Equatable {
    /// The domain whose loss this plan absorbs.
    var domain: String
    /// Partition name -> the blade (position) it would move to.
    var targets: [String: Int] = [:]
    /// What the moves add to their targets.
    var overlay = PlanOverlay()

    /// Whether a placement at `position` of a member of `group` (nil: of no hard group) can
    /// break this plan: only when a move lands on that blade or a member of the same hard
    /// group arrives in the same domain.
    func isTouched(by position: Int, group: GroupDomain?) -> Bool {
        if overlay.loads[position] != nil { return true }
        if let group, (overlay.arrivals[group] ?? 0) > 0 { return true }
        return false
    }
}

/// The result of a search for a loss plan.
enum PlanOutcome {
    case found(targets: [String: Int])
    /// Proved: no plan exists.
    case impossible
    /// The budget ran out first.
    case undecided
}

/// The cluster as a loss plan leaves it: the lost domain's blades unreachable, its partitions
/// (and the request being decided) moved onto the others. An overlay over the live state.
struct PlanView: Occupancy {
    let state: PlacementState
    /// The lost domain (an admission domain index).
    let lost: Int
    /// The kept plan's moves (shared, never copied), and the moves made since on top.
    private let base: PlanOverlay
    private(set) var delta = PlanOverlay()

    init(state: PlacementState, lost: Int, overlay: PlanOverlay = PlanOverlay()) {
        self.state = state
        self.lost = lost
        self.base = overlay
    }

    /// Every move: the kept ones and those since.
    var overlay: PlanOverlay {
        var merged = base
        for (position, load) in delta.loads {
            var sum = merged.loads[position] ?? PlanOverlay.Load()
            sum.cores += load.cores
            sum.memory = sum.memory &+ load.memory
            sum.disk = sum.disk &+ load.disk
            sum.partitions += load.partitions
            merged.loads[position] = sum.partitions == 0 ? nil : sum
        }
        for (position, counts) in delta.tenants { merged.tenants[position, default: [:]].merge(counts, uniquingKeysWith: +) }
        for (position, counts) in delta.exclusive { merged.exclusive[position, default: [:]].merge(counts, uniquingKeysWith: +) }
        merged.arrivals.merge(delta.arrivals, uniquingKeysWith: +)
        return merged
    }

    func isLost(_ position: Int) -> Bool { state.admissionDomainOf[position] == lost }

    private func load(_ position: Int) -> PlanOverlay.Load? {
        let kept = base.loads[position], since = delta.loads[position]
        guard let since else { return kept }
        guard let kept else { return since }
        return PlanOverlay.Load(cores: kept.cores + since.cores, memory: kept.memory &+ since.memory,
                                disk: kept.disk &+ since.disk, partitions: kept.partitions + since.partitions)
    }

    var blades: [BladeSnapshot] { state.blades }
    var policy: PlacementPolicy { state.policy }
    func condition(_ position: Int) -> BladeCondition { isLost(position) ? .unreachable : state.condition(position) }
    func freeCores(_ position: Int) -> Int { state.freeCores(position) - (load(position)?.cores ?? 0) }
    func freeMemory(_ position: Int) -> UInt64 { state.freeMemory(position).clampedMinus(load(position)?.memory ?? 0) }
    func freeDisk(_ position: Int) -> UInt64 { state.freeDisk(position).clampedMinus(load(position)?.disk ?? 0) }

    /// Partitions of `tenant` the moves put on `position` (kept and since).
    private func moved(_ counts: KeyPath<PlanOverlay, [Int: [String: Int]]>, _ position: Int) -> [String: Int] {
        let kept = base[keyPath: counts][position] ?? [:], since = delta[keyPath: counts][position] ?? [:]
        return since.isEmpty ? kept : kept.merging(since, uniquingKeysWith: +)
    }

    func exclusiveHolder(_ position: Int) -> String? {
        if let holder = state.exclusiveHolder(position) { return holder }
        guard load(position) != nil else { return nil }
        return moved(\.exclusive, position).first { $0.value > 0 }?.key
    }

    func hasTenant(otherThan tenant: String, _ position: Int) -> Bool {
        if state.hasTenant(otherThan: tenant, position) { return true }
        guard load(position) != nil else { return false }
        return moved(\.tenants, position).contains { $0.key != tenant && $0.value > 0 }
    }

    func members(_ group: String, _ level: DomainLevel, _ domain: String) -> Int {
        let live = state.members(group, level, domain)
        let departures = state.departuresBy[lost]
        if departures.isEmpty && base.arrivals.isEmpty && delta.arrivals.isEmpty { return live }
        let key = GroupDomain(group: group, level: level, domain: domain)
        return live + (departures[key] ?? 0) + (base.arrivals[key] ?? 0) + (delta.arrivals[key] ?? 0)
    }

    /// `request` lands on `position` (`sign` -1 takes it back).
    mutating func land(_ request: PlacementRequest, on position: Int, sign: Int = 1) {
        delta.landSigned(request, on: position, blade: blades[position], policy: policy, sign: sign)
    }

    /// Free cores and memory on the ready blades outside the lost domain, in aggregate, as an
    /// upper bound for the search's pruning: the live totals (moves only take from them).
    func aggregateFree(_ order: CandidateOrder) -> (cores: Int, memory: UInt64) {
        (order.totalFreeCores - order.freeCoresByDomain[lost], order.totalFreeMemory.clampedMinus(order.freeMemoryByDomain[lost]))
    }
}

/// A partition of a domain as a loss plan re-places it: largest first (cores, then memory),
/// interchangeable ones next to each other.
struct DisplacedPartition: Sendable {
    let request: PlacementRequest
    let cores: Int
    let memory: UInt64
    /// What makes two partitions interchangeable in a plan, besides their demand.
    let kind: String

    init(_ request: PlacementRequest, policy: PlacementPolicy) {
        self.request = request
        cores = policy.coreDemand(request)
        memory = policy.memoryDemand(request)
        var text = "\(request.tenant)|\(request.vmm)|\(request.isolation == .exclusiveBlade)|\(request.diskBytes)"
        if case .shared(let ratio) = request.cpuMode { text += "|s\(request.cores)/\(ratio)" }
        if let rule = request.antiAffinity { text += "|\(rule.group)/\(rule.level.rawValue)/\(rule.hard)/\(rule.maxPerDomain)" }
        kind = text
    }

    func goesBefore(_ other: DisplacedPartition) -> Bool {
        if cores != other.cores { return cores > other.cores }
        if memory != other.memory { return memory > other.memory }
        return kind != other.kind ? kind < other.kind : request.name < other.request.name
    }

    func isInterchangeable(with other: DisplacedPartition) -> Bool {
        cores == other.cores && memory == other.memory && kind == other.kind
    }
}

/// The ready blades, emptiest first (by free cores, then position): the order a loss plan
/// tries targets in (first fit decreasing), made once per decision.
struct CandidateOrder {
    let blades: [Int]
    /// Each blade's index in `blades` (-1: not ready).
    let rank: [Int]

    /// Free cores and memory of the ready blades (each at least 0), by admission domain and in all.
    let freeCoresByDomain: [Int]
    let freeMemoryByDomain: [UInt64]
    let totalFreeCores: Int
    let totalFreeMemory: UInt64

    init(_ state: PlacementState) {
        let ready = state.blades.indices.filter { state.condition($0) == .ready }
        blades = ready.sorted { state.freeCores($0) != state.freeCores($1) ? state.freeCores($0) > state.freeCores($1) : $0 < $1 }
        var rank = Array(repeating: -1, count: state.blades.count)
        for (index, blade) in blades.enumerated() { rank[blade] = index }
        self.rank = rank
        let domains = (state.admissionDomainOf.max() ?? -1) + 1
        var cores = Array(repeating: 0, count: domains), memory = Array(repeating: UInt64(0), count: domains)
        for position in ready where domains > 0 {
            let domain = state.admissionDomainOf[position]
            cores[domain] += max(0, state.freeCores(position))
            memory[domain] = memory[domain].clampedPlus(state.freeMemory(position))
        }
        freeCoresByDomain = cores
        freeMemoryByDomain = memory
        totalFreeCores = cores.reduce(0, +)
        totalFreeMemory = memory.reduce(UInt64(0)) { $0.clampedPlus($1) }
    }
}

/// The depth-first search for one domain's loss plan.
struct LossPlanSearch {
    private var view: PlanView
    /// The partitions to re-place: largest first, identical ones next to each other.
    private let displaced: [PlacementRequest]
    /// The blades they may go to, emptiest first (a static order: first fit decreasing).
    private let candidates: [Int]
    /// Each blade's index in `candidates` (-1: not a candidate).
    private var rank: [Int]
    /// Whether each displaced partition is interchangeable with the one before it.
    private let sameAsPrevious: [Bool]
    private let hint: [String: Int]
    private var suffixCores: [Int]
    private var suffixMemory: [UInt64]
    private var freeCores: Int
    private var freeMemory: UInt64
    private var chosen: [Int]
    private var exhausted = false

    /// The search for the plan of `view`'s lost domain, whose partitions are `entries` (in
    /// `DisplacedPartition` order); `hint` (a plan that held before) is tried first.
    init(view: PlanView, entries: [DisplacedPartition], hint: [String: Int], order: CandidateOrder) {
        self.displaced = entries.map(\.request)
        sameAsPrevious = entries.indices.map { $0 > 0 && entries[$0 - 1].isInterchangeable(with: entries[$0]) }
        candidates = order.blades
        rank = order.rank
        self.view = view
        self.hint = hint
        suffixCores = Array(repeating: 0, count: displaced.count + 1)
        suffixMemory = Array(repeating: 0, count: displaced.count + 1)
        for index in entries.indices.reversed() {
            suffixCores[index] = suffixCores[index + 1] + entries[index].cores
            suffixMemory[index] = suffixMemory[index + 1].clampedPlus(entries[index].memory)
        }
        (freeCores, freeMemory) = view.aggregateFree(order)
        chosen = Array(repeating: -1, count: displaced.count)
    }

    /// Every move of the plan found (the view's kept moves and the search's).
    var overlay: PlanOverlay { view.overlay }

    /// Searches, spending at most `budget` candidate checks (what is left stays in `budget`).
    mutating func run(budget: inout Int) -> PlanOutcome {
        if displaced.isEmpty || search(0, budget: &budget) {
            var targets: [String: Int] = [:]
            targets.reserveCapacity(displaced.count)
            for (index, request) in displaced.enumerated() { targets[request.name] = chosen[index] }
            return .found(targets: targets)
        }
        return exhausted ? .undecided : .impossible
    }

    private mutating func search(_ index: Int, budget: inout Int) -> Bool {
        if index == displaced.count { return true }
        // Everything left must fit in what is left, in aggregate.
        if suffixCores[index] > freeCores || suffixMemory[index] > freeMemory { return false }
        return place(index, budget: &budget)
    }

    private mutating func place(_ index: Int, budget: inout Int) -> Bool {
        let request = displaced[index]
        let cores = view.policy.coreDemand(request)
        let memory = view.policy.memoryDemand(request)
        // Identical partitions take blades in candidate order (their permutations are one plan).
        let floor = sameAsPrevious[index] ? rank[chosen[index - 1]] : 0
        var failed: Set<[String]> = []
        var order: [Int] = []
        let hinted = hint.isEmpty ? nil : hint[request.name]
        if let hinted, rank[hinted] >= floor { order.append(hinted) }
        var next = floor
        while true {
            let candidate: Int
            if !order.isEmpty {
                candidate = order.removeFirst()
            } else {
                guard next < candidates.count else { return false }
                candidate = candidates[next]
                next += 1
                if candidate == hinted { continue }
            }
            if view.isLost(candidate) { continue }
            if budget <= 0 {
                exhausted = true
                return false
            }
            budget -= 1
            guard view.freeCores(candidate) >= cores, view.freeMemory(candidate) >= memory,
                  PlacementRules.rejection(request, at: candidate, in: view) == nil else { continue }
            // A blade interchangeable with one whose subtree failed fails too.
            if !failed.isEmpty, failed.contains(signature(candidate, from: index)) { continue }
            let coresBefore = max(0, view.freeCores(candidate)), memoryBefore = view.freeMemory(candidate)
            view.land(request, on: candidate)
            let coresTaken = coresBefore - max(0, view.freeCores(candidate))
            let memoryTaken = memoryBefore - view.freeMemory(candidate)
            freeCores -= coresTaken
            freeMemory = freeMemory.clampedMinus(memoryTaken)
            chosen[index] = candidate
            if search(index + 1, budget: &budget) { return true }
            view.land(request, on: candidate, sign: -1)
            freeCores += coresTaken
            freeMemory = freeMemory.clampedPlus(memoryTaken)
            if exhausted { return false }
            failed.insert(signature(candidate, from: index))
        }
    }

    /// What the partitions from `index` on can tell apart about `position`: two blades with
    /// the same signature are interchangeable for the rest of the search.
    private func signature(_ position: Int, from index: Int) -> [String] {
        let blade = view.blades[position]
        var parts = ["\(view.freeCores(position))", "\(view.freeMemory(position))", "\(view.freeDisk(position))",
                     "\(blade.nestedCapable)", "\(blade.cores)", view.exclusiveHolder(position) ?? "-"]
        var tenants = Set<String>()
        var levels: [String] = []
        for request in displaced[index...] {
            tenants.insert(request.tenant)
            if let rule = request.antiAffinity, rule.hard {
                levels.append(rule.level == .blade ? "\(rule.group)=\(view.members(rule.group, .blade, blade.id))" : "\(rule.level.rawValue)=\(blade.domain(rule.level))")
            }
        }
        // Which of the remaining tenants could still share the blade, and with whom.
        for tenant in tenants.sorted() { parts.append("\(tenant):\(view.hasTenant(otherThan: tenant, position))") }
        return parts + levels
    }
}
