import AgentCore
import Partitioner
import Testing

/// A blade of 8 cores and 9 GiB (1 GiB for L0), and LPARs that fit it side by side.
func blade() -> BladeResources {
    BladeResources(coreCount: 8, memoryBytes: 9 << 30, l0ReservedBytes: 1 << 30,
                   disks: [BladeDisk(id: "fc0", lunCount: 16, shared: true)], nics: [BladeNIC(id: "eth0", shared: true)],
                   nestedCapable: true)
}

func definition(_ name: String, index: Int, vmm: Bool = true) -> LPARDefinitionInput {
    LPARDefinitionInput(name: name, dedicatedCores: [index * 2, index * 2 + 1], memoryBase: UInt64(index) << 30, memoryBytes: 1 << 30,
                        vmm: vmm, vmcsShadowing: vmm, diskBytes: 1 << 20)
}

func newCore(slots: Int? = 4, sharedDisk: SharedDiskLayout? = nil) throws -> AgentCore {
    try AgentCore(resources: blade(), configuration: .init(l0ReservedBytes: 1 << 30, sharedDisk: sharedDisk, vmSlots: slots))
}

/// The replies among `directives`, by command id.
func replies(_ directives: [AgentDirective]) -> [String: CommandOutcome] {
    var answers: [String: CommandOutcome] = [:]
    for case .reply(let id, let outcome, _) in directives { answers[id] = outcome }
    return answers
}

/// The ways to reach each state of an LPAR named "a" through the core's own inputs.
let paths: [LPARState: [AgentInput]] = [
    .defined: [.command(id: "d", .define(definition("a", index: 0)))],
    .activating: [.command(id: "d", .define(definition("a", index: 0))), .command(id: "s", .activate(lpar: "a"))],
    .running: [.command(id: "d", .define(definition("a", index: 0))), .command(id: "s", .activate(lpar: "a")), .driver(lpar: "a", .started)],
    .deactivating: [.command(id: "d", .define(definition("a", index: 0))), .command(id: "s", .activate(lpar: "a")), .driver(lpar: "a", .started),
                    .command(id: "x", .deactivate(lpar: "a"))],
    .stopped: [.command(id: "d", .define(definition("a", index: 0))), .command(id: "s", .activate(lpar: "a")), .driver(lpar: "a", .started),
               .command(id: "x", .deactivate(lpar: "a")), .driver(lpar: "a", .stopped)],
    .failed: [.command(id: "d", .define(definition("a", index: 0))), .command(id: "s", .activate(lpar: "a")), .driver(lpar: "a", .started),
              .driver(lpar: "a", .failed(reason: "triple fault"))],
]

func core(in state: LPARState) throws -> AgentCore {
    var core = try newCore()
    for input in try #require(paths[state]) { _ = core.handle(input) }
    #expect(core.state(of: "a") == state)
    return core
}

/// One row of the agent's table: from a state, an input, to a state, and the answer.
struct Row: Sendable, CustomTestStringConvertible {
    var from: LPARState
    var input: AgentInput
    /// nil: the LPAR is gone.
    var to: LPARState?
    /// nil: no answer yet (it comes when the driver reports).
    var answer: CommandOutcome?
    var directive: AgentDirective?
    var testDescription: String { "\(from) + \(input) -> \(to.map(\.rawValue) ?? "gone")" }
}

let activate = AgentInput.command(id: "t", .activate(lpar: "a"))
let deactivate = AgentInput.command(id: "t", .deactivate(lpar: "a"))
let remove = AgentInput.command(id: "t", .remove(lpar: "a"))

