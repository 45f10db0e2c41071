import ClusterCore
@testable import ClusterStore
import GRDB
import Foundation
import Testing

func scratchDirectory() -> String {
    let path = NSTemporaryDirectory() + "nestor-store-\(UUID().uuidString)"
    return path
}

@Suite struct StoreTests {
    let tenant = Tenant(name: "acme", maxCores: 16, maxMemoryBytes: 64 << 30, maxDiskBytes: 1 << 40, maxPartitions: 4, createdMillis: 5)
    let blade = Blade(id: "b1", cores: 16, memoryBytes: 64 << 30, diskBytes: 1 << 40, nestedCapable: true, chassis: "c1",
                      rack: "r1", powerDomain: "p1", cordoned: true, agentVersion: "0.1.0", backend: "sim", registeredMillis: 9,
                      disks: [BladeDiskInfo(id: "fc0", luns: 64, shared: true)], nics: ["eth0"])

    func everything() -> [StoreOp] {
        let spec = PartitionSpec(name: "p1", tenant: "acme", cores: 6, memoryBytes: 10 << 30, diskBytes: 20 << 30, cpu: .dedicated,
                                 vmm: true, shadowVMCS: false, antiAffinity: AntiAffinityRule(group: "web", level: .chassis, hard: false, maxPerDomain: 2),
                                 exclusiveBlade: true)
        let shared = PartitionSpec(name: "p2", tenant: "acme", cores: 2, memoryBytes: 1 << 30, diskBytes: 0, cpu: .shared(serviceRatio: 50))
        return [
            .putTenant(tenant), .putBlade(blade),
            .putPartition(Partition(spec: spec, desired: .stopped, generation: 3, createdMillis: 11)),
            .putPartition(Partition(spec: shared, desired: .stopped, evictedBecause: "blade b9 came back with 2 cores")),
            .putClaim(Claim(partition: "p1", blade: "b1", cores: [2, 3, 4, 5, 6, 7], memoryBase: 1 << 30, memoryBytes: 10 << 30,
                            diskBytes: 20 << 30, reason: "best fit")),
            .putVM(VM(name: "vm1", partition: "p1", vcpus: 4, memoryBytes: 8 << 30, workload: .sysbenchOLTP, createdMillis: 12)),
            .putMigration(Migration(id: "m7", partition: "p1", tenant: "acme", source: "b1",
                                    target: Claim(partition: "p1", blade: "b2", cores: [0, 1], memoryBase: 0, memoryBytes: 10 << 30,
                                                  diskBytes: 20 << 30, reason: "best fit"),
                                    requestedTarget: "b2", phase: .preCopy, maxDowntimeMillis: 30, requestedBy: "admin/ops",
                                    createdMillis: 14, updatedMillis: 15, failure: nil,
                                    progress: MigrationProgress(round: 3, sentBytes: 1 << 30, remainingBytes: 1 << 20,
                                                                dirtyBytesPerSecond: 64 << 20, linkBytesPerSecond: 1 << 30))),
            .event(ClusterEvent(timeMillis: 13, kind: "partition.placed", subject: "p1", message: "on b1", tenant: "acme")),
        ]
    }

