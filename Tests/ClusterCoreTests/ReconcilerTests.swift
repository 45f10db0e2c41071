import ClusterCore
import Testing

@Suite struct ReconcilerTests {
    func placed() throws -> ClusterModel {
        var (commands, model, health) = smallCluster(blades: 1, admission: nil)
        let spec = PartitionSpec(name: "vmm", tenant: "acme", cores: 4, memoryBytes: 4 << 30, diskBytes: 0, vmm: true)
        commit(try commands.createPartition(spec, by: .tenant("acme"), in: model, health: health, now: 1).ops, to: &model)
        commit(try commands.createVM(VM(name: "a", partition: "vmm", vcpus: 1, memoryBytes: 1 << 30, workload: .idle),
                                     by: .tenant("acme"), in: model, now: 1), to: &model)
        return model
    }

    @Test func anEmptyBladeGetsDefineActivateAndVMs() throws {
        let model = try placed()
        let commands = Reconciler.commands(for: "blade-0", model: model, actual: [:])
        #expect(commands.map(\.description) == ["define vmm", "activate vmm", "create VM vmm/a"])
        guard case .define(let plan) = commands[0] else { Issue.record("no define"); return }
        #expect(plan.cores == model.claims["vmm"]!.cores && plan.vmm && plan.shadowVMCS)
    }

    @Test func aConvergedBladeGetsNothing() throws {
        let model = try placed()
        let actual = ["vmm": LPARReport(name: "vmm", state: .running, vms: [.init(name: "a", state: .running, operations: 1)])]
        #expect(Reconciler.commands(for: "blade-0", model: model, actual: actual).isEmpty)
    }

    @Test func strayLPARsAndVMsAreRemovedAndStoppedPartitionsDeactivated() throws {
        var model = try placed()
        model.partitions["vmm"]!.desired = .stopped
        let actual = [
            "vmm": LPARReport(name: "vmm", state: .running, vms: [.init(name: "a", state: .running, operations: 1),
                                                                  .init(name: "old", state: .running, operations: 1)]),
            "gone": LPARReport(name: "gone", state: .running),
        ]
        #expect(Reconciler.commands(for: "blade-0", model: model, actual: actual).map(\.description)
                == ["remove gone", "deactivate vmm", "delete VM vmm/old"])
    }

    /// A deleted partition's LPAR still holds the cores a new claim was given: it is removed
    /// before the new LPAR is defined, or the agent would refuse the define.
    @Test func anLPARThatLostItsClaimIsRemovedBeforeAnyDefine() throws {
        var model = try placed()
        let claim = model.claims["vmm"]!
        model.apply([.deleteVM(VMKey(partition: "vmm", name: "a")), .deleteClaim("vmm"), .deletePartition("vmm")], generation: 3, lastEventSequence: 0)
        let spec = PartitionSpec(name: "next", tenant: "acme", cores: 4, memoryBytes: 4 << 30, diskBytes: 0)
        var next = claim
        next.partition = "next"
        model.apply([.putPartition(Partition(spec: spec)), .putClaim(next)], generation: 4, lastEventSequence: 0)
        let actual = ["vmm": LPARReport(name: "vmm", state: .running)]
        #expect(Reconciler.commands(for: "blade-0", model: model, actual: actual).map(\.description)
                == ["remove vmm", "define next", "activate next"])
    }

    @Test func unwantedVMsAreDeletedBeforeNewOnesAreCreated() throws {
        var model = try placed()
        model.apply([.putVM(VM(name: "b", partition: "vmm", vcpus: 1, memoryBytes: 1 << 30, workload: .idle))], generation: 9, lastEventSequence: 0)
        let actual = ["vmm": LPARReport(name: "vmm", state: .running, vms: [.init(name: "old", state: .running, operations: 1)])]
        #expect(Reconciler.commands(for: "blade-0", model: model, actual: actual).map(\.description)
                == ["delete VM vmm/old", "create VM vmm/a", "create VM vmm/b"])
    }

    @Test func failedLPARsAreLeftForRecovery() throws {
        let model = try placed()
        let actual = ["vmm": LPARReport(name: "vmm", state: .failed, failureReason: "triple fault")]
        #expect(Reconciler.commands(for: "blade-0", model: model, actual: actual).isEmpty)
    }
}

@Suite struct LivenessTests {
    @Test func readySuspectUnreachableAndBack() {
        var liveness = BladeLiveness(suspectAfterMillis: 3000, unreachableAfterMillis: 5000)
        #expect(liveness.heard(from: "b", at: 1000)?.to == .ready)
        #expect(liveness.evaluate(at: 3999).isEmpty)
        #expect(liveness.evaluate(at: 4000).map(\.to) == [.suspect])
        #expect(liveness.evaluate(at: 4500).isEmpty)
        #expect(liveness.evaluate(at: 6000).map(\.to) == [.unreachable])
        #expect(liveness.heard(from: "b", at: 7000)?.from == .unreachable)
        #expect(liveness.health(of: "b", at: 7001) == .ready)
        #expect(liveness.health(of: "never", at: 0) == .unreachable)
    }

    @Test func heartbeatsAreCountedPerBladeUntilItIsForgotten() {
        var liveness = BladeLiveness(suspectAfterMillis: 3000, unreachableAfterMillis: 5000)
        liveness.track("b", since: 0)
        #expect(liveness.heartbeats["b"] == nil)
        for time in stride(from: UInt64(100), through: 1000, by: 100) { _ = liveness.heard(from: "b", at: time) }
        _ = liveness.heard(from: "c", at: 1000)
        #expect(liveness.heartbeats == ["b": 10, "c": 1])
        liveness.forget("b")
        #expect(liveness.heartbeats == ["c": 1])
    }
}

@Suite struct TestSwitchTests {
    @Test func switchesAreReadByNameAndAnUnknownOneIsRefused() throws {
        #expect(try TestSwitch.parse("").get().isEmpty)
        #expect(try TestSwitch.parse("no-store-cas, shared-store").get() == [.noStoreCAS, .sharedStore])
        guard case .failure(let error) = TestSwitch.parse("no-cas") else { Issue.record("accepted"); return }
        #expect(error.message == "NESTOR_TEST_SWITCHES names an unknown test switch 'no-cas' (known: no-store-cas, skip-hard-anti-affinity, shared-store)")
    }
}