let rows: [Row] = [
    // activate
    Row(from: .defined, input: activate, to: .activating, answer: nil),
    Row(from: .stopped, input: activate, to: .activating, answer: nil),
    Row(from: .activating, input: activate, to: .activating, answer: nil),
    Row(from: .running, input: activate, to: .running, answer: .ok),
    Row(from: .deactivating, input: activate, to: .deactivating,
        answer: .refused("LPAR a is deactivating: activate applies to a defined or stopped LPAR")),
    Row(from: .failed, input: activate, to: .failed,
        answer: .refused("LPAR a is failed (triple fault): activate applies to a defined or stopped LPAR")),
    // deactivate
    Row(from: .running, input: deactivate, to: .deactivating, answer: nil, directive: .stop(lpar: "a")),
    Row(from: .deactivating, input: deactivate, to: .deactivating, answer: nil),
    Row(from: .defined, input: deactivate, to: .defined, answer: .ok),
    Row(from: .stopped, input: deactivate, to: .stopped, answer: .ok),
    Row(from: .failed, input: deactivate, to: .failed, answer: .ok),
    Row(from: .activating, input: deactivate, to: .activating,
        answer: .refused("LPAR a is activating: deactivate applies to a running LPAR")),
    // remove
    Row(from: .defined, input: remove, to: nil, answer: .ok, directive: .releaseDisk(lpar: "a", luns: nil)),
    Row(from: .stopped, input: remove, to: nil, answer: .ok),
    Row(from: .failed, input: remove, to: nil, answer: .ok),
    Row(from: .running, input: remove, to: .deactivating, answer: nil, directive: .stop(lpar: "a")),
    Row(from: .deactivating, input: remove, to: .deactivating, answer: nil),
    Row(from: .activating, input: remove, to: .activating,
        answer: .refused("LPAR a is activating: remove applies to an LPAR that is defined, stopped, failed, running or deactivating")),
    // driver reports
    Row(from: .activating, input: .driver(lpar: "a", .started), to: .running, answer: nil),
    Row(from: .activating, input: .driver(lpar: "a", .startFailed(reason: "no kernel")), to: .failed, answer: nil),
    Row(from: .running, input: .driver(lpar: "a", .failed(reason: "killed")), to: .failed, answer: nil),
    Row(from: .deactivating, input: .driver(lpar: "a", .failed(reason: "killed")), to: .failed, answer: nil),
    Row(from: .deactivating, input: .driver(lpar: "a", .stopped), to: .stopped, answer: nil),
    // reports that do not apply change nothing
    Row(from: .running, input: .driver(lpar: "a", .started), to: .running, answer: nil),
    Row(from: .running, input: .driver(lpar: "a", .stopped), to: .running, answer: nil),
    Row(from: .stopped, input: .driver(lpar: "a", .failed(reason: "late")), to: .stopped, answer: nil),
    Row(from: .failed, input: .driver(lpar: "a", .started), to: .failed, answer: nil),
    Row(from: .defined, input: .driver(lpar: "a", .stopped), to: .defined, answer: nil),
]

