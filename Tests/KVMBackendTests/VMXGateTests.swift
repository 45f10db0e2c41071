#if os(Linux)
import Foundation
import KVM
import KVMBackend
import Partitioner
import Testing

/// The VMX gate and the VMX microcode page, exercised by the guest hypervisor image (l1-vmm)
/// on a real KVM: the SDM's VM-instruction errors through the gate, and VMREADs served by the
/// microcode page without an exit when shadowing is on.
@Suite(.enabled(if: kvmAvailability.available, "needs /dev/kvm: \(kvmAvailability.reason)"), .serialized)
struct VMXGateTests {
    func boot(_ name: String, shadowing: Bool = true, vmwriteToReadOnly: Bool = false) async throws -> LPARMachine {
        let vmx = LPARConfiguration.VMX(microcode: guestImage("vmx-microcode.bin"), shadowing: shadowing,
                                        vmwriteToReadOnlyFields: vmwriteToReadOnly)
        let machine = try LPARMachine(LPARConfiguration(name: name, memoryBytes: 32 << 20, hostCores: [0], image: guestImage("l1-vmm.bin"),
                                                        vmx: vmx), kvm: try KVM())
        machine.start()
        #expect(await machine.wait(timeout: 30) { $0.guestState == .ready }, "\(machine.console) \(machine.state)")
        return machine
    }

    /// Posts a command and waits until the guest has carried it out.
    func run(_ machine: LPARMachine, _ command: GuestABI.Command, _ argument: UInt64 = 0) async -> Bool {
        machine.post(command, argument: argument)
        return await machine.wait(timeout: 30) { $0.commandTaken && $0.guestState == .ready }
    }

    @Test(arguments: [false, true])
    func theSDMsErrorsComeBackThroughTheGate(vmwriteToReadOnly: Bool) async throws {
        let machine = try await boot("checks", vmwriteToReadOnly: vmwriteToReadOnly)
        defer { machine.stop() }
        #expect(machine.console.first?.hasPrefix("nestor l1-vmm: long mode up, memory 32 MiB, VMX revision 0x") == true)
        #expect(await run(machine, .vmxChecks))
        let failed = machine.console.filter { $0.hasPrefix("vmx check FAILED") }
        #expect(failed.isEmpty, "\(failed)")
        #expect(machine.load(.probeStatus) == 0)
        #expect(machine.load(.probeValue) == 0x3ff, "\(machine.console)")
        let expected = vmwriteToReadOnly ? "vmx check ok: VMWRITE to a read-only field with IA32_VMX_MISC bit 29: allowed"
                                         : "vmx check ok: VMWRITE to a read-only field without IA32_VMX_MISC bit 29: error 13"
        #expect(machine.console.contains(expected))
        #expect(machine.state == .running)
    }

    @Test func aShadowedVMREADCausesNoExitAndAnUnshadowedOneDoes() async throws {
        let machine = try await boot("shadow")
        defer { machine.stop() }
        #expect(await run(machine, .vmxChecks))   // leaves VMCS A current, GUEST_RIP = 0x123456
        let before = try #require(machine.vmxCounters)
        // 1,000 VMREADs of GUEST_RIP (shadowed): served by the microcode page, no exit.
        #expect(await run(machine, .vmreadLoop, 0x681e | 1000 << 32))
        #expect(machine.load(.probeValue) == 0x123456 && machine.load(.probeStatus) == 0)
        let shadowed = try #require(machine.vmxCounters)
        #expect(shadowed.vmxTrapped["VMREAD", default: 0] == before.vmxTrapped["VMREAD", default: 0])
        #expect(shadowed.vmreadServedByShadow == before.vmreadServedByShadow + 1000)
        // 1,000 VMREADs of GUEST_ES_SELECTOR (not shadowed): 1,000 exits to L0.
        #expect(await run(machine, .vmreadLoop, 0x0800 | 1000 << 32))
        #expect(machine.load(.probeStatus) == 0)
        let unshadowed = try #require(machine.vmxCounters)
        #expect(unshadowed.vmxTrapped["VMREAD", default: 0] == shadowed.vmxTrapped["VMREAD", default: 0] + 1000)
        #expect(unshadowed.vmreadServedByShadow == shadowed.vmreadServedByShadow)
        // A VMWRITE through the page is what L0 sees when it next emulates an instruction.
        #expect(await run(machine, .vmwrite, 0x681e | 0xabcdef << 32))
        #expect(machine.load(.probeStatus) == 0)
        #expect(await run(machine, .vmreadLoop, 0x681e | 1 << 32))
        #expect(machine.load(.probeValue) == 0xabcdef)
        #expect(try #require(machine.vmxCounters).vmwriteServedByShadow >= 2)
    }

