import BladeAgentKit
import Foundation
import Partitioner
import Protos
import Testing

/// The agent's runtime on the kvm backend refuses impossible LPARs before starting anything.
@Suite(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"))
struct KVMRuntimeTests {
    static var repository: String {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.path
    }

    func lparHosts(named name: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
            guard Int(entry) != nil, let command = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return false }
            return command.contains("lpar-host") && command.contains("\"name\":\"\(name)\"")
        }.count
    }

    @Test func moreCoresThanTheBladeOrACoreTakenIsRefusedAndNothingStarts() async throws {
        let data = NSTemporaryDirectory() + "nestor-kvm-runtime-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let settings = KVMRuntimeSettings(image: Self.repository + "/Agents/Guests/images/lpar-os.bin",
                                          executable: AgentProcess.executable.path, dataDirectory: data)
        let runtime = try BladeRuntime(bladeID: "b1", resources: BladeResources(coreCount: 4, memoryBytes: 8 << 30, l0ReservedBytes: 1 << 30,
                                                                                nestedCapable: false),
                                       sliceSeconds: 0, kvm: settings)
        func define(_ name: String, cores: [UInt32], base: UInt64) async -> CommandResultResponse {
            await runtime.execute(AgentCommandRequest(
                commandID: name, kind: .defineLPAR,
                lpar: LPARDefinition(name: name, dedicatedCores: cores, memoryBase: base, memoryBytes: 256 << 20, vmm: false,
                                     vmcsShadowing: false, diskBytes: 1 << 20),
                generation: 1, lparName: name))
        }
        let beyond = await define("wide", cores: [3, 4], base: 0)
        #expect(!beyond.ok)
        #expect(beyond.error?.contains("core 4") == true)
        let first = await define("one", cores: [1], base: 0)
        #expect(first.ok)
        let second = await define("two", cores: [1], base: 256 << 20)
        #expect(!second.ok)
        #expect(second.error?.contains("already dedicated to LPAR one") == true)
        #expect(lparHosts(named: "wide") == 0 && lparHosts(named: "two") == 0)
        // The one that fits boots a real LPAR process; removing it leaves nothing behind.
        let activated = await runtime.execute(AgentCommandRequest(commandID: "a", kind: .activate, generation: 1, lparName: "one"))
        #expect(activated.ok, "\(activated.error ?? "")")
        #expect(activated.status?.state == .running)
        #expect(lparHosts(named: "one") == 1)
        let removed = await runtime.execute(AgentCommandRequest(commandID: "r", kind: .remove, generation: 1, lparName: "one"))
        #expect(removed.ok)
        #expect(lparHosts(named: "one") == 0)
        #expect(await waitFor { await runtime.state.releasing.isEmpty })
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: data)) ?? []).isEmpty)
    }
}

#if os(Linux)
import KVMBackend

