@testable import Placement
import SeededRandom
import Testing

let GiB: UInt64 = 1 << 30

func blade(_ id: String, chassis: String, rack: String = "r1", power: String = "p1", cores: Int = 16,
           memory: UInt64 = 64 * GiB, nested: Bool = true) -> BladeSnapshot {
    BladeSnapshot(id: id, labels: BladeLabels(chassis: chassis, rack: rack, powerDomain: power), cores: cores,
                  memoryBytes: memory, diskBytes: 1 << 40, nestedCapable: nested)
}

func request(_ name: String, tenant: String = "t1", cores: Int, memory: UInt64 = 4 * GiB, vmm: Bool = false,
             rule: AntiAffinity? = nil, isolation: Isolation = .sharedBlade) -> PlacementRequest {
    PlacementRequest(name: name, tenant: tenant, cores: cores, memoryBytes: memory, vmm: vmm, antiAffinity: rule, isolation: isolation)
}

/// The hard rules broken in a state, recomputed from its placements alone.
func violations(_ state: PlacementState) -> [String] {
    PlacementChecker.violations(blades: state.blades, placements: Array(state.placements.values), policy: state.policy)
}

struct PlacementTests {
    @Test func bestFitFillsTheFullerBlade() throws {
        var state = PlacementState(blades: [blade("a", chassis: "c1"), blade("b", chassis: "c2"), blade("c", chassis: "c3")])
        _ = state.place(request("p1", cores: 8))
        let first = try state.place(request("p2", cores: 4)).get()
        #expect(first.blade == state.placements["p1"]!.blade)
    }

    @Test func hardChassisAntiAffinityAndTheRefusalSaysWhy() throws {
        let blades = [blade("a1", chassis: "c1"), blade("a2", chassis: "c1"), blade("b1", chassis: "c2"), blade("b2", chassis: "c2")]
        var state = PlacementState(blades: blades, policy: PlacementPolicy(admissionLevel: nil))
        let rule = AntiAffinity(group: "web", level: .chassis)
        let one = try state.place(request("web-1", cores: 2, rule: rule)).get()
        let two = try state.place(request("web-2", cores: 2, rule: rule)).get()
        #expect(state.blades.first { $0.id == one.blade }!.labels.chassis != state.blades.first { $0.id == two.blade }!.labels.chassis)
        guard case .failure(let refusal) = state.place(request("web-3", cores: 2, rule: rule)) else {
            Issue.record("a third member of a hard chassis group was placed on two chassis")
            return
        }
        #expect(refusal.description == "no blade fits: 4 blades; 4 chassis anti-affinity (group web)")
        // Two per chassis are allowed with maxPerDomain 2.
        let relaxed = AntiAffinity(group: "api", level: .chassis, maxPerDomain: 2)
        for index in 0..<4 { _ = try state.place(request("api-\(index)", cores: 1, rule: relaxed)).get() }
        #expect(state.place(request("api-4", cores: 1, rule: relaxed)).isFailure)
        #expect(violations(state).isEmpty)
    }

    @Test func aSharedPartitionHoldsItsShareInWholeCoresAndNoMoreCPUsThanTheBladeHas() throws {
        var state = PlacementState(blades: [blade("small", chassis: "c1", cores: 4), blade("big", chassis: "c2", cores: 16)],
                                   policy: PlacementPolicy(admissionLevel: nil))
        var quarter = request("q", cores: 6, memory: 1 * GiB)
        quarter.cpuMode = .shared(serviceRatio: 25)
        #expect(state.policy.coreDemand(quarter) == 2)
        // 6 logical CPUs need a blade with at least 6 cores, although they hold only 2.
        let placed = try state.place(quarter).get()
        #expect(placed.blade == "big")
        #expect(state.freeCores("big") == 14)
        var wide = request("w", cores: 17, memory: 1 * GiB)
        wide.cpuMode = .shared(serviceRatio: 10)
        guard case .failure(let refusal) = state.decide(wide) else {
            Issue.record("17 shared logical CPUs were placed on a 16-core blade")
            return
        }
        #expect(refusal.rejections == [.tooFewCores: 2])
    }

    @Test func refusalsCountEveryReason() {
        var blades = [blade("full", chassis: "c1", cores: 4), blade("old", chassis: "c2", nested: false),
                      blade("off", chassis: "c3"), blade("small", chassis: "c4", memory: 2 * GiB)]
        blades[2].condition = .cordoned
        let state = PlacementState(blades: blades, policy: PlacementPolicy(admissionLevel: nil))
        guard case .failure(let refusal) = state.decide(request("p", cores: 8, memory: 4 * GiB, vmm: true)) else {
            Issue.record("placed on an unfit blade")
            return
        }
        #expect(refusal.rejections == [.tooFewCores: 1, .notNestedCapable: 1, .condition(.cordoned): 1, .tooLittleMemory: 1])
        #expect(refusal.description == "no blade fits: 4 blades; 1 cordoned, 1 not nested-capable, 1 too few free cores, 1 too little free memory")
    }