    @Test func whatIsCommittedIsWhatIsLoadedAfterReopening() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var expected = ClusterModel()
        do {
            let store = try ClusterStore(directory: directory)
            let result = try store.commit(everything(), expectedGeneration: 0)
            #expect(result.generation == 1 && result.events.first?.sequence == 1)
            expected.apply(everything(), generation: result.generation, lastEventSequence: result.lastEventSequence)
        }
        let reopened = try ClusterStore(directory: directory)
        #expect(try reopened.load() == expected)
        #expect(try reopened.appliedMigrations().count == 4)
        #expect(try reopened.events(after: 0, limit: 10, tenant: "acme").map(\.kind) == ["partition.placed"])
        #expect(try reopened.events(after: 0, limit: 10, tenant: "globex").isEmpty)
    }

    @Test func aStaleGenerationIsRefusedAndChangesNothing() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try ClusterStore(directory: directory)
        try store.commit([.putTenant(tenant)], expectedGeneration: 0)
        let other = Tenant(name: "globex", maxCores: 1, maxMemoryBytes: 1, maxDiskBytes: 1)
        #expect(throws: StoreError.conflict(expected: 0, found: 1)) {
            try store.commit([.putTenant(other)], expectedGeneration: 0)
        }
        #expect(try store.load().tenants.keys.sorted() == ["acme"])
    }

    @Test func aFailingOpRollsBackTheWholeTransaction() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try ClusterStore(directory: directory)
        // A claim on a blade that does not exist breaks a foreign key: nothing of it lands.
        let spec = PartitionSpec(name: "p", tenant: "acme", cores: 1, memoryBytes: 1 << 30, diskBytes: 0)
        #expect(throws: StoreError.self) {
            try store.commit([.putTenant(tenant), .putPartition(Partition(spec: spec)),
                              .putClaim(Claim(partition: "p", blade: "nowhere", cores: [0], memoryBase: 0, memoryBytes: 1 << 30, diskBytes: 0, reason: ""))],
                             expectedGeneration: 0)
        }
        let model = try store.load()
        #expect(model.generation == 0 && model.tenants.isEmpty && model.partitions.isEmpty)
    }

    @Test func concurrentWritersOnTheSameGenerationCommitOnce() async throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try ClusterStore(directory: directory)
        let second = try ClusterStore(directory: directory)
        let results = await withTaskGroup(of: Bool.self) { group in
            for (index, store) in [first, second, first, second].enumerated() {
                group.addTask {
                    let tenant = Tenant(name: "t\(index)", maxCores: 1, maxMemoryBytes: 1, maxDiskBytes: 1)
                    return (try? store.commit([.putTenant(tenant)], expectedGeneration: 0)) != nil
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { $0 }.count == 1)
        #expect(try first.load().tenants.count == 1)
    }

    @Test func compactionKeepsTheNewestEventsAndNeverReusesASequence() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try ClusterStore(directory: directory)
        var generation: UInt64 = 0
        for index in 0..<20 {
            let event = ClusterEvent(timeMillis: UInt64(1000 + index), kind: "tenant.created", subject: "t\(index)", message: "m")
            generation = try store.commit([.event(event)], expectedGeneration: generation).generation
        }
        #expect(try store.compactEvents(keepingLast: 5, olderThanMillis: 0) == 15)
        #expect(try store.events(after: 0, limit: 100, tenant: nil).map(\.sequence) == Array(16...20))
        // By age: events written before the cutoff go even within the count.
        #expect(try store.compactEvents(keepingLast: 100, olderThanMillis: 1018) == 3)
        #expect(try store.events(after: 0, limit: 100, tenant: nil).map(\.sequence) == [19, 20])
        let next = try store.commit([.event(ClusterEvent(timeMillis: 2000, kind: "k", subject: "s", message: "m"))], expectedGeneration: generation)
        #expect(next.events.first?.sequence == 21)
    }

    @Test func aVersion1StoreIsUpgradedInPlaceWithItsData() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let old = try ClusterStore.open(directory: directory, upTo: "v1: tenants, blades, partitions, claims, VMs, events")
            try old.write { db in
                try db.execute(sql: """
                    INSERT INTO blades (id, cores, memory, disk, nested, chassis, rack, power_domain, cordoned, agent_version, backend, registered_ms)
                    VALUES ('b1', 16, 1024, 0, 1, 'c1', 'r1', 'p1', 0, 'old', 'sim', 1)
                    """)
            }
        }
        let store = try ClusterStore(directory: directory)
        #expect(try store.appliedMigrations() == ["v1: tenants, blades, partitions, claims, VMs, events", "v2: blades' disks and NICs",
                                                  "v3: why a partition lost its claim", "v4: live migrations"])
        let blade = try #require(try store.load().blades["b1"])
        #expect(blade.agentVersion == "old" && blade.cores == 16 && blade.disks.isEmpty && blade.nics.isEmpty)
    }
}
