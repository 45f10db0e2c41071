import FaultHarness
import Testing

/// The checker reports each kind of violation planted in an observation or a history, and
/// nothing on a healthy one.
@Suite struct CheckerTests {
    static let gib: UInt64 = 1 << 30

    static func lpar(_ name: String, _ partition: String?, tenant: String? = "acme", state: ObservedLPAR.State = .running,
                     cores: [Int], memory: (start: UInt64, gib: UInt64)) -> ObservedLPAR {
        ObservedLPAR(name: name, partition: partition, tenant: tenant, state: state, cores: cores,
                     memoryStart: memory.start * gib, memoryBytes: memory.gib * gib)
    }

    static func blade(_ id: String, chassis: String, _ lpars: [ObservedLPAR]) -> ObservedBlade {
        ObservedBlade(id: id, cores: 8, memoryBytes: 16 * gib, domains: ["chassis": chassis, "rack": "r1", "power": "p1"], lpars: lpars)
    }

    static let healthy = Observation(timeMillis: 10, blades: [
        blade("b1", chassis: "c1", [lpar("l1", "acme/a", cores: [0, 1], memory: (0, 4)), lpar("l2", "acme/b", cores: [2], memory: (4, 4))]),
        blade("b2", chassis: "c2", [lpar("l1", "acme/c", cores: [0], memory: (0, 2)),
                                    lpar("old", "acme/b", state: .stopped, cores: [1], memory: (2, 2))]),
    ], partitions: [
        StoredPartition(name: "acme/a", tenant: "acme", spread: .init(group: "g", level: "chassis", hard: true, maxPerDomain: 1)),
        StoredPartition(name: "acme/b", tenant: "acme"),
        StoredPartition(name: "acme/c", tenant: "acme", spread: .init(group: "g", level: "chassis", hard: true, maxPerDomain: 1)),
    ])

    @Test func aHealthyObservationHasNoViolation() {
        #expect(InvariantChecker.check(Self.healthy).isEmpty)
    }

    @Test func aPartitionActiveOnTwoBladesIsReported() {
        var observation = Self.healthy
        observation.blades[1].lpars[1].state = .running
        #expect(InvariantChecker.check(observation).map(\.kind) == [.activeTwice])
        #expect(InvariantChecker.check(observation).first?.detail == "partition acme/b is active on b1 and b2")
    }

    /// A migration shows the partition on two blades: the running source and the target's
    /// shell, then the paused source and the starting target; neither is a second copy. A
    /// target that runs while the source still runs is.
    @Test func aMigrationsTwoHalvesAreNoSecondCopyButTwoRunningOnesAre() {
        var observation = Self.healthy
        observation.blades[0].lpars[1].state = .migrating
        observation.blades[0].lpars[1].migration = .init(target: false, handedOver: false)
        observation.blades[1].lpars[1] = Self.lpar("l3", "acme/b", state: .migrating, cores: [1], memory: (2, 4))
        observation.blades[1].lpars[1].migration = .init(target: true, handedOver: false)
        #expect(InvariantChecker.check(observation).isEmpty)
        observation.blades[0].lpars[1].migration = .init(target: false, handedOver: true)
        observation.blades[1].lpars[1].state = .activating
        observation.blades[1].lpars[1].migration = nil
        #expect(InvariantChecker.check(observation).isEmpty)
        observation.blades[0].lpars[1].migration = .init(target: false, handedOver: false)
        #expect(InvariantChecker.check(observation).map(\.kind) == [.activeTwice])
    }

    @Test func aCoreInTwoLPARsIsReported() {
        var observation = Self.healthy
        observation.blades[0].lpars[1].cores = [1]
        #expect(InvariantChecker.check(observation).map(\.kind) == [.coreShared])
    }

    @Test func overlappingMemoryIsReported() {
        var observation = Self.healthy
        observation.blades[0].lpars[1].memoryStart = 3 * Self.gib
        #expect(InvariantChecker.check(observation).map(\.kind) == [.memoryOverlap])
    }

