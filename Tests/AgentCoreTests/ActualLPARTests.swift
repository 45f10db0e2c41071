import AgentCore
import Partitioner
import Testing

/// The blade's own view of its LPARs: what L0 gave each one, whatever the controller believes.
@Suite struct ActualLPARTests {
    @Test func everyLPARWithItsCoresMemoryTenantAndState() throws {
        var core = try newCore()
        var first = definition("a", index: 0)
        first.tenant = "acme"
        _ = core.handle(.command(id: "1", .define(first)))
        _ = core.handle(.command(id: "2", .define(definition("b", index: 1, vmm: false))))
        _ = core.handle(.command(id: "3", .activate(lpar: "a")))
        _ = core.handle(.driver(lpar: "a", .started))
        _ = core.handle(.command(id: "4", .createVM(VMRequest(partition: "a", name: "vm1", vcpus: 1, memoryBytes: 64 << 20, workload: .idle))))

        let actual = core.actualLPARs()
        #expect(actual.map(\.name) == ["a", "b"])
        let a = try #require(actual.first)
        #expect(a.tenant == "acme")
        #expect(a.state == .running)
        #expect(a.cpu == .dedicated(cores: [0, 1]))
        // The base is where the definition put it above L0's 1 GiB.
        #expect(a.memory == MemoryRange(base: 1 << 30, size: 1 << 30))
        #expect(a.vms == 1)
        let b = actual[1]
        #expect(b.tenant == nil)
        #expect(b.state == .defined)
        #expect(b.memory == MemoryRange(base: 2 << 30, size: 1 << 30))
    }

    @Test func aFailedLPARSaysWhyAndARemovedOneIsGone() throws {
        var core = try newCore()
        _ = core.handle(.command(id: "1", .define(definition("a", index: 0))))
        _ = core.handle(.command(id: "2", .activate(lpar: "a")))
        _ = core.handle(.driver(lpar: "a", .started))
        _ = core.handle(.driver(lpar: "a", .failed(reason: "triple fault")))
        #expect(core.actualLPARs().map(\.state) == [.failed])
        #expect(core.actualLPARs().first?.failureReason == "triple fault")
        _ = core.handle(.command(id: "3", .remove(lpar: "a")))
        #expect(core.actualLPARs().isEmpty)
    }
}