    @Test func exclusiveBladesAreNotShared() throws {
        var state = PlacementState(blades: [blade("a", chassis: "c1"), blade("b", chassis: "c2")], policy: PlacementPolicy(admissionLevel: nil))
        let mine = try state.place(request("x", tenant: "acme", cores: 2, isolation: .exclusiveBlade)).get()
        let other = try state.place(request("y", tenant: "globex", cores: 14)).get()
        #expect(mine.blade != other.blade)
        // acme may add to its own blade; globex may not, although it has room.
        #expect(try state.place(request("x2", tenant: "acme", cores: 3)).get().blade == mine.blade)
        guard case .failure(let refusal) = state.place(request("y2", tenant: "globex", cores: 4)) else {
            Issue.record("globex placed next to acme's exclusive partition")
            return
        }
        #expect(refusal.rejections == [.isolation: 1, .tooFewCores: 1])
        // And an exclusive request does not go where another tenant is.
        guard case .failure(let exclusive) = state.place(request("z", tenant: "initech", cores: 1, isolation: .exclusiveBlade)) else {
            Issue.record("an exclusive partition shares a blade")
            return
        }
        #expect(exclusive.rejections == [.isolation: 2])
        #expect(violations(state).isEmpty)
    }

    @Test func nPlusOneAtChassisLevelKeepsRoomForALostChassis() throws {
        var state = PlacementState(blades: [blade("a", chassis: "c1"), blade("b", chassis: "c2")])
        _ = try state.place(request("p1", cores: 8)).get()
        // 8 + 8 would leave no room for either chassis's partitions on the other.
        guard case .failure(let refusal) = state.place(request("p2", cores: 9)) else {
            Issue.record("N+1 broken")
            return
        }
        #expect(refusal.description.contains("N+1 at chassis level"))
        _ = try state.place(request("p3", cores: 4)).get()
        #expect(state.place(request("p4", cores: 5)).isFailure)
    }

    @Test func nPlusOneChecksEveryDomainExactlyNotOnlyTheCandidates() throws {
        // Two chassis of two blades, N+1 at blade level. web-1 and web-2 (hard chassis spread)
        // sit on a and c. If erp (another tenant, exclusive blade) took b, losing a would leave
        // web-1 nowhere: c2 holds web-2 and b would be erp's alone. The same holds for d.
        let policy = PlacementPolicy(admissionLevel: .blade)
        var state = PlacementState(blades: [blade("a", chassis: "c1"), blade("b", chassis: "c1"),
                                            blade("c", chassis: "c2"), blade("d", chassis: "c2")], policy: policy)
        let rule = AntiAffinity(group: "web", level: .chassis)
        #expect(try state.place(request("web-1", tenant: "acme", cores: 6, rule: rule)).get().blade == "a")
        #expect(try state.place(request("web-2", tenant: "acme", cores: 6, rule: rule)).get().blade == "c")
        guard case .failure(let refusal) = state.place(request("erp", tenant: "globex", cores: 4, isolation: .exclusiveBlade)) else {
            Issue.record("erp took a blade that web's re-placement needs")
            return
        }
        #expect(refusal.rejections == [.isolation: 2, .admission(level: .blade): 2])
        // A partition that does not block the re-placement still goes in, and the plans stay valid.
        _ = try state.place(request("app", tenant: "globex", cores: 4)).get()
        #expect(violations(state).isEmpty)
    }

