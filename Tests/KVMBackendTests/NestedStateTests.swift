#if os(Linux)
import Foundation
import KVM
import KVMBackend
import Partitioner
import Testing

/// Nested state save and restore: an LPAR whose guest hypervisor runs two L2 VMs is paused,
/// saved, restored into a fresh process and resumed; the guests go on as if nothing had
/// happened (their counters, their disks' checksums, L1's VMX state).
@Suite(.enabled(if: kvmAvailability.available, "needs /dev/kvm: \(kvmAvailability.reason)"), .serialized)
struct NestedStateTests {
    func configuration(disk: String, shadowing: Bool, restore: String? = nil) -> LPARConfiguration {
        var configuration = LPARConfiguration(name: "saved", memoryBytes: 64 << 20, hostCores: [0], image: guestImage("l1-vmm.bin"),
                                              disk: .init(path: disk),
                                              vmx: .init(microcode: guestImage("vmx-microcode.bin"), shadowing: shadowing))
        configuration.restore = restore
        return configuration
    }

    @Test(arguments: [true, false])
    func anLPARWithRunningL2VMsIsSavedAndRestoredIntoAFreshProcess(shadowing: Bool) async throws {
        let disk = try makeDisk(bytes: 2 << 20, seed: 29)   // a 512 KiB quarter per VM
        let snapshot = NSTemporaryDirectory() + "nestor-snapshot-\(UUID().uuidString.prefix(8)).plist"
        defer {
            try? FileManager.default.removeItem(atPath: disk)
            try? FileManager.default.removeItem(atPath: snapshot)
        }
        let expected = try (0...1).map { try fnv1a(disk, offset: $0 << 19, length: 1 << 19) }
        let first = try LPARSupervisor(configuration(disk: disk, shadowing: shadowing), executable: bladeAgent())
        defer { first.terminate() }
        #expect(await first.wait(timeout: 30) { $0.state == .ready })
        // Two VMs read their disks; a third spins without exits, in 10 ms preemption-timer slices.
        for (slot, workload) in [(0, GuestABI.VMTable.Workload.iometer), (1, .iometer), (2, .spin)] {
            first.send(.post(.vmCreate, argument: UInt64(slot) | workload.rawValue << 8))
            #expect(await first.wait(timeout: 30) { $0.vms?[slot].state == .running })
        }
        #expect(await first.wait(timeout: 60) { status in (0...1).allSatisfy { (status.vms?[$0].passes ?? 0) >= 1 } })
        // Save it while both L2 VMs run (in L2 or in L1 at that moment, whichever it is).
        first.send(LPARHostCommand.save(path: snapshot))
        #expect(await first.wait(timeout: 30) { $0.state == .saved(path: snapshot) }, "\(first.status)")
        let saved = try #require(first.status.vms)
        let savedNested = try #require(first.status.nested)
        #expect(await first.waitForExit(timeout: 10))
        // The snapshot holds the nested state: VMX on, a current VMCS, both L2 vCPUs.
        let contents = try LPARSnapshot.read(from: snapshot)
        let nested = try #require(contents.nested)
        #expect(nested.vmx.inVMXOperation && nested.vmx.currentRegion != nil && nested.guests.count == 3)
        #expect((nested.vmx.shadowSlots != nil) == shadowing)

        let second = try LPARSupervisor(configuration(disk: disk, shadowing: shadowing, restore: snapshot), executable: bladeAgent())
        defer { second.terminate() }
        // It goes on: more passes over each disk, the same checksums, counters that never went back.
        #expect(await second.wait(timeout: 60) { status in
            (0...1).allSatisfy { (status.vms?[$0].passes ?? 0) >= saved[$0].passes + 2 }
        }, "\(second.status)")
        let restored = try #require(second.status.vms)
        for slot in 0...1 {
            #expect(restored[slot].state == .running && restored[slot].errors == 0)
            #expect(restored[slot].checksum == expected[slot])
            #expect(restored[slot].operations > saved[slot].operations && restored[slot].exits > saved[slot].exits)
            #expect(restored[slot].diskFirstSector == saved[slot].diskFirstSector)
        }
        #expect(restored[2].operations > saved[2].operations)
        let after = try #require(second.status.nested)
        #expect(after.l2Entries > savedNested.l2Entries)
        // L1's console history came along.
        #expect(second.console.contains("vm 0: created") && second.console.contains("vm 1: created"))
    }

    @Test func nestedVMXStateRoundTrips() {
        var vmx = NestedVMX(shadowFields: .linuxKVM)
        let copy = NestedVMX(capabilities: vmx.capabilities, shadowFields: .linuxKVM, restoring: vmx.snapshot)
        #expect(copy == vmx)
        vmx.counters.l2Entries = 7
        #expect(NestedVMX(capabilities: vmx.capabilities, shadowFields: .linuxKVM, restoring: vmx.snapshot).counters.l2Entries == 7)
    }
}
#endif
