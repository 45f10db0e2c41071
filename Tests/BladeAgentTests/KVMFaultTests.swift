#if os(Linux)
import AgentCore
import BladeAgentKit
import Foundation
import Glibc
import KVMBackend
import Partitioner
import Protos
import Supervision
import Testing

/// Faults in one LPAR harm nothing outside it: an LPAR process killed at any moment (while
/// commands pour in, during a save, during a VM's creation) fails that LPAR alone, with the
/// signal named, and the agent goes on heartbeating with its other LPARs running.
@Suite(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"), .serialized)
struct KVMFaultTests {
    static let images = KVMRuntimeTests.repository + "/Agents/Guests/images"

    func runtime(_ data: String, cores: Int = 2, nested: Bool = false, sharedDisk: SharedDiskImage? = nil,
                 disks: [BladeDisk] = []) throws -> BladeRuntime {
        var settings = KVMRuntimeSettings(image: Self.images + "/lpar-os.bin", executable: AgentProcess.executable.path,
                                          dataDirectory: data, sharedDisk: sharedDisk)
        if nested {
            settings.vmmImage = Self.images + "/l1-vmm.bin"
            settings.microcode = Self.images + "/vmx-microcode.bin"
        }
        return try BladeRuntime(bladeID: "f1", resources: BladeResources(coreCount: cores, memoryBytes: 2 << 30, l0ReservedBytes: 1 << 30,
                                                                         disks: disks, nestedCapable: nested),
                                sliceSeconds: 0, kvm: settings)
    }

    func define(_ runtime: BladeRuntime, _ name: String, core: UInt32, base: UInt64, vmm: Bool = false, disk: UInt64 = 1 << 20) async -> CommandResultResponse {
        await runtime.execute(AgentCommandRequest(
            commandID: "define-\(name)", kind: .defineLPAR,
            lpar: LPARDefinition(name: name, dedicatedCores: [core], memoryBase: base, memoryBytes: 64 << 20, vmm: vmm,
                                 vmcsShadowing: vmm, diskBytes: disk),
            generation: 1, lparName: name))
    }

    func command(_ runtime: BladeRuntime, _ kind: CommandKind, _ name: String, id: String) async -> CommandResultResponse {
        await runtime.execute(AgentCommandRequest(commandID: id, kind: kind, generation: 1, lparName: name))
    }

    func pid(_ runtime: BladeRuntime, _ name: String) async -> Int32? {
        await (runtime.driver as? KVMLPARDriver)?.pid(of: name)
    }

    @Test func aWriteToAProcessThatIsGoneIsAnErrorNotASignal() throws {
        SignalPolicy.installForSupervisor()
        #expect(SignalPolicy.brokenPipeIgnored)
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        close(descriptors[0])   // the reader is gone
        #expect(PipeWrite.all(Array("stop\n".utf8), to: descriptors[1]) == .peerGone(errno: EPIPE))
        close(descriptors[1])
    }

    @Test func anLPARProcessKilledWhileCommandsPourInFailsAloneEveryRound() async throws {
        let data = NSTemporaryDirectory() + "nestor-kill-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let runtime = try runtime(data)
        await runtime.link(.up)
        #expect(await define(runtime, "bystander", core: 1, base: 512 << 20).ok)
        #expect(await command(runtime, .activate, "bystander", id: "start-bystander").ok)
        await runtime.sendToGuest(.workload(.compute), lpar: "bystander")
        var undelivered = 0
        var heartbeats = 0
        let rounds = 200
        for round in 1...rounds {
            #expect(await define(runtime, "victim", core: 0, base: 0).ok)
            let started = await command(runtime, .activate, "victim", id: "start-\(round)")
            #expect(started.ok, "round \(round): \(started.error ?? "")")
            guard let victim = await pid(runtime, "victim") else { Issue.record("round \(round): no process"); break }
            // Commands as fast as the agent can send them, before, during and after the kill.
            let flood = Task {
                var failed = 0
                while !Task.isCancelled {
                    if !(await runtime.sendToGuest(.peek(0x8000), lpar: "victim")) { failed += 1 }
                    await Task.yield()
                }
                return failed
            }
            kill(victim, SIGKILL)
            let failed = await waitFor(30) { await runtime.state.state(of: "victim") == .failed }
            flood.cancel()
            undelivered += await flood.value
            #expect(failed, "round \(round)")
            let report = await runtime.state.report(of: "victim", observation: nil)
            #expect(report?.failureReason == "the LPAR's process died of signal 9 (SIGKILL)", "round \(round)")
            #expect(await command(runtime, .remove, "victim", id: "remove-\(round)").ok)
            #expect(await waitFor { await runtime.state.releasing.isEmpty })
            // The agent heartbeats on, and the other LPAR runs.
            if let beat = await runtime.tick() {
                heartbeats += 1
                #expect(beat.lpars.first { $0.name == "bystander" }?.state == .running, "round \(round)")
            }
        }
        #expect(heartbeats == rounds)
        let before = await runtime.guestStatus(of: "bystander")?.operations ?? 0
        #expect(await waitFor { (await runtime.guestStatus(of: "bystander")?.operations ?? 0) > before + 100 })
        #expect(await runtime.state.state(of: "bystander") == .running)
        print("kill rounds: \(rounds), commands not delivered to a dead process: \(undelivered), heartbeats: \(heartbeats)")
        await runtime.shutdown()
    }

    @Test(arguments: ["save", "vm create"])
    func aGuestHypervisorLPARKilledDuringAnOperationFailsAlone(during operation: String) async throws {
        let data = NSTemporaryDirectory() + "nestor-kill-vmm-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: data) }
        let runtime = try runtime(data, nested: true)
        await runtime.link(.up)
        #expect(await define(runtime, "bystander", core: 1, base: 512 << 20).ok)
        #expect(await command(runtime, .activate, "bystander", id: "start-bystander").ok)
        var killedFirst = 0
        let rounds = 10
        for round in 1...rounds {
            #expect(await define(runtime, "vmm", core: 0, base: 0, vmm: true).ok)
            let started = await command(runtime, .activate, "vmm", id: "start-\(round)")
            #expect(started.ok, "round \(round): \(started.error ?? "")")
            guard let victim = await pid(runtime, "vmm") else { Issue.record("round \(round): no process"); break }
            if operation == "save" {
                let create = await runtime.execute(AgentCommandRequest(
                    commandID: "vm-\(round)", kind: .createVM,
                    vm: VMInfo(name: "l2", partition: "vmm", vcpus: 1, memoryBytes: 4 << 20, workload: .iometer, state: ""), generation: 1))
                #expect(create.ok)
                #expect(await waitFor { await runtime.state.vmState("l2", in: "vmm") == .running })
                await runtime.sendToGuest(.save(path: data + "/vmm-\(round).snapshot"), lpar: "vmm")
                kill(victim, SIGKILL)
            } else {
                async let create = runtime.execute(AgentCommandRequest(
                    commandID: "vm-\(round)", kind: .createVM,
                    vm: VMInfo(name: "l2", partition: "vmm", vcpus: 1, memoryBytes: 4 << 20, workload: .iometer, state: ""), generation: 1))
                kill(victim, SIGKILL)
                _ = await create
            }
            #expect(await waitFor(30) { await runtime.state.state(of: "vmm") == .failed }, "round \(round)")
            let reason = await runtime.state.report(of: "vmm", observation: nil)?.failureReason
            if reason == "the LPAR's process died of signal 9 (SIGKILL)" { killedFirst += 1 }
            #expect(await command(runtime, .remove, "vmm", id: "remove-\(round)").ok)
            #expect(await waitFor { await runtime.state.releasing.isEmpty })
            let beat = await runtime.tick()
            #expect(beat?.lpars.first { $0.name == "bystander" }?.state == .running, "round \(round)")
        }
        // The kill came first in most rounds (a save that finished first ends the process too).
        #expect(killedFirst > rounds / 2, "\(killedFirst) of \(rounds) rounds")
        print("killed during \(operation): \(killedFirst) of \(rounds) rounds ended by the signal")
        await runtime.shutdown()
    }

    @Test func theAgentHeartbeatsWhileARemovedLPARsLUNRangeIsZeroed() async throws {
        let data = NSTemporaryDirectory() + "nestor-zero-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: data) }
        // 512 MiB of shared disk in 4 LUNs; one LPAR holds all of it.
        let image = data + "/fc0.img"
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        #expect(truncate(image, 512 << 20) == 0)
        let disk = BladeDisk(id: "fc0", lunCount: 4, shared: true)
        let shared = try SharedDiskImage.open(path: image, disk: disk).get()
        let runtime = try runtime(data, sharedDisk: shared, disks: [disk])
        await runtime.link(.up)
        #expect(await define(runtime, "big", core: 0, base: 0, disk: 512 << 20).ok)
        #expect(await runtime.state.lunRanges == ["big": 0..<4])
        // Heartbeats every 100 ms while the range is zeroed: no gap may exceed two intervals.
        let interval = 0.1
        #expect(await command(runtime, .remove, "big", id: "remove").ok)
        var last = Date()
        var longest = 0.0
        var beats = 0
        let began = Date()
        while await !runtime.state.releasing.isEmpty {
            guard await runtime.tick() != nil else { Issue.record("no heartbeat"); break }
            let now = Date()
            longest = max(longest, now.timeIntervalSince(last))
            last = now
            beats += 1
            try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
        }
        let zeroing = Date().timeIntervalSince(began)
        print("zeroing 512 MiB took \(String(format: "%.2f", zeroing)) s; \(beats) heartbeats, longest gap \(String(format: "%.3f", longest)) s")
        #expect(beats >= 3, "the zeroing took \(zeroing) s: too short to show anything")
        #expect(longest < 2 * interval + 0.1, "a heartbeat waited \(longest) s")
        #expect(await runtime.state.lunRanges.isEmpty)
        let handle = try #require(FileHandle(forReadingAtPath: image))
        try handle.seek(toOffset: 300 << 20)
        #expect(try handle.read(upToCount: 4096)?.allSatisfy { $0 == 0 } == true)
        await runtime.shutdown()
    }
}
#endif
