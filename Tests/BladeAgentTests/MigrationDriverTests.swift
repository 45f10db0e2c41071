import AgentCore
@testable import BladeAgentKit
import Partitioner
import Testing

/// The sim driver's migration seam, both halves in one process.
@Suite struct MigrationDriverTests {
    @Test func theSimDriverMovesMemoryAndStateFromSourceToTarget() async throws {
        let spec = LPARSpec(name: "erp", cpu: .dedicated(cores: [0, 1, 2, 3]), memory: MemoryRange(base: 1 << 30, size: 256 << 20),
                            vmm: true, vmcsShadowing: true)
        let source = SimLPARDriver(sliceSeconds: 0.002, dirtyBytesPerSecond: 512 << 20)
        let target = SimLPARDriver(sliceSeconds: 0.002)
        #expect(await source.start(LPARLaunch(spec: spec, diskBytes: 0, poolCores: [])) == .started)
        await source.createVM(VMRequest(partition: "erp", name: "db", vcpus: 2, workload: .sysbenchOLTP), slot: 0)
        _ = await source.heartbeatObservations()
        let layout = try await source.startOutgoing("erp")
        _ = try await target.prepareIncoming(spec)
        var dirty = try await source.collectDirty("erp")
        for _ in 0..<3 {
            let payloads = try await source.readPages("erp", dirty)
            try await target.storePages("erp", zip(dirty, payloads).map { ($0.lowerBound, $1) })
            try await Task.sleep(for: .milliseconds(20))
            dirty = try await source.collectDirty("erp")
        }
        #expect(layout.pageCount == 65536)
        try await source.pause("erp")
        // The last round's remainder, then what the guest wrote until the pause.
        let last = MigrationSender.union(dirty, try await source.collectDirty("erp"))
        try await target.storePages("erp", zip(last, try await source.readPages("erp", last)).map { ($0.lowerBound, $1) })
        let vms = try await target.loadState("erp", try await source.finalState("erp"))
        #expect(vms.map(\.name) == ["db"])
        #expect(try await target.incomingHash("erp") == (try await source.memoryHash("erp")))
        #expect(await target.resumeIncoming(LPARLaunch(spec: spec, diskBytes: 0, poolCores: [])) == .started)
        #expect(MigrationSender.union([0..<4, 10..<12], [2..<6, 12..<13, 20..<21]) == [0..<6, 10..<13, 20..<21])
    }
}