/// Shared-mode partitions and the shared disk image, as the controller's commands drive them.
@Suite(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"), .serialized)
struct KVMSharedRuntimeTests {
    /// The host CPUs each vCPU thread (named vcpu-N) of a process may run on ("0-1", "0", ...).
    func allowedCPUs(_ pid: Int32) -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { task in
            guard let name = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8), name.hasPrefix("vcpu-"),
                  let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8) else { return nil }
            return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
                .map { $0.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces) }
        }
    }

    func fnv1a(_ data: Data) -> UInt64 {
        data.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    func define(_ runtime: BladeRuntime, _ name: String, cpus: UInt32, ratio: UInt32, pool: [UInt32], base: UInt64,
                disk: UInt64 = 1 << 20) async -> CommandResultResponse {
        await runtime.execute(AgentCommandRequest(
            commandID: name, kind: .defineLPAR,
            lpar: LPARDefinition(name: name, sharedCPUs: cpus, serviceRatio: ratio, capped: true, memoryBase: base,
                                 memoryBytes: 64 << 20, vmm: false, vmcsShadowing: false, diskBytes: disk, poolCores: pool),
            generation: 1, lparName: name))
    }

    func command(_ runtime: BladeRuntime, _ kind: CommandKind, _ name: String) async -> CommandResultResponse {
        await runtime.execute(AgentCommandRequest(commandID: "\(kind)-\(name)", kind: kind, generation: 1, lparName: name))
    }

    @Test func sharedPartitionsRunOnThePoolTheirClaimsMakeAndMoveWhenItChanges() async throws {
        let data = NSTemporaryDirectory() + "nestor-kvm-shared-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let settings = KVMRuntimeSettings(image: KVMRuntimeTests.repository + "/Agents/Guests/images/lpar-os.bin",
                                          executable: AgentProcess.executable.path, dataDirectory: data)
        let runtime = try BladeRuntime(bladeID: "b1", resources: BladeResources(coreCount: 4, memoryBytes: 2 << 30, l0ReservedBytes: 1 << 30,
                                                                                nestedCapable: false),
                                       sliceSeconds: 0, kvm: settings)
        // 3 vCPUs at 30 % hold one core (claim [0]); the pool is that core.
        #expect(await define(runtime, "s1", cpus: 3, ratio: 30, pool: [0], base: 0).ok)
        #expect(await runtime.sharedPool == [0])
        // A dedicated LPAR cannot take a pool core.
        let clash = await runtime.execute(AgentCommandRequest(
            commandID: "d", kind: .defineLPAR,
            lpar: LPARDefinition(name: "d", dedicatedCores: [0], memoryBase: 128 << 20, memoryBytes: 64 << 20, vmm: false,
                                 vmcsShadowing: false), generation: 1, lparName: "d"))
        #expect(!clash.ok && clash.error?.contains("shared pool") == true, "\(clash.error ?? "")")
        let started = await command(runtime, .activate, "s1")
        #expect(started.ok, "\(started.error ?? "")")
        let s1 = try #require(await runtime.guestStatus(of: "s1"))
        #expect(s1.vcpus == 3)
        // Its guest sees 3 vCPUs, all of them on host CPU 0 (its other threads are not pinned).
        #expect(await waitFor { await runtime.guestStatus(of: "s1")?.pinning == "shared pool: host CPUs 0" })
        #expect(await waitFor { self.allowedCPUs(s1.pid) == ["0", "0", "0"] }, "\(self.allowedCPUs(s1.pid))")
        // A second shared partition brings core 1: the pool grows, and s1 moves onto it too.
        #expect(await define(runtime, "s2", cpus: 1, ratio: 50, pool: [1], base: 64 << 20).ok)
        #expect(await runtime.sharedPool == [0, 1])
        #expect(await waitFor { await runtime.guestStatus(of: "s1")?.pinning == "shared pool: host CPUs 0,1" })
        #expect(await waitFor { self.allowedCPUs(s1.pid) == ["0-1", "0-1", "0-1"] }, "\(self.allowedCPUs(s1.pid))")
        // Entitlements beyond the pool are refused: 90 % + 50 % + 2 CPUs at 100 % is 340 %.
        let greedy = await define(runtime, "s3", cpus: 2, ratio: 100, pool: [], base: 128 << 20)
        #expect(!greedy.ok && greedy.error?.contains("entitled to 340%") == true, "\(greedy.error ?? "")")
        #expect(await runtime.sharedPool == [0, 1])
        // s2 goes: the pool shrinks back to core 0, and s1's vCPUs leave core 1.
        #expect(await command(runtime, .remove, "s2").ok)
        #expect(await runtime.sharedPool == [0])
        #expect(await waitFor { self.allowedCPUs(s1.pid) == ["0", "0", "0"] }, "\(self.allowedCPUs(s1.pid))")
        // Every vCPU of s1 computes.
        await runtime.sendToGuest(LPARHostCommand.workload(.compute), lpar: "s1")
        #expect(await waitFor { (await runtime.guestStatus(of: "s1")?.cpuOperations.filter { $0 > 5 }.count ?? 0) == 3 })
        #expect(await command(runtime, .remove, "s1").ok)
        #expect(await runtime.sharedPool == [])
    }

    @Test func partitionsGetTheirOwnLUNRangeOfOneSharedImageWhichIsZeroedWhenTheyGo() async throws {
        let data = NSTemporaryDirectory() + "nestor-kvm-luns-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: data) }
        // 8 LUNs of 256 KiB, each filled with a pattern of its own.
        let image = data + "/fc0.img"
        var bytes = Data(count: 2 << 20)
        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 7 &+ index >> 18 &+ 1) }
        try bytes.write(to: URL(fileURLWithPath: image))
        let disk = BladeDisk(id: "fc0", lunCount: 8, shared: true)
        let shared = try SharedDiskImage.open(path: image, disk: disk).get()
        #expect(shared.lunBytes == 256 << 10)
        #expect(throws: AgentError.self) { try SharedDiskImage.open(path: data + "/none.img", disk: disk).get() }
        let settings = KVMRuntimeSettings(image: KVMRuntimeTests.repository + "/Agents/Guests/images/lpar-os.bin",
                                          executable: AgentProcess.executable.path, dataDirectory: data, sharedDisk: shared)
        let resources = BladeResources(coreCount: 4, memoryBytes: 2 << 30, l0ReservedBytes: 1 << 30, disks: [disk], nestedCapable: false)
        var runtime = try BladeRuntime(bladeID: "b1", resources: resources, sliceSeconds: 0, kvm: settings)
        func define(_ name: String, core: UInt32, base: UInt64, disk: UInt64) async -> CommandResultResponse {
            await runtime.execute(AgentCommandRequest(
                commandID: name, kind: .defineLPAR,
                lpar: LPARDefinition(name: name, dedicatedCores: [core], memoryBase: base, memoryBytes: 64 << 20, vmm: false,
                                     vmcsShadowing: false, diskBytes: disk),
                generation: 1, lparName: name))
        }
        // a: 300 KiB -> 2 LUNs (0..<2); b: 1 MiB -> 4 LUNs (2..<6); c: 1 MiB does not fit in the 2 left.
        #expect(await define("a", core: 0, base: 0, disk: 300 << 10).ok)
        #expect(await define("b", core: 1, base: 64 << 20, disk: 1 << 20).ok)
        let full = await define("c", core: 2, base: 128 << 20, disk: 1 << 20)
        #expect(!full.ok && full.error?.contains("no free range of 4 LUNs") == true, "\(full.error ?? "")")
        for name in ["a", "b"] {
            let started = await command(runtime, .activate, name)
            #expect(started.ok, "\(started.error ?? "")")
            await runtime.sendToGuest(LPARHostCommand.workload(.diskRead), lpar: name)
        }
        #expect(await waitFor {
            let a = await runtime.guestStatus(of: "a")?.passes ?? 0
            let b = await runtime.guestStatus(of: "b")?.passes ?? 0
            return a >= 1 && b >= 1
        })
        #expect(await runtime.guestStatus(of: "a")?.checksum == fnv1a(bytes[0..<(512 << 10)]))
        #expect(await runtime.guestStatus(of: "b")?.checksum == fnv1a(bytes[(512 << 10)..<(1536 << 10)]))
        // Past its range is an error to the guest, never b's data.
        await runtime.sendToGuest(LPARHostCommand.readLBA((512 << 10) / 512), lpar: "a")
        #expect(await waitFor { await runtime.guestStatus(of: "a")?.probeStatus == UInt64(GuestABI.BlockStatus.outOfRange.rawValue) })
        // A new agent on the same data directory gives b the same range again.
        await runtime.shutdown()
        runtime = try BladeRuntime(bladeID: "b1", resources: resources, sliceSeconds: 0, kvm: settings)
        // The ranges a and b keep (DATA-DIR/luns.json) are not given to c, defined first.
        #expect(await define("c", core: 2, base: 128 << 20, disk: 512 << 10).ok)
        let kept = try JSONDecoder().decode([String: [Int]].self, from: Data(contentsOf: URL(fileURLWithPath: data + "/luns.json")))
        #expect(kept == ["a": [0, 2], "b": [2, 6], "c": [6, 8]])
        #expect(await define("b", core: 1, base: 64 << 20, disk: 1 << 20).ok)
        #expect(await command(runtime, .activate, "b").ok)
        await runtime.sendToGuest(LPARHostCommand.workload(.diskRead), lpar: "b")
        #expect(await waitFor { (await runtime.guestStatus(of: "b")?.passes ?? 0) >= 1 })
        #expect(await runtime.guestStatus(of: "b")?.checksum == fnv1a(bytes[(512 << 10)..<(1536 << 10)]))
        // b goes: its range is zeroed before anyone else gets it; the rest of the image is untouched.
        #expect(await command(runtime, .remove, "b").ok)
        #expect(await waitFor { await runtime.state.releasing.isEmpty })
        let after = try Data(contentsOf: URL(fileURLWithPath: image))
        #expect(after[(512 << 10)..<(1536 << 10)].allSatisfy { $0 == 0 })
        #expect(after[0..<(512 << 10)] == bytes[0..<(512 << 10)])
        #expect(after[(1536 << 10)...] == bytes[(1536 << 10)...])
        #expect(await define("d", core: 3, base: 192 << 20, disk: 1 << 20).ok)
        await runtime.shutdown()
    }
}

/// Polls `condition` every 50 ms for up to `seconds`, without holding a thread.
func waitFor(_ seconds: Double = 20, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}
#endif
