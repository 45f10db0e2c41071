import Testing
import VMX
@testable import Partitioner
import Sizes

let gib = ByteSize.gib

func blade() throws -> BladePartitioner {
    try BladePartitioner(resources: BladeResources(
        coreCount: 16, sharedPool: [14, 15], memoryBytes: 64 * gib, l0ReservedBytes: 1 * gib,
        disks: [BladeDisk(id: "fc0", lunCount: 64, shared: true), BladeDisk(id: "sas0", lunCount: 1, shared: false)],
        nics: [BladeNIC(id: "eth0", shared: true), BladeNIC(id: "eth1", shared: false)]))
}

func lpar(_ name: String, cores: [Int], base: UInt64, size: UInt64 = 2 * gib,
          disks: [DiskAssignment] = [], nics: [String] = [], vmm: Bool = false) -> LPARSpec {
    LPARSpec(name: name, cpu: .dedicated(cores: cores), memory: MemoryRange(base: base, size: size),
             disks: disks, nics: nics, vmm: vmm)
}

/// Expects `change` to be refused with `expected`, and the blade to stay exactly as it was.
func expectRefused(_ partitioner: inout BladePartitioner, _ expected: PartitionerError,
                   _ change: (inout BladePartitioner) throws(PartitionerError) -> Void,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    let before = partitioner
    do {
        try change(&partitioner)
        Issue.record("the change was accepted", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect(!error.description.isEmpty, sourceLocation: sourceLocation)
    }
    #expect(partitioner == before, "a refused change altered the blade", sourceLocation: sourceLocation)
}

@Suite struct IsolationTests {
    @Test func aValidLayoutIsAccepted() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0, 1], base: 1 * gib, disks: [.shared(diskID: "fc0", luns: 0..<8)], nics: ["eth0"]))
        try p.define(lpar("b", cores: [2, 3], base: 3 * gib, disks: [.shared(diskID: "fc0", luns: 8..<16), .dedicated(diskID: "sas0")],
                          nics: ["eth0", "eth1"], vmm: true))
        try p.define(LPARSpec(name: "c", cpu: .shared(logicalCPUs: 2, serviceRatio: 50, capped: true),
                              memory: MemoryRange(base: 5 * gib, size: 1 * gib)))
        #expect(p.lparNames == ["a", "b", "c"])
        #expect(p.freeCores == Array(4...13))
        #expect(p.freeMemoryBytes == 63 * gib - 5 * gib)
        #expect(p.firstFit(memory: 2 * gib) == 6 * gib)
    }

    @Test func overlappingMemoryIsRefusedAndNamesTheOwner() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0], base: 2 * gib, size: 4 * gib))
        let spec = lpar("b", cores: [1], base: 5 * gib, size: 2 * gib)
        expectRefused(&p, .memoryOverlap(lpar: "b", range: spec.memory, owner: "a",
                                         ownerRange: MemoryRange(base: 2 * gib, size: 4 * gib))) { p throws(PartitionerError) in
            try p.define(spec)
        }
        #expect(PartitionerError.memoryOverlap(lpar: "b", range: spec.memory, owner: "a",
                                               ownerRange: MemoryRange(base: 2 * gib, size: 4 * gib))
            .description.contains("overlaps LPAR a"))
    }

    @Test func aCoreGivenTwiceIsRefused() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0, 1], base: 1 * gib))
        expectRefused(&p, .coreAlreadyDedicated(lpar: "b", core: 1, owner: "a")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1, 2], base: 4 * gib))
        }
        expectRefused(&p, .coreListedTwice(lpar: "c", core: 3)) { p throws(PartitionerError) in
            try p.define(lpar("c", cores: [3, 3], base: 4 * gib))
        }
        expectRefused(&p, .coreInSharedPool(lpar: "d", core: 15)) { p throws(PartitionerError) in
            try p.define(lpar("d", cores: [15], base: 4 * gib))
        }
    }

    @Test func anOversizeLPARIsRefused() throws {
        var p = try blade()
        expectRefused(&p, .coreOutOfRange(lpar: "big", core: 16, coreCount: 16)) { p throws(PartitionerError) in
            try p.define(lpar("big", cores: Array(0...16), base: 1 * gib))
        }
        let huge = lpar("huge", cores: [0], base: 1 * gib, size: 64 * gib)
        expectRefused(&p, .memoryOutsideBlade(lpar: "huge", range: huge.memory, usableFrom: 1 * gib, usableTo: 64 * gib)) { p throws(PartitionerError) in
            try p.define(huge)
        }
        let low = lpar("low", cores: [0], base: 0, size: 1 * gib)
        expectRefused(&p, .memoryOutsideBlade(lpar: "low", range: low.memory, usableFrom: 1 * gib, usableTo: 64 * gib)) { p throws(PartitionerError) in
            try p.define(low)
        }
        expectRefused(&p, .sharedPoolTooSmall(lpar: "s", entitledPercent: 240, poolSize: 2)) { p throws(PartitionerError) in
            try p.define(LPARSpec(name: "s", cpu: .shared(logicalCPUs: 3, serviceRatio: 80, capped: false),
                                  memory: MemoryRange(base: 1 * gib, size: gib)))
        }
        expectRefused(&p, .invalidSpec(lpar: "wide", reason: "17 shared logical CPUs exceed the blade's 16 cores")) { p throws(PartitionerError) in
            try p.define(LPARSpec(name: "wide", cpu: .shared(logicalCPUs: 17, serviceRatio: 1, capped: false),
                                  memory: MemoryRange(base: 1 * gib, size: gib)))
        }
        let odd = lpar("odd", cores: [0], base: 1 * gib + 4096, size: gib)
        expectRefused(&p, .memoryMisaligned(lpar: "odd", range: odd.memory)) { p throws(PartitionerError) in
            try p.define(odd)
        }
    }

    @Test func sharedLPARsMayHaveMoreLogicalCPUsThanThePoolHasCoresWithinTheirEntitlement() throws {
        var p = try blade()
        // Pool [14, 15]: 200 % of a core. 4 CPUs at 25 % and 2 at 50 % are entitled to 200 %.
        try p.define(LPARSpec(name: "s1", cpu: .shared(logicalCPUs: 4, serviceRatio: 25, capped: true),
                              memory: MemoryRange(base: 1 * gib, size: gib)))
        try p.define(LPARSpec(name: "s2", cpu: .shared(logicalCPUs: 2, serviceRatio: 50, capped: false),
                              memory: MemoryRange(base: 2 * gib, size: gib)))
        expectRefused(&p, .sharedPoolTooSmall(lpar: "s3", entitledPercent: 201, poolSize: 2)) { p throws(PartitionerError) in
            try p.define(LPARSpec(name: "s3", cpu: .shared(logicalCPUs: 1, serviceRatio: 1, capped: true),
                                  memory: MemoryRange(base: 3 * gib, size: gib)))
        }
    }

    @Test func theSharedPoolGrowsAndShrinksOnlyWhereNothingBreaks() throws {
        var p = try blade()
        try p.define(lpar("d", cores: [0, 1], base: 1 * gib))
        try p.define(LPARSpec(name: "s", cpu: .shared(logicalCPUs: 2, serviceRatio: 100, capped: true),
                              memory: MemoryRange(base: 3 * gib, size: gib)))
        expectRefused(&p, .coreAlreadyDedicated(lpar: "(shared pool)", core: 1, owner: "d")) { p throws(PartitionerError) in
            try p.setSharedPool([1, 14, 15])
        }
        expectRefused(&p, .sharedPoolTooSmall(lpar: "s", entitledPercent: 200, poolSize: 1)) { p throws(PartitionerError) in
            try p.setSharedPool([15])
        }
        expectRefused(&p, .invalidBlade("shared-pool core 16 is not a core of this blade (0..<16)")) { p throws(PartitionerError) in
            try p.setSharedPool([16])
        }
        try p.setSharedPool([15, 13, 14])
        #expect(p.resources.sharedPool == [13, 14, 15])
        #expect(p.freeCores == Array(2...12))
        expectRefused(&p, .coreInSharedPool(lpar: "e", core: 13)) { p throws(PartitionerError) in
            try p.define(lpar("e", cores: [13], base: 5 * gib))
        }
    }

    @Test func disksAndNICsKeepTheirOwners() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0], base: 1 * gib, disks: [.shared(diskID: "fc0", luns: 0..<8), .dedicated(diskID: "sas0")], nics: ["eth1"]))
        expectRefused(&p, .lunOverlap(lpar: "b", disk: "fc0", luns: 4..<12, owner: "a", ownerLUNs: 0..<8)) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.shared(diskID: "fc0", luns: 4..<12)]))
        }
        expectRefused(&p, .diskAlreadyDedicated(lpar: "b", disk: "sas0", owner: "a")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.dedicated(diskID: "sas0")]))
        }
        expectRefused(&p, .lunRangeInvalid(lpar: "b", disk: "fc0", luns: 60..<70, lunCount: 64)) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.shared(diskID: "fc0", luns: 60..<70)]))
        }
        expectRefused(&p, .diskIsShared(lpar: "b", disk: "fc0")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.dedicated(diskID: "fc0")]))
        }
        expectRefused(&p, .diskNotShared(lpar: "b", disk: "sas0")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.shared(diskID: "sas0", luns: 0..<1)]))
        }
        expectRefused(&p, .unknownDisk(lpar: "b", disk: "nvme9")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.dedicated(diskID: "nvme9")]))
        }
        expectRefused(&p, .nicAlreadyDedicated(lpar: "b", nic: "eth1", owner: "a")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, nics: ["eth1"]))
        }
        expectRefused(&p, .unknownNIC(lpar: "b", nic: "eth9")) { p throws(PartitionerError) in
            try p.define(lpar("b", cores: [1], base: 4 * gib, nics: ["eth9"]))
        }
        try p.define(lpar("b", cores: [1], base: 4 * gib, disks: [.shared(diskID: "fc0", luns: 8..<16)], nics: ["eth0"]))
    }

    @Test func vmmNeedsANestedCapableBlade() throws {
        var p = try BladePartitioner(resources: BladeResources(coreCount: 4, memoryBytes: 8 * gib, nestedCapable: false))
        expectRefused(&p, .nestedNotSupported(lpar: "v")) { p throws(PartitionerError) in
            try p.define(lpar("v", cores: [0], base: 0, vmm: true))
        }
    }

    @Test func namesAndBladesAreChecked() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0], base: 1 * gib))
        expectRefused(&p, .duplicateName("a")) { p throws(PartitionerError) in try p.define(lpar("a", cores: [1], base: 4 * gib)) }
        expectRefused(&p, .invalidSpec(lpar: "bad name", reason: "a name is 1-63 letters, digits, '-', '_' or '.'")) { p throws(PartitionerError) in
            try p.define(lpar("bad name", cores: [1], base: 4 * gib))
        }
        #expect(throws: PartitionerError.self) { try BladePartitioner(resources: BladeResources(coreCount: 0, memoryBytes: gib)) }
        #expect(throws: PartitionerError.self) { try BladePartitioner(resources: BladeResources(coreCount: 2, sharedPool: [2], memoryBytes: gib)) }
        #expect(throws: PartitionerError.self) { try BladePartitioner(resources: BladeResources(coreCount: 2, memoryBytes: gib, l0ReservedBytes: gib)) }
    }
}

