@testable import Placement
import SeededRandom
import Testing

/// An exact N+1 check written apart from the engine: for every domain at the level, an
/// exhaustive search for a re-placement of its partitions onto the ready blades outside it,
/// with every rule a placement obeys. Small clusters only (it has no budget).
struct ExactNPlusOne {
    let blades: [BladeSnapshot]
    let policy: PlacementPolicy
    let level: DomainLevel

    struct Load {
        var cores = 0
        var memory: UInt64 = 0
        var disk: UInt64 = 0
        var tenants: [String: Int] = [:]
        var exclusive: Set<String> = []
    }

    /// Whether `placements` keep N+1: every domain's loss can be absorbed.
    func holds(_ placements: [Placement]) -> Bool {
        let domains = Set(blades.map { $0.domain(level) })
        return domains.allSatisfy { absorbs(losing: $0, placements) }
    }

    func absorbs(losing lost: String, _ placements: [Placement]) -> Bool {
        let byID = Dictionary(uniqueKeysWithValues: blades.map { ($0.id, $0) })
        var loads: [String: Load] = [:]
        var groups: [String: Int] = [:]   // "group|domain" at the group's level
        var moving: [PlacementRequest] = []
        for placement in placements {
            let blade = byID[placement.blade]!
            if blade.domain(level) == lost { moving.append(placement.request); continue }
            var load = loads[blade.id] ?? Load()
            load.cores += policy.coreDemand(placement.request)
            load.memory += policy.memoryDemand(placement.request)
            load.disk += placement.request.diskBytes
            load.tenants[placement.request.tenant, default: 0] += 1
            if placement.request.isolation == .exclusiveBlade { load.exclusive.insert(placement.request.tenant) }
            loads[blade.id] = load
            if let rule = placement.request.antiAffinity, rule.hard { groups["\(rule.group)|\(blade.domain(rule.level))", default: 0] += 1 }
        }
        let targets = blades.filter { $0.condition == .ready && $0.domain(level) != lost }
        moving.sort { policy.coreDemand($0) > policy.coreDemand($1) }
        func fits(_ request: PlacementRequest, _ blade: BladeSnapshot) -> Bool {
            let load = loads[blade.id] ?? Load()
            if request.vmm && !blade.nestedCapable { return false }
            if load.cores + policy.coreDemand(request) > blade.cores { return false }
            if case .shared = request.cpuMode, request.cores > blade.cores { return false }
            if load.memory + policy.memoryDemand(request) > blade.memoryBytes { return false }
            if load.disk + request.diskBytes > blade.diskBytes { return false }
            if load.exclusive.contains(where: { $0 != request.tenant }) { return false }
            if request.isolation == .exclusiveBlade, load.tenants.contains(where: { $0.key != request.tenant && $0.value > 0 }) { return false }
            if let rule = request.antiAffinity, rule.hard, (groups["\(rule.group)|\(blade.domain(rule.level))"] ?? 0) >= rule.maxPerDomain {
                return false
            }
            return true
        }
        func search(_ index: Int) -> Bool {
            if index == moving.count { return true }
            let request = moving[index]
            for blade in targets where fits(request, blade) {
                var load = loads[blade.id] ?? Load()
                let saved = load
                load.cores += policy.coreDemand(request)
                load.memory += policy.memoryDemand(request)
                load.disk += request.diskBytes
                load.tenants[request.tenant, default: 0] += 1
                if request.isolation == .exclusiveBlade { load.exclusive.insert(request.tenant) }
                loads[blade.id] = load
                let key = request.antiAffinity.flatMap { $0.hard ? "\($0.group)|\(blade.domain($0.level))" : nil }
                if let key { groups[key, default: 0] += 1 }
                if search(index + 1) { return true }
                if let key { groups[key, default: 0] -= 1 }
                loads[blade.id] = saved
            }
            return false
        }
        return search(0)
    }
}