@Suite struct AgentCoreTableTests {
    @Test(arguments: rows)
    func everyRowOfTheTable(_ row: Row) throws {
        var core = try core(in: row.from)
        let directives = core.handle(row.input)
        #expect(core.state(of: "a") == row.to)
        #expect(replies(directives)["t"] == row.answer)
        if let directive = row.directive { #expect(directives.contains(directive), "\(directives)") }
    }

    @Test func everyStateOfTheLifecycleTheAgentReachesIsCovered() {
        let covered = Set(rows.map(\.from))
        #expect(covered == Set(LPARState.allCases).subtracting([.migrating]))
    }

    @Test func aCommandThatWaitsIsAnsweredWhenTheDriverReports() throws {
        var core = try newCore()
        _ = core.handle(.command(id: "d", .define(definition("a", index: 0))))
        let started = core.handle(.command(id: "s1", .activate(lpar: "a")))
        #expect(started.contains { if case .start = $0 { return true } else { return false } })
        #expect(replies(started).isEmpty)
        // A repeat while it boots starts nothing more and is answered with the first.
        let repeated = core.handle(.command(id: "s2", .activate(lpar: "a")))
        #expect(repeated.isEmpty)
        let up = core.handle(.driver(lpar: "a", .started))
        #expect(replies(up) == ["s1": .ok, "s2": .ok])
    }

    @Test func aFailedStartRefusesEveryWaitingActivate() throws {
        var core = try newCore()
        _ = core.handle(.command(id: "d", .define(definition("a", index: 0))))
        _ = core.handle(.command(id: "s1", .activate(lpar: "a")))
        _ = core.handle(.command(id: "s2", .activate(lpar: "a")))
        let failed = core.handle(.driver(lpar: "a", .startFailed(reason: "the guest did not boot within 20 s")))
        #expect(replies(failed) == ["s1": .refused("the guest did not boot within 20 s"), "s2": .refused("the guest did not boot within 20 s")])
        #expect(core.report(of: "a", observation: nil)?.failureReason == "the guest did not boot within 20 s")
    }

    @Test func removingARunningLPARStopsItThenAnswers() throws {
        var core = try core(in: .running)
        #expect(replies(core.handle(remove)).isEmpty)
        let stopped = core.handle(.driver(lpar: "a", .stopped))
        #expect(replies(stopped) == ["t": .ok])
        #expect(stopped.contains(.releaseDisk(lpar: "a", luns: nil)))
        #expect(core.state(of: "a") == nil)
    }

    @Test func anLPARThatFailsWhileBeingRemovedIsRemoved() throws {
        var core = try core(in: .running)
        _ = core.handle(remove)
        let failed = core.handle(.driver(lpar: "a", .failed(reason: "died of signal 9 (SIGKILL)")))
        #expect(replies(failed) == ["t": .ok])
        #expect(core.state(of: "a") == nil)
    }

    @Test func anLPARThatFailsWhileStoppingRefusesTheDeactivate() throws {
        var core = try core(in: .deactivating)
        let failed = core.handle(.driver(lpar: "a", .failed(reason: "died of signal 9 (SIGKILL)")))
        #expect(replies(failed) == ["x": .refused("LPAR a failed while stopping: died of signal 9 (SIGKILL)")])
    }
}

@Suite struct AgentCoreCommandTests {
    @Test func commandsForAnUndefinedLPARAreRefusedAndRemoveIsANoOp() throws {
        var core = try newCore()
        #expect(replies(core.handle(.command(id: "1", .activate(lpar: "zz")))) == ["1": .refused("LPAR zz is not defined")])
        #expect(replies(core.handle(.command(id: "2", .deactivate(lpar: "zz")))) == ["2": .refused("LPAR zz is not defined")])
        #expect(replies(core.handle(.command(id: "3", .createVM(VMRequest(partition: "zz", name: "v"))))) == ["3": .refused("LPAR zz is not defined")])
        #expect(replies(core.handle(.command(id: "4", .remove(lpar: "zz")))) == ["4": .ok])
        #expect(replies(core.handle(.command(id: "5", .deleteVM(partition: "zz", name: "v")))) == ["5": .ok])
    }

    @Test func aDefinitionIsIdempotentAndAnotherOneNeedsTheLPARStopped() throws {
        var core = try core(in: .running)
        #expect(replies(core.handle(.command(id: "1", .define(definition("a", index: 0))))) == ["1": .ok])
        var bigger = definition("a", index: 0)
        bigger.memoryBytes = 2 << 30
        #expect(replies(core.handle(.command(id: "2", .define(bigger)))) == ["2": .refused("LPAR a is running with another definition; stop it first")])
    }

    @Test func aDefinitionThePartitionerRefusesChangesNothing() throws {
        var core = try newCore()
        _ = core.handle(.command(id: "1", .define(definition("a", index: 0))))
        let before = core
        var clash = definition("b", index: 1)
        clash.dedicatedCores = [1, 2]
        let answer = replies(core.handle(.command(id: "2", .define(clash))))["2"]
        guard case .refused(let message) = answer else { Issue.record("not refused: \(String(describing: answer))"); return }
        #expect(message.contains("core 1"))
        #expect(core == before)
    }