@Suite struct LifecycleTests {
    @Test func anLPARGoesThroughItsLife() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0], base: 1 * gib))
        #expect(try p.apply(.activate, to: "a") == .activating)
        #expect(try p.apply(.activated, to: "a") == .running)
        #expect(try p.apply(.startMigration, to: "a") == .migrating)
        #expect(try p.apply(.migrationAborted, to: "a") == .running)
        #expect(try p.apply(.fault(reason: "triple fault"), to: "a") == .failed)
        #expect(p.lpars["a"]?.failureReason == "triple fault")
        #expect(try p.apply(.reset, to: "a") == .stopped)
        #expect(p.lpars["a"]?.failureReason == nil)
        #expect(try p.apply(.activate, to: "a") == .activating)
        #expect(try p.apply(.activated, to: "a") == .running)
        #expect(try p.apply(.deactivate, to: "a") == .deactivating)
        #expect(try p.apply(.deactivated, to: "a") == .stopped)
        try p.remove("a")
        #expect(p.lpars.isEmpty)
    }

    static let events: [LPAREvent] = [.activate, .activated, .deactivate, .deactivated, .fault(reason: "x"),
                                      .startMigration, .migrationCompleted, .migrationAborted, .reset]

    @Test(arguments: LPARState.allCases)
    func everyTransitionNotInTheTableIsRefused(_ state: LPARState) throws {
        for event in Self.events {
            let next = LPARLifecycle.next(from: state, on: event)
            #expect(next == LPARLifecycle.table[state]?[event.name])
            if next == nil {
                var p = try blade()
                try p.define(lpar("a", cores: [0], base: 1 * gib))
                try drive(&p, to: state)
                expectRefused(&p, .badTransition(lpar: "a", from: state, event: event.name)) { p throws(PartitionerError) in
                    try p.apply(event, to: "a")
                }
            }
        }
    }

    @Test func aRunningLPARCannotBeRemoved() throws {
        var p = try blade()
        try p.define(lpar("a", cores: [0], base: 1 * gib))
        try drive(&p, to: .running)
        expectRefused(&p, .notRemovable(lpar: "a", state: .running)) { p throws(PartitionerError) in try p.remove("a") }
        expectRefused(&p, .unknownLPAR("zz")) { p throws(PartitionerError) in try p.apply(.activate, to: "zz") }
    }

    /// Drives LPAR "a" from defined to `state` along the table.
    func drive(_ p: inout BladePartitioner, to state: LPARState) throws {
        let paths: [LPARState: [LPAREvent]] = [
            .defined: [], .activating: [.activate], .running: [.activate, .activated],
            .deactivating: [.activate, .activated, .deactivate],
            .stopped: [.activate, .activated, .deactivate, .deactivated],
            .failed: [.activate, .fault(reason: "t")],
            .migrating: [.activate, .activated, .startMigration],
        ]
        for event in paths[state]! { try p.apply(event, to: "a") }
        #expect(p.lpars["a"]?.state == state)
    }
}