    @Test func anOverCommittedBladeIsReported() {
        var observation = Self.healthy
        observation.blades[0].lpars.append(Self.lpar("l3", "acme/d", cores: [3, 4, 5, 6, 7, 8], memory: (8, 9)))
        let kinds = InvariantChecker.check(observation).map(\.kind)
        // Core 8 of 8 cores, memory past 16 GiB, and the blade's sums.
        #expect(kinds == [.overCommitted, .overCommitted, .overCommitted], "\(kinds)")
    }

    @Test func aBrokenHardGroupIsReportedAndASoftOneIsNot() {
        var observation = Self.healthy
        observation.blades[1].domains["chassis"] = "c1"
        #expect(InvariantChecker.check(observation).map(\.kind) == [.antiAffinity])
        for index in observation.partitions.indices { observation.partitions[index].spread?.hard = false }
        #expect(InvariantChecker.check(observation).isEmpty)
    }

    @Test func anotherTenantOnAnExclusiveBladeIsReported() {
        var observation = Self.healthy
        observation.partitions[1].exclusiveBlade = true
        #expect(InvariantChecker.check(observation).isEmpty)
        observation.blades[0].lpars.append(Self.lpar("l3", "globex/x", tenant: "globex", cores: [5], memory: (10, 1)))
        #expect(InvariantChecker.check(observation).map(\.kind) == [.tenantIsolation])
    }

    static func entry(_ action: HistoryEntry.Action, _ outcome: HistoryEntry.Outcome, at start: UInt64, until end: UInt64) -> HistoryEntry {
        HistoryEntry(client: "c", action: action, invokedMillis: start, completedMillis: end, outcome: outcome)
    }

    @Test func anAcknowledgedCreateThatIsMissingIsReported() {
        let history = [Self.entry(.createPartition("acme/a"), .ok, at: 1, until: 2), Self.entry(.createPartition("acme/z"), .ok, at: 3, until: 4)]
        let violations = InvariantChecker.checkFinal(Self.healthy, history: history)
        #expect(violations.map(\.kind) == [.lostAcknowledged])
        #expect(violations.first?.detail == "partition acme/z was acknowledged as created and is not in the store")
    }

    @Test func anAcknowledgedDeleteThatIsStillThereIsReported() {
        let history = [Self.entry(.createPartition("acme/b"), .ok, at: 1, until: 2), Self.entry(.deletePartition("acme/b"), .ok, at: 3, until: 4)]
        #expect(InvariantChecker.checkFinal(Self.healthy, history: history).map(\.kind) == [.lostAcknowledged])
    }

    @Test func aRefusedCreateThatHappenedAnywayIsReported() {
        let history = [Self.entry(.createPartition("acme/b"), .refused("quota"), at: 1, until: 2),
                       Self.entry(.createPartition("acme/b"), .failed("unavailable"), at: 3, until: 4)]
        #expect(InvariantChecker.checkFinal(Self.healthy, history: history).map(\.kind) == [.refusedChangedState])
    }

    @Test func unknownAndConcurrentOutcomesAllowEitherResult() {
        // An unknown create may or may not have happened; a delete racing a create may land
        // before or after it.
        let unknown = [Self.entry(.createPartition("acme/b"), .unknown, at: 1, until: 2),
                       Self.entry(.createPartition("acme/y"), .unknown, at: 1, until: 2)]
        #expect(InvariantChecker.checkFinal(Self.healthy, history: unknown).isEmpty)
        let racing = [Self.entry(.createPartition("acme/b"), .ok, at: 1, until: 5), Self.entry(.deletePartition("acme/b"), .ok, at: 2, until: 3)]
        #expect(InvariantChecker.checkFinal(Self.healthy, history: racing).isEmpty)
        // In sequence, the later one decides.
        let sequential = [Self.entry(.createPartition("acme/b"), .ok, at: 1, until: 2), Self.entry(.deletePartition("acme/b"), .ok, at: 3, until: 4),
                          Self.entry(.createPartition("acme/b"), .ok, at: 5, until: 6)]
        #expect(InvariantChecker.checkFinal(Self.healthy, history: sequential).isEmpty)
    }