struct ExactNPlusOneTests {
    /// Thousands of seeded decisions on small clusters, with removals, cordons, VMM and
    /// exclusive requests and hard groups: every admission keeps N+1 as the exact check sees
    /// it, and no request is refused N+1 on a blade where the exact check finds a plan (the
    /// engine may say "not decided within the search budget" instead; it must be rare).
    @Test(arguments: [UInt64(11), 12, 13])
    func everyAdmissionKeepsNPlusOneAndNoFeasibleBladeIsRefused(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var decisions = 0, admitted = 0, refusedByNPlusOne = 0, undecided = 0
        for round in 0..<25 {
            let count = 3 + Int(rng.next() % 3)
            var blades: [BladeSnapshot] = []
            for index in 0..<count {
                blades.append(blade("b\(index)", chassis: "c\(index % 2 + Int(rng.next() % 2))", rack: "r\(index % 2)",
                                    cores: [6, 8, 10][Int(rng.next() % 3)], memory: GiB * [16, 32][Int(rng.next() % 2)],
                                    nested: rng.next() % 4 != 0))
            }
            let level: DomainLevel = round % 2 == 0 ? .blade : .chassis
            let policy = PlacementPolicy(memoryBlockBytes: GiB, admissionLevel: level)
            var state = PlacementState(blades: blades, policy: policy)
            for index in 0..<30 {
                if index % 9 == 8, let victim = state.placements.keys.sorted().first { state.remove(victim) }
                if index == 15 { state.setCondition(.cordoned, of: blades[Int(rng.next() % UInt64(count))].id) }
                if index == 22 { for blade in blades { state.setCondition(.ready, of: blade.id) } }
                let grouped = rng.next() % 3 == 0
                let req = PlacementRequest(
                    name: "p\(round)-\(index)", tenant: "t\(rng.next() % 3)", cores: 1 + Int(rng.next() % 4),
                    memoryBytes: GiB * (1 + rng.next() % 6), vmm: rng.next() % 3 == 0,
                    // Each group has one rule (the controller refuses a member with another).
                    antiAffinity: grouped ? [AntiAffinity(group: "g0", level: .blade), AntiAffinity(group: "g1", level: .chassis)][Int(rng.next() % 2)] : nil,
                    isolation: rng.next() % 8 == 0 ? .exclusiveBlade : .sharedBlade)
                decisions += 1
                let exact = ExactNPlusOne(blades: state.blades, policy: policy, level: level)
                let before = Array(state.placements.values)
                switch state.place(req) {
                case .success(let decision):
                    admitted += 1
                    #expect(exact.holds(Array(state.placements.values)), "seed \(seed) round \(round): \(req.name) on \(decision.blade) breaks N+1")
                    #expect(violations(state).isEmpty, "seed \(seed) round \(round): \(violations(state))")
                case .failure(let refusal):
                    if refusal.rejections.keys.contains(where: { if case .admissionUndecided = $0 { return true } else { return false } }) {
                        undecided += 1
                        continue
                    }
                    guard refusal.rejections[.admission(level: level)] != nil else { continue }
                    refusedByNPlusOne += 1
                    // Every blade the rules allow now: the exact check must find no plan either.
                    for blade in state.blades where PlacementRules.rejection(req, at: state.blades.firstIndex(of: blade)!, in: state) == nil {
                        let with = before + [Placement(request: req, blade: blade.id)]
                        #expect(!exact.holds(with), "seed \(seed) round \(round): \(req.name) refused N+1 on \(blade.id), where a plan exists")
                    }
                }
            }
        }
        print("seed \(seed): \(decisions) decisions, \(admitted) admitted (each checked exactly), \(refusedByNPlusOne) refused by N+1 (each blade checked exactly), \(undecided) undecided")
        #expect(decisions == 750)
        #expect(admitted > 150 && refusedByNPlusOne > 20, "admitted \(admitted), refused by N+1 \(refusedByNPlusOne)")
        #expect(undecided == 0, "\(undecided) of \(decisions) decisions ran out of search budget on a small cluster")
    }
}