    @Test func everyDomainKeepsAValidLossPlanAcrossDecisions() throws {
        // After every decision, each chassis has a kept plan, and the plan, checked here from
        // scratch, really re-places all of that chassis's partitions on the others within
        // capacity and the hard rules.
        var rng = SplitMix64(seed: 7)
        var blades: [BladeSnapshot] = []
        for index in 0..<12 { blades.append(blade("b\(index)", chassis: "c\(index / 3)", cores: 16)) }
        var state = PlacementState(blades: blades)
        let policy = state.policy
        var placedCount = 0
        for index in 0..<80 {
            let grouped = rng.next() % 3 == 0
            let req = request("p\(index)", tenant: "t\(rng.next() % 3)", cores: Int(rng.next() % 6) + 1,
                              rule: grouped ? AntiAffinity(group: "g\(index % 4)", level: .chassis, maxPerDomain: 2) : nil)
            guard case .success = state.place(req) else { continue }
            placedCount += 1
            #expect(violations(state).isEmpty)
            let position = Dictionary(uniqueKeysWithValues: state.blades.enumerated().map { ($0.element.id, $0.offset) })
            for chassis in Set(blades.map(\.labels.chassis)) {
                let plan = try #require(state.plans[chassis], "no plan kept for \(chassis)")
                let inside = state.placements.values.filter { state.blades[position[$0.blade]!].labels.chassis == chassis }
                #expect(Set(plan.targets.keys) == Set(inside.map(\.request.name)))
                var cores = state.blades.map { blade in
                    state.placements.values.filter { $0.blade == blade.id }.reduce(0) { $0 + policy.coreDemand($1.request) }
                }
                var groupCount: [String: Int] = [:]
                for placement in state.placements.values where !inside.contains(placement) {
                    if let rule = placement.request.antiAffinity { groupCount["\(rule.group)|\(state.blades[position[placement.blade]!].labels.chassis)", default: 0] += 1 }
                }
                for placement in inside {
                    let target = plan.targets[placement.request.name]!
                    #expect(state.blades[target].labels.chassis != chassis)
                    cores[target] += policy.coreDemand(placement.request)
                    if let rule = placement.request.antiAffinity { groupCount["\(rule.group)|\(state.blades[target].labels.chassis)", default: 0] += 1 }
                }
                #expect(cores.enumerated().allSatisfy { $0.element <= state.blades[$0.offset].cores }, "plan for \(chassis) over-commits")
                #expect(groupCount.values.allSatisfy { $0 <= 2 }, "plan for \(chassis) breaks a group")
            }
        }
        #expect(placedCount > 20)
    }

    @Test func nPlusOneRePlacesTheLostChassisWithItsHardRules() throws {
        // Capacity is plentiful; what is short is room for the group's rule after a loss.
        let rule = AntiAffinity(group: "db", level: .chassis)
        var three = PlacementState(blades: [blade("a", chassis: "c1"), blade("b", chassis: "c2"), blade("c", chassis: "c3")])
        _ = try three.place(request("db-1", cores: 1, rule: rule)).get()
        _ = try three.place(request("db-2", cores: 1, rule: rule)).get()
        guard case .failure(let refusal) = three.place(request("db-3", cores: 1, rule: rule)) else {
            Issue.record("a third member was placed although a lost chassis could not re-place it")
            return
        }
        #expect(refusal.rejections == [.antiAffinity(level: .chassis, group: "db"): 2, .admission(level: .chassis): 1])
        var four = PlacementState(blades: [blade("a", chassis: "c1"), blade("b", chassis: "c2"), blade("c", chassis: "c3"), blade("d", chassis: "c4")])
        for index in 1...3 { _ = try four.place(request("db-\(index)", cores: 1, rule: rule)).get() }
        #expect(violations(four).isEmpty)
    }

    /// Removing an exclusive partition and then the shared one of the same tenant leaves an
    /// empty blade that any tenant may use; before, the marker stayed and "1 tenant isolation"
    /// refused another tenant on an empty blade, while a state rebuilt by `record` accepted it.
    @Test func aBladeIsNoLongerExclusiveOnceItsExclusivePartitionsAreGone() throws {
        var state = PlacementState(blades: [blade("only", chassis: "c1")], policy: PlacementPolicy(admissionLevel: nil))
        _ = try state.place(request("x", tenant: "acme", cores: 2, isolation: .exclusiveBlade)).get()
        _ = try state.place(request("x2", tenant: "acme", cores: 2)).get()
        state.remove("x")
        // x2 is shared: another tenant may join it now.
        var rebuilt = PlacementState(blades: state.blades, policy: state.policy)
        for placement in state.placements.values { rebuilt.record(placement) }
        #expect(state.decide(request("y", tenant: "globex", cores: 1)).isFailure == rebuilt.decide(request("y", tenant: "globex", cores: 1)).isFailure)
        #expect(try state.decide(request("y", tenant: "globex", cores: 1)).get().blade == "only")
        state.remove("x2")
        #expect(try state.place(request("y", tenant: "globex", cores: 1)).get().blade == "only")
        #expect(violations(state).isEmpty)
    }

    /// The N+1 plans obey the nested-capability rule too: a VMM partition whose chassis, if
    /// lost, could only be re-placed on a blade that cannot run a guest hypervisor is refused.
    @Test func nPlusOneRefusesAVMMPartitionThatOnlyANonNestedBladeCouldTakeBack() throws {
        let blades = [blade("nest", chassis: "c1"), blade("plain", chassis: "c2", nested: false)]
        var state = PlacementState(blades: blades, policy: PlacementPolicy(admissionLevel: .chassis))
        guard case .failure(let refusal) = state.place(request("vmm", cores: 2, vmm: true)) else {
            Issue.record("a VMM partition was admitted whose loss plan puts it on a blade without nested VMX")
            return
        }
        #expect(refusal.rejections[.admission(level: .chassis)] == 1)
        #expect(refusal.rejections[.notNestedCapable] == 1)
        // A plain partition is fine: its re-placement needs no nested VMX.
        _ = try state.place(request("plain-1", cores: 2)).get()
        #expect(violations(state).isEmpty)
    }