    @Test func anAcknowledgedPartitionThatRunsNowhereIsReported() {
        var observation = Self.healthy
        observation.blades[0].lpars[1].state = .stopped
        let history = [Self.entry(.createPartition("acme/b"), .ok, at: 1, until: 2)]
        #expect(InvariantChecker.checkFinal(observation, history: history).map(\.detail)
                == ["partition acme/b was acknowledged as created and is active on 0 blades"])
    }

    @Test func aStoppedLPARKeepsItsCoresAndMemory() {
        var observation = Self.healthy
        observation.blades[1].lpars[1].cores = [0]
        #expect(InvariantChecker.check(observation).map(\.kind) == [.coreShared])
    }

    @Test func aFailedLPARTheHarnessDidNotCrashIsAFaultThatSpread() {
        var observation = Self.healthy
        observation.blades[1].lpars[1].state = .failed
        #expect(InvariantChecker.check(observation).map(\.detail) == ["LPAR old on b2 failed, and no fault was injected into it"])
        #expect(InvariantChecker.check(observation, crashed: ["acme/b"]).isEmpty)
    }

    @Test func aCrashedPartitionFailedOnOneBladeIsStillThere() {
        var observation = Self.healthy
        observation.blades[0].lpars[1].state = .failed
        let history = [Self.entry(.createPartition("acme/b"), .ok, at: 1, until: 2)]
        #expect(InvariantChecker.checkFinal(observation, history: history, crashed: ["acme/b"]).isEmpty)
        #expect(InvariantChecker.checkFinal(observation, history: history).map(\.kind) == [.faultSpread, .lostAcknowledged])
    }
}

/// A run's summary: the counts, the longest time without an answered create, the table.
struct RunResultTests {
    static func create(_ outcome: HistoryEntry.Outcome, at start: UInt64, until end: UInt64) -> HistoryEntry {
        HistoryEntry(client: "c", action: .createPartition("p\(start)"), invokedMillis: start, completedMillis: end, outcome: outcome)
    }

    @Test func theUnavailableWindowRunsFromTheFirstUnansweredCreateToTheNextAnswer() {
        let history = [
            Self.create(.ok, at: 0, until: 10),
            Self.create(.unknown, at: 100, until: 5_100),       // opens at 100
            Self.create(.failed("unavailable"), at: 200, until: 300),
            Self.create(.refused("quota"), at: 6_000, until: 6_050),  // closes at 6050
            Self.create(.failed("unavailable"), at: 7_000, until: 7_010),  // opens at 7000
            Self.create(.ok, at: 8_000, until: 8_020),           // closes at 8020
        ]
        #expect(RunResult.longestUnavailableMillis(history) == 5_950)
        #expect(RunResult.longestUnavailableMillis([Self.create(.unknown, at: 10, until: 5_010)]) == 5_000)
        #expect(RunResult.longestUnavailableMillis([Self.create(.ok, at: 10, until: 20)]) == 0)
        #expect(RunResult.longestUnavailableMillis([]) == 0)
    }

    @Test func aResultCountsOutcomesAndNamesTheFirstViolation() {
        let history = [Self.create(.ok, at: 0, until: 1), Self.create(.refused("quota"), at: 1, until: 2),
                       Self.create(.failed("down"), at: 2, until: 3), Self.create(.unknown, at: 3, until: 4)]
        let violations = [Violation(.lostAcknowledged, at: 90, "partition p0 was acknowledged as created and is not in the store"),
                          Violation(.activeTwice, at: 40, "partition p9 is active on b1 and b2")]
        let result = RunResult(scenario: "s", seed: 3, backend: "sim", durationSeconds: 12.34, faults: 2, history: history, violations: violations)
        #expect([result.ok, result.refused, result.failed, result.unknown, result.lostAcknowledged, result.violations] == [1, 1, 1, 1, 1, 2])
        #expect(result.firstViolation == "active-twice at 40 ms: partition p9 is active on b1 and b2")
        #expect(!result.passed)
        let table = RunTable.render([result])
        #expect(table.contains("s         3     sim      12.3     2       1   1        1       1        1     2           0.0 s        FAIL"), "\(table)")
        #expect(table.contains("s seed 3: first violation: active-twice at 40 ms"))
        let clean = RunResult(scenario: "s", seed: 1, backend: "sim", durationSeconds: 1, faults: 0, history: history, violations: [])
        #expect(clean.passed && RunTable.render([clean]).split(separator: "\n").count == 2)
    }
}

