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
        #expect(await machine.wait(timeout: 30) { $0.load(.state) == 1 }, "\(machine.console) \(machine.state)")
        return machine
    }

    /// Posts a command and waits until the guest has carried it out.
    func run(_ machine: LPARMachine, _ command: GuestABI.Command, _ argument: UInt64 = 0) async -> Bool {
        machine.post(command, argument: argument)
        return await machine.wait(timeout: 30) { $0.commandTaken && $0.load(.state) == 1 }
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