    @Test func withoutShadowingEveryVMREADExitsAndTheResultsAreTheSame() async throws {
        let machine = try await boot("no-shadow", shadowing: false)
        defer { machine.stop() }
        #expect(await run(machine, .vmxChecks))
        #expect(machine.load(.probeValue) == 0x3ff, "\(machine.console)")
        let before = try #require(machine.vmxCounters)
        #expect(await run(machine, .vmreadLoop, 0x681e | 1000 << 32))
        #expect(machine.load(.probeValue) == 0x123456 && machine.load(.probeStatus) == 0)
        let after = try #require(machine.vmxCounters)
        #expect(after.vmxTrapped["VMREAD", default: 0] == before.vmxTrapped["VMREAD", default: 0] + 1000)
        #expect(after.vmreadServedByShadow == 0)
    }

    @Test(arguments: [true, false])
    func anL2GuestRunsAndItsExitsAreReflectedToL1(shadowing: Bool) async throws {
        let machine = try await boot("l2-\(shadowing)", shadowing: shadowing)
        defer { machine.stop() }
        #expect(await run(machine, .l2Test))
        #expect(machine.load(.probeStatus) == 0, "\(machine.console)")
        // L1's own log of the exits it handled: each with the SDM's reason, qualification and
        // instruction length, RIP at the instruction.
        let log = machine.console.filter { $0.hasPrefix("l2 ") || $0.hasPrefix("second") }
        #expect(log == [
            "l2 exit 1: reason 30 qualification 0x800000 length 1 rip 0x100006",   // out %al,(%dx), port 0x80
            "l2 exit 2: reason 30 qualification 0x810040 length 2 rip 0x100007",   // out %al,$0x81
            "l2 exit 3: reason 30 qualification 0x820048 length 2 rip 0x100009",   // in $0x82,%al
            "l2 exit 4: reason 12 qualification 0x0 length 1 rip 0x10000e",        // hlt
            "l2 exit 5: reason 48 qualification 0x1 length 0 rip 0x10000f",        // read of an unmapped L2 page
            "l2 ept violation at 0x1000000",
            "l2 exit 6: reason 30 qualification 0x830040 length 2 rip 0x100017",   // out %al,$0x83 after the read
            "l2 reports rbx 0x5a rcx 0x1122334455667788",                          // L1's IN answer; the late page
            "l2 exit 7: reason 2 qualification 0x0 length 0 rip 0x100019",         // ud2: a triple fault
            "second vmlaunch: error 4",
        ], "\(machine.console)")
        let counters = try #require(machine.vmxCounters)
        #expect(counters.l2ExitsReflected == 7)
        // L1 mapped the late page without INVEPT: the re-executed read found no slot, and
        // L0 built it from L1's EPT without telling L1.
        #expect(counters.l2ExitsHandledByL0 >= 1)
        #expect(counters.l2Entries == 7)
        #expect(machine.state == .running)
    }

    @Test(arguments: [true, false])
    func twoL2VMsReadTheirDisksThroughL1sVirtualDisk(shadowing: Bool) async throws {
        // 4 MiB of known content: each of L1's 4 VM slots sees 1 MiB of it.
        let disk = try makeDisk(bytes: 4 << 20, seed: 11)
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let vmx = LPARConfiguration.VMX(microcode: guestImage("vmx-microcode.bin"), shadowing: shadowing)
        let machine = try LPARMachine(LPARConfiguration(name: "vmm-\(shadowing)", memoryBytes: 64 << 20, hostCores: [0],
                                                        image: guestImage("l1-vmm.bin"), disk: .init(path: disk), vmx: vmx),
                                      kvm: try KVM())
        machine.start()
        defer { machine.stop() }
        #expect(await machine.wait(timeout: 30) { $0.guestState == .ready })
        for slot in [0, 1] {
            #expect(await run(machine, .vmCreate, UInt64(slot) | GuestABI.VMTable.Workload.iometer.rawValue << 8))
            #expect(machine.load(.probeStatus) == 0, "\(machine.console)")
        }
        #expect(await machine.wait(timeout: 60) { m in (0...1).allSatisfy { (m.vmReport(slot: $0)?.passes ?? 0) >= 1 } },
                "\(machine.console) \(String(describing: machine.vmReport(slot: 0)))")
        for slot in [0, 1] {
            let report = try #require(machine.vmReport(slot: slot))
            #expect(report.state == .running && report.errors == 0)
            #expect(report.diskFirstSector == UInt64(slot) * 2048 && report.diskSectors == 2048)
            #expect(report.checksum == (try fnv1a(disk, offset: slot << 20, length: 1 << 20)), "slot \(slot)")
            #expect(report.operations >= 256 && report.exits >= report.operations)
        }
        let counters = try #require(machine.vmxCounters)
        #expect(counters.l2ExitsReflected > 512)
        if shadowing { #expect(counters.vmreadServedByShadow > 0) } else { #expect(counters.vmreadServedByShadow == 0) }
        #expect(machine.l2GuestCount == 2)
        // Deleting one leaves the other running, and L0 lets go of its L2 VM.
        #expect(await run(machine, .vmDelete, 0))
        #expect(machine.vmReport(slot: 0)?.state == .free)
        #expect(await machine.wait(timeout: 10) { $0.l2GuestCount == 1 })
        let before = machine.vmReport(slot: 1)?.operations ?? 0
        #expect(await machine.wait(timeout: 30) { ($0.vmReport(slot: 1)?.operations ?? 0) > before + 100 })
    }

    @Test func anL2VMThatNeverExitsIsTimeSlicedByL1sPreemptionTimer() async throws {
        let disk = try makeDisk(bytes: 4 << 20, seed: 5)
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let machine = try LPARMachine(LPARConfiguration(name: "slices", memoryBytes: 64 << 20, hostCores: [0],
                                                        image: guestImage("l1-vmm.bin"), disk: .init(path: disk),
                                                        vmx: .init(microcode: guestImage("vmx-microcode.bin"))),
                                      kvm: try KVM())
        machine.start()
        defer { machine.stop() }
        #expect(await machine.wait(timeout: 30) { $0.guestState == .ready })
        // Slot 0 spins without a single exit; slot 1 reads its disk.
        #expect(await run(machine, .vmCreate, 0 | GuestABI.VMTable.Workload.spin.rawValue << 8))
        #expect(await run(machine, .vmCreate, 1 | GuestABI.VMTable.Workload.iometer.rawValue << 8))
        // Both make progress: L0 ends each of the spinner's runs when L1's preemption timer
        // expires (exit 52), and L1 schedules the other VM.
        #expect(await machine.wait(timeout: 60) { m in
            (m.vmReport(slot: 0)?.operations ?? 0) > 100 && (m.vmReport(slot: 1)?.passes ?? 0) >= 1
        }, "\(String(describing: machine.vmReport(slot: 0))) \(String(describing: machine.vmReport(slot: 1)))")
        let counters = try #require(machine.vmxCounters)
        #expect(counters.l2ExitsByReason[52, default: 0] > 0)
        #expect(machine.vmReport(slot: 1)?.checksum == (try fnv1a(disk, offset: 1 << 20, length: 1 << 20)))
        // And L1 still takes commands: the spinner is deleted.
        #expect(await run(machine, .vmDelete, 0))
        #expect(machine.vmReport(slot: 0)?.state == .free)
    }

    @Test func aGuestHypervisorOnAPlainLPARFailsOnlyThatLPARAtItsFirstVMXInstruction() async throws {
        let machine = try LPARMachine(LPARConfiguration(name: "plain", memoryBytes: 32 << 20, hostCores: [0], image: guestImage("l1-vmm.bin")),
                                      kvm: try KVM())
        machine.start()
        defer { machine.stop() }
        #expect(await machine.wait(timeout: 30) { if case .failed = $0.state { return true }; return false })
        #expect(machine.state == .failed("RDMSR of MSR 0x480 raised #GP (L0 emulates the VMX capability MSRs only)"))
    }
}
#endif
