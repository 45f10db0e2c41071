#if os(Linux)
import Foundation
import Glibc
import KVMBackend
import Testing

func bladeAgent() -> String {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("blade-agent").path), directory.path != "/" {
        directory.deleteLastPathComponent()
    }
    return directory.appendingPathComponent("blade-agent").path
}

/// Every LPAR is its own process, as QEMU runs one per VM: a guest failure or a crash of one
/// LPAR's L0 code fails that LPAR only.
@Suite(.enabled(if: kvmAvailability.available, "needs /dev/kvm: \(kvmAvailability.reason)"), .serialized)
struct LPARProcessTests {
    @Test func aCrashedLPARFailsAloneWhileTheOtherRunsOn() async throws {
        let disk = try makeDisk(bytes: 256 << 10, seed: 9)
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let victim = try LPARSupervisor(LPARConfiguration(name: "victim", memoryBytes: 16 << 20, hostCores: [0], image: guestImage()),
                                        executable: bladeAgent())
        let reader = try LPARSupervisor(LPARConfiguration(name: "reader", memoryBytes: 16 << 20, hostCores: [1], image: guestImage(),
                                                          disk: .init(path: disk)), executable: bladeAgent())
        defer { victim.terminate(); reader.terminate() }
        #expect(victim.pid != reader.pid)
        #expect(await victim.wait(timeout: 10) { $0.state == .ready })
        #expect(await reader.wait(timeout: 10) { $0.state == .ready })
        reader.send(LPARHostCommand.workload(.diskRead))
        #expect(await reader.wait(timeout: 20) { $0.passes >= 1 })
        #expect(reader.status.checksum == (try fnv1a(disk, offset: 0, length: 256 << 10)))
        // The guest triple-faults: its process reports it and exits; the other LPAR reads on.
        victim.send(LPARHostCommand.crash)
        #expect(await victim.wait(timeout: 10) { $0.state.failureReason != nil })
        #expect(victim.status.reason == "triple fault (KVM shutdown exit)")
        #expect(victim.console.contains("crashing on command"))
        let before = reader.status.operations
        #expect(await reader.wait(timeout: 10) { $0.operations > before + 50 })
        #expect(reader.status.state == .running)
    }

    @Test func aCrashOfOneLPARsL0ProcessFailsOnlyThatLPAR() async throws {
        let first = try LPARSupervisor(LPARConfiguration(name: "first", memoryBytes: 16 << 20, hostCores: [0], image: guestImage()),
                                       executable: bladeAgent())
        let second = try LPARSupervisor(LPARConfiguration(name: "second", memoryBytes: 16 << 20, hostCores: [1], image: guestImage()),
                                        executable: bladeAgent())
        defer { first.terminate(); second.terminate() }
        #expect(await first.wait(timeout: 10) { $0.state == .ready })
        #expect(await second.wait(timeout: 10) { $0.state == .ready })
        second.send(LPARHostCommand.workload(.compute))
        kill(first.pid, SIGSEGV)   // as if L0's code for this LPAR crashed
        #expect(await first.wait(timeout: 10) { $0.state.failureReason != nil })
        #expect(first.status.reason == "the LPAR's process died of signal 11 (SIGSEGV)")
        let before = second.status.operations
        #expect(await second.wait(timeout: 10) { $0.operations > before + 100 })
    }

    @Test func anLPARThatCannotBeBuiltSaysWhyAndLeavesNoProcess() async throws {
        let broken = try LPARSupervisor(LPARConfiguration(name: "broken", memoryBytes: 16 << 20, hostCores: [0], image: guestImage(),
                                                          disk: .init(path: "/nonexistent/disk.img")), executable: bladeAgent())
        #expect(await broken.wait(timeout: 10) { $0.state.failureReason != nil })
        #expect(broken.status.reason == "the disk image /nonexistent/disk.img cannot be opened: No such file or directory")
        await broken.stop()
        #expect(!broken.isRunning)
    }
}
#endif

#if os(Linux)
/// Shared-mode LPARs: a CPU control group per LPAR carries its service ratio and its cap.
@Suite(.enabled(if: kvmAvailability.available, "needs /dev/kvm: \(kvmAvailability.reason)"), .serialized)
struct SharedLPARTests {
    @Test func aCappedSharedLPARIsHeldToItsRatioAndAnUncappedOneIsNot() async throws {
        let capped = try LPARSupervisor(LPARConfiguration(name: "capped", memoryBytes: 16 << 20, hostCores: [0, 1], image: guestImage(),
                                                          share: .init(serviceRatio: 20, capped: true)), executable: bladeAgent())
        let free = try LPARSupervisor(LPARConfiguration(name: "free", memoryBytes: 16 << 20, hostCores: [0, 1], image: guestImage(),
                                                        share: .init(serviceRatio: 50, capped: false)), executable: bladeAgent())
        let groups = [capped.cpuGroup, free.cpuGroup].compactMap { $0 }
        defer { capped.terminate(); free.terminate() }
        let cappedGroup = try #require(capped.cpuGroup)
        let freeGroup = try #require(free.cpuGroup)
        #expect(cappedGroup.read("cgroup.procs")?.split(separator: "\n").contains(Substring(String(capped.pid))) == true)
        switch cappedGroup.version {
        case .v1:
            #expect(cappedGroup.read("cpu.cfs_quota_us") == "20000" && cappedGroup.read("cpu.shares") == "204")
            #expect(freeGroup.read("cpu.cfs_quota_us") == "-1" && freeGroup.read("cpu.shares") == "512")
        case .v2:
            #expect(cappedGroup.read("cpu.max") == "20000 100000" && freeGroup.read("cpu.max") == "max 100000")
        }
        #expect(await capped.wait(timeout: 10) { $0.state == .ready })
        #expect(await free.wait(timeout: 10) { $0.state == .ready })
        #expect(capped.status.pinning == "shared pool: host CPUs 0,1")
        capped.send(LPARHostCommand.workload(.compute))
        free.send(LPARHostCommand.workload(.compute))
        // The kernel holds the capped one back (throttled periods); the uncapped one never.
        #expect(await capped.wait(timeout: 10) { _ in cappedGroup.throttledPeriods > 2 })
        #expect(freeGroup.throttledPeriods == 0)
        #expect(free.status.operations > 0)
        await capped.stop()
        await free.stop()
        for group in groups { #expect(!FileManager.default.fileExists(atPath: group.path), "\(group.path) left behind") }
    }

    @Test func aServiceRatioOutOfRangeIsRefused() async throws {
        let broken = try LPARSupervisor(LPARConfiguration(name: "ratio", memoryBytes: 16 << 20, hostCores: [0], image: guestImage(),
                                                          share: .init(serviceRatio: 5000, capped: false)), executable: bladeAgent())
        #expect(await broken.wait(timeout: 10) { $0.state.failureReason != nil })
        #expect(broken.status.reason == "service ratio 5000 is not within 1...1000")
        await broken.stop()
    }
}
#endif