/// The store's claims are judged as the agents' LPARs are: the decisions must keep the rules
/// before anything runs.
struct ClaimCheckerTests {
    static func partition(_ name: String, blade: String, cores: [Int], memory: (UInt64, UInt64), group: String? = nil) -> StoredPartition {
        StoredPartition(name: name, tenant: "acme", spread: group.map { .init(group: $0, level: "chassis", hard: true, maxPerDomain: 1) },
                        claim: .init(blade: blade, cores: cores, memoryBase: memory.0 << 30, memoryBytes: memory.1 << 30))
    }

    static func observation(_ partitions: [StoredPartition]) -> Observation {
        Observation(timeMillis: 5, blades: [CheckerTests.blade("b1", chassis: "c1", []), CheckerTests.blade("b2", chassis: "c1", []),
                                            CheckerTests.blade("b3", chassis: "c2", [])], partitions: partitions)
    }

    @Test func claimsThatKeepTheRulesPass() {
        let partitions = [Self.partition("a", blade: "b1", cores: [0, 1], memory: (0, 2), group: "g"),
                          Self.partition("b", blade: "b1", cores: [2], memory: (2, 2)),
                          Self.partition("c", blade: "b3", cores: [0], memory: (0, 2), group: "g")]
        #expect(InvariantChecker.check(Self.observation(partitions)).isEmpty)
    }

    @Test func twoClaimsOnOneCoreOrOneRangeAreReported() {
        let partitions = [Self.partition("a", blade: "b1", cores: [0, 1], memory: (0, 2)), Self.partition("b", blade: "b1", cores: [1], memory: (1, 2))]
        #expect(InvariantChecker.check(Self.observation(partitions)).map(\.detail)
                == ["core 1 of b1 is in the store's claims of a and b", "the store's claims of a and b on b1 share memory at 1073741824"])
    }

    @Test func aHardGroupBrokenInTheClaimsIsReported() {
        let partitions = [Self.partition("a", blade: "b1", cores: [0], memory: (0, 1), group: "g"),
                          Self.partition("b", blade: "b2", cores: [0], memory: (0, 1), group: "g")]
        #expect(InvariantChecker.check(Self.observation(partitions)).map(\.kind) == [.antiAffinity])
    }
}

/// When the cluster counts as settled: the same judgement for both modes.
struct SettlingTests {
    static func observation(lpars: [ObservedLPAR], claimOn blade: String?, shouldRun: Bool = true) -> Observation {
        Observation(timeMillis: 1, blades: [CheckerTests.blade("b1", chassis: "c1", lpars), CheckerTests.blade("b2", chassis: "c2", [])],
                    partitions: [StoredPartition(name: "p", tenant: "acme",
                                                 claim: blade.map { .init(blade: $0, cores: [0], memoryBase: 0, memoryBytes: 1 << 30) },
                                                 shouldRun: shouldRun)])
    }

    static let running = CheckerTests.lpar("p", "p", cores: [0], memory: (0, 1))

    @Test func aClaimedPartitionRunningOnItsBladeHasSettled() {
        #expect(InvariantChecker.unsettled(Self.observation(lpars: [Self.running], claimOn: "b1"), crashed: []).isEmpty)
    }

    @Test func anLPARWithoutItsClaimOrAPartitionNotRunningHasNot() {
        #expect(InvariantChecker.unsettled(Self.observation(lpars: [Self.running], claimOn: nil), crashed: [])
                == ["b1 still holds p (running), claimed nowhere"])
        #expect(InvariantChecker.unsettled(Self.observation(lpars: [], claimOn: "b2"), crashed: []) == ["p is absent on b2, should run"])
        var failed = Self.running
        failed.state = .failed
        #expect(InvariantChecker.unsettled(Self.observation(lpars: [failed], claimOn: "b1"), crashed: []) == ["p is failed on b1, should run"])
        #expect(InvariantChecker.unsettled(Self.observation(lpars: [failed], claimOn: "b1"), crashed: ["p"]).isEmpty, "the harness crashed it")
        var stopped = Self.running
        stopped.state = .stopped
        #expect(InvariantChecker.unsettled(Self.observation(lpars: [stopped], claimOn: "b1", shouldRun: false), crashed: []).isEmpty)
    }
}