    @Test func vmsNeedARunningGuestHypervisorAndAFreeSlot() throws {
        var core = try newCore(slots: 2)
        _ = core.handle(.command(id: "d", .define(definition("a", index: 0))))
        #expect(replies(core.handle(.command(id: "1", .createVM(VMRequest(partition: "a", name: "v1"))))) == ["1": .refused("LPAR a is defined, not running")])
        _ = core.handle(.command(id: "s", .activate(lpar: "a")))
        _ = core.handle(.driver(lpar: "a", .started))
        let first = core.handle(.command(id: "2", .createVM(VMRequest(partition: "a", name: "v1"))))
        #expect(first.contains(.createVM(VMRequest(partition: "a", name: "v1"), slot: 0)))
        #expect(replies(core.handle(.command(id: "3", .createVM(VMRequest(partition: "a", name: "v1"))))) == ["3": .ok])
        _ = core.handle(.command(id: "4", .createVM(VMRequest(partition: "a", name: "v2"))))
        #expect(replies(core.handle(.command(id: "5", .createVM(VMRequest(partition: "a", name: "v3"))))) == ["5": .refused("the guest hypervisor of a runs at most 2 L2 VMs")])
        #expect(core.vmState("v1", in: "a") == .creating)
        _ = core.handle(.driver(lpar: "a", .vm(name: "v1", .started)))
        #expect(core.vmState("v1", in: "a") == .running)
        _ = core.handle(.driver(lpar: "a", .vm(name: "v1", .failed(reason: "exit reason 2"))))
        #expect(core.vmState("v1", in: "a") == .failed(reason: "exit reason 2"))
        // A failed VM does not come back by a late report.
        _ = core.handle(.driver(lpar: "a", .vm(name: "v1", .started)))
        #expect(core.vmState("v1", in: "a") == .failed(reason: "exit reason 2"))
        let deleted = core.handle(.command(id: "6", .deleteVM(partition: "a", name: "v1")))
        #expect(deleted.contains(.deleteVM(partition: "a", name: "v1", slot: 0)))
        #expect(core.vmSlots(in: "a") == ["v2": 1])
        // The LPAR stopping ends its VMs.
        _ = core.handle(.command(id: "x", .deactivate(lpar: "a")))
        _ = core.handle(.driver(lpar: "a", .stopped))
        #expect(core.vmSlots(in: "a").isEmpty)
    }

    @Test func aPlainLPARRunsNoVMs() throws {
        var core = try newCore()
        _ = core.handle(.command(id: "d", .define(definition("p", index: 0, vmm: false))))
        _ = core.handle(.command(id: "s", .activate(lpar: "p")))
        _ = core.handle(.driver(lpar: "p", .started))
        #expect(replies(core.handle(.command(id: "1", .createVM(VMRequest(partition: "p", name: "v"))))) == ["1": .refused("LPAR p runs no guest hypervisor")])
    }

    @Test func aLUNRangeIsNotGivenAwayUntilItsDiskIsReleased() throws {
        let layout = SharedDiskLayout(diskID: "fc0", lunCount: 4, lunBytes: 1 << 20)
        var core = try newCore(sharedDisk: layout)
        var a = definition("a", index: 0)
        a.diskBytes = 2 << 20
        let defined = core.handle(.command(id: "1", .define(a)))
        #expect(defined.contains(.saveLUNs(["a": 0..<2])))
        let removed = core.handle(.command(id: "2", .remove(lpar: "a")))
        #expect(removed.contains(.releaseDisk(lpar: "a", luns: 0..<2)))
        // While it is zeroed, another LPAR gets the next range, and "a" cannot come back.
        var b = definition("b", index: 1)
        b.diskBytes = 2 << 20
        #expect(core.handle(.command(id: "3", .define(b))).contains(.saveLUNs(["a": 0..<2, "b": 2..<4])))
        #expect(replies(core.handle(.command(id: "4", .define(a)))) == ["4": .refused("LPAR a was removed and its disk is still being released; define it again when that is done")])
        #expect(core.handle(.driver(lpar: "a", .diskReleased)) == [.saveLUNs(["b": 2..<4])])
        #expect(replies(core.handle(.command(id: "5", .define(a))))["5"] == .ok)
        #expect(core.lunRanges == ["a": 0..<2, "b": 2..<4])
    }

    @Test func keptLUNRangesComeBackToTheirLPAR() throws {
        let layout = SharedDiskLayout(diskID: "fc0", lunCount: 4, lunBytes: 1 << 20)
        var core = try AgentCore(resources: blade(), configuration: .init(l0ReservedBytes: 1 << 30, sharedDisk: layout), keptLUNs: ["a": 2..<3])
        _ = core.handle(.command(id: "1", .define(definition("a", index: 0))))
        #expect(core.partitioner.lpars["a"]?.spec.disks == [.shared(diskID: "fc0", luns: 2..<3)])
        #expect(core.lunRanges == ["a": 2..<3])
    }

    @Test func theHeartbeatRunsOnlyWhileTheLinkIsUp() throws {
        var core = try newCore()
        #expect(core.handle(.tick).isEmpty)
        _ = core.handle(.link(.up))
        #expect(core.handle(.tick) == [.sendHeartbeat(sequence: 1)])
        #expect(core.handle(.tick) == [.sendHeartbeat(sequence: 2)])
        _ = core.handle(.link(.down))
        #expect(core.handle(.tick).isEmpty)
    }
}