    /// N+1 is decided by a search, not by two greedy orders: losing b must re-place 3, 3, 2
    /// and 2 cores onto 6 and 4 free (3+3 and 2+2), which emptiest-first and fullest-first
    /// both miss. Before, x was refused on every blade.
    @Test func nPlusOneFindsThePlanThatGreedyOrdersMiss() throws {
        let blades = [blade("a", chassis: "c1", cores: 9), blade("b", chassis: "c2", cores: 10),
                      blade("c", chassis: "c3", cores: 7), blade("d", chassis: "c4", cores: 5)]
        var state = PlacementState(blades: blades, policy: PlacementPolicy(admissionLevel: .blade))
        for (name, cores, on) in [("b1", 2, "b"), ("b2", 2, "b"), ("b3", 3, "b"), ("b4", 3, "b"),
                                  ("c1", 2, "c"), ("c2", 1, "c"), ("c3", 4, "c"), ("d1", 1, "d")] {
            state.record(Placement(request: request(name, cores: cores, memory: GiB), blade: on))
        }
        #expect(violations(state).isEmpty)
        let decision = try state.place(request("x", cores: 3, memory: GiB)).get()
        #expect(decision.blade == "a")
        #expect(violations(state).isEmpty)
        // The witness for b's loss uses exactly the room there is.
        let plan = try #require(state.plans["b"])
        let onA = plan.targets.filter { $0.value == 0 }.keys.sorted(), onD = plan.targets.filter { $0.value == 3 }.keys.sorted()
        #expect(onA == ["b3", "b4"] && onD == ["b1", "b2"])
    }

    @Test func randomClustersNeverBreakAHardRule() {
        var generator = SplitMix64(seed: 42)
        for round in 0..<20 {
            var blades: [BladeSnapshot] = []
            for index in 0..<(8 + round) {
                blades.append(blade("b\(index)", chassis: "c\(index % 4)", rack: "r\(index % 2)",
                                    cores: [8, 16, 32][Int(generator.next() % 3)]))
            }
            var state = PlacementState(blades: blades)
            // Each group has one rule (the controller refuses a member with another).
            let rules = (0..<4).map { group in
                AntiAffinity(group: "g\(group)", level: [.blade, .chassis, .rack][Int(generator.next() % 3)],
                             hard: generator.next() % 4 != 0, maxPerDomain: 1 + Int(generator.next() % 2))
            }
            for index in 0..<60 {
                let rule: AntiAffinity? = generator.next() % 3 == 0 ? rules[Int(generator.next() % 4)] : nil
                let isolation: Isolation = generator.next() % 10 == 0 ? .exclusiveBlade : .sharedBlade
                _ = state.place(request("p\(index)", tenant: "t\(generator.next() % 3)", cores: 1 + Int(generator.next() % 8),
                                        memory: GiB * (1 + generator.next() % 16), rule: rule, isolation: isolation))
                if index % 7 == 0, let victim = state.placements.keys.sorted().first { state.remove(victim) }
            }
            #expect(violations(state).isEmpty, "round \(round): \(violations(state))")
            #expect(!state.placements.isEmpty)
        }
    }
}


extension Result {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}

struct PlacementCheckerTests {
    @Test func findsEveryKindOfPlantedViolation() {
        let blades = [blade("a", chassis: "c1"), blade("b", chassis: "c2")]
        let rule = AntiAffinity(group: "db", level: .chassis)
        let placements = [
            Placement(request: request("big", cores: 12), blade: "a"),
            Placement(request: request("bigger", cores: 8), blade: "a"),
            Placement(request: request("db-1", cores: 1, rule: rule), blade: "b"),
            Placement(request: request("db-2", cores: 1, rule: rule), blade: "b"),
            Placement(request: request("mine", tenant: "acme", cores: 1, isolation: .exclusiveBlade), blade: "b"),
        ]
        let found = PlacementChecker.violations(blades: blades, placements: placements, policy: .standard)
        #expect(found.contains("a: 20 cores placed on 16"))
        #expect(found.contains("group db: more than 1 in chassis c2"))
        #expect(found.contains("b: shared despite exclusive mine"))
        #expect(found.contains("N+1 at chassis level: c1 does not fit on the others"))
        #expect(PlacementChecker.violations(blades: blades, placements: [placements[2]], policy: .standard).isEmpty)
    }
}
