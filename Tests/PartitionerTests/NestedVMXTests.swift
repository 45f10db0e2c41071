import Testing
import VMX
@testable import Partitioner
import Sizes

/// An L1 with VMX on, a VMXON region and two VMCS regions in its memory.
struct L1Fixture {
    let memory = SparseGuestMemory(size: 64 * ByteSize.mib)
    var vmx: NestedVMX
    let vmxon: UInt64 = 0x10_0000
    let vmcsA: UInt64 = 0x10_1000
    let vmcsB: UInt64 = 0x10_2000
    let ioBitmapA: UInt64 = 0x10_3000
    let ioBitmapB: UInt64 = 0x10_4000
    let msrBitmap: UInt64 = 0x10_5000
    let ept: UInt64 = 0x20_0000

    init(shadow: ShadowFieldSet? = .linuxKVM, misc29: Bool = true) throws {
        let caps = VMXCapabilities.nestorDefault(vmwriteToReadOnlyFields: misc29)
        vmx = NestedVMX(capabilities: caps, shadowFields: shadow)
        let header = VMCSRegionHeader(revisionIdentifier: caps.revisionIdentifier).firstDword
        for region in [vmxon, vmcsA, vmcsB] { try memory.write32(region, header) }
        try memory.write(ioBitmapA, [UInt8](repeating: 0, count: 4096))
        try memory.write(ioBitmapB, [UInt8](repeating: 0, count: 4096))
        try memory.write(msrBitmap, [UInt8](repeating: 0, count: 4096))
    }

    @discardableResult
    mutating func run(_ instruction: VMXInstruction, _ context: L1InstructionContext = .kernel) -> VMXOutcome {
        vmx.execute(instruction, context: context, memory: memory)
    }

    /// VMXON, VMCLEAR and VMPTRLD of VMCS A.
    mutating func ready() {
        #expect(run(.vmxon(region: vmxon)) == .succeeded)
        #expect(run(.vmclear(region: vmcsA)) == .succeeded)
        #expect(run(.vmptrld(region: vmcsA)) == .succeeded)
    }

    /// The VMWRITEs of a valid 64-bit L2 with EPT, HLT and I/O-bitmap exiting.
    mutating func writeValidVMCS() {
        let proc = ProcessorControls([.hltExiting, .useIOBitmaps, .useMSRBitmaps, .activateSecondaryControls])
            .union(ProcessorControls.defaultOnes.subtracting([.cr3LoadExiting, .cr3StoreExiting]))
        let writes: [(VMCSField, UInt64)] = [
            (.pinBasedVMExecControl, UInt64(PinBasedControls([.defaultOnes, .externalInterruptExiting]).rawValue)),
            (.cpuBasedVMExecControl, UInt64(proc.rawValue)),
            (.secondaryVMExecControl, UInt64(SecondaryControls([.enableEPT, .unrestrictedGuest]).rawValue)),
            (.vmExitControls, UInt64(ExitControls([.defaultOnes, .hostAddressSpaceSize]).rawValue)),
            (.vmEntryControls, UInt64(EntryControls([.defaultOnes, .ia32eModeGuest]).rawValue)),
            (.ioBitmapA, ioBitmapA), (.ioBitmapB, ioBitmapB), (.msrBitmap, msrBitmap),
            (.eptPointer, ept | 6 | (3 << 3)), (.vmcsLinkPointer, ~0),
            (.hostCR0, 0x8005_0033), (.hostCR4, 0x2020), (.hostCR3, 0x1000),
            (.hostCSSelector, 0x10), (.hostSSSelector, 0x18), (.hostTRSelector, 0x40),
            (.hostRIP, 0xFFFF_FFFF_A000_0000), (.hostRSP, 0xFFFF_8800_0000_8000),
        ]
        for (field, value) in writes {
            #expect(run(.vmwrite(encoding: UInt64(field.rawValue), value: value)) == .succeeded, "\(field)")
        }
        let guest = VMCSState.longMode(rip: 0xFFFF_FFFF_8100_0000, rsp: 0x8000)
        for field in VMCSState.guestStateFields where field != .vmcsLinkPointer {
            #expect(run(.vmwrite(encoding: UInt64(field.rawValue), value: guest[field])) == .succeeded)
        }
    }

    mutating func write(_ field: VMCSField, _ value: UInt64) -> VMXOutcome {
        run(.vmwrite(encoding: UInt64(field.rawValue), value: value))
    }

    mutating func read(_ field: VMCSField) -> VMXOutcome {
        run(.vmread(encoding: UInt64(field.rawValue)))
    }
}

@Suite struct VMInstructionErrorTests {
    @Test func vmlaunchOfALaunchedVMCSFailsWith4() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        guard case .enteredL2 = l1.run(.vmlaunch) else { Issue.record("VMLAUNCH did not enter L2"); return }
        _ = l1.vmx.reflect(L2Exit(reason: .hlt, instructionLength: 1, guestState: VMCSState.longMode(rip: 0x1000)))
        #expect(l1.run(.vmlaunch) == .failValid(.vmlaunchNonClearVMCS))
        #expect(l1.read(.vmInstructionError) == .read(4))
        guard case .enteredL2 = l1.run(.vmresume) else { Issue.record("VMRESUME did not enter L2"); return }
    }

    @Test func vmresumeOfAClearVMCSFailsWith5() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        #expect(l1.run(.vmresume) == .failValid(.vmresumeNonLaunchedVMCS))
        #expect(l1.read(.vmInstructionError) == .read(5))
    }

    @Test func vmresumeAfterVMXOFFFailsWith6() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        guard case .enteredL2 = l1.run(.vmlaunch) else { Issue.record("no entry"); return }
        _ = l1.vmx.reflect(L2Exit(reason: .hlt, guestState: VMCSState.longMode(rip: 0x1000)))
        #expect(l1.run(.vmxoff) == .succeeded)
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .succeeded)
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .succeeded)
        #expect(l1.run(.vmresume) == .failValid(.vmresumeAfterVMXOFF))
    }

    @Test func vmptrldWithAWrongRevisionFailsWith11() throws {
        var l1 = try L1Fixture()
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .succeeded)
        try l1.memory.write32(l1.vmcsB, 0x1234)
        #expect(l1.run(.vmptrld(region: l1.vmcsB)) == .failInvalid)   // no current VMCS yet
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .succeeded)
        #expect(l1.run(.vmptrld(region: l1.vmcsB)) == .failValid(.vmptrldIncorrectRevision))
        // A region marked as a shadow VMCS is refused too: L0 offers L1 no shadowing.
        let shadowHeader = VMCSRegionHeader(revisionIdentifier: VMXCapabilities.nestorRevision, isShadow: true)
        try l1.memory.write32(l1.vmcsB, shadowHeader.firstDword)
        #expect(l1.run(.vmptrld(region: l1.vmcsB)) == .failValid(.vmptrldIncorrectRevision))
    }

    @Test func vmwriteToAReadOnlyFieldWithoutMisc29FailsWith13() throws {
        var l1 = try L1Fixture(misc29: false)
        l1.ready()
        #expect(l1.write(.vmExitReason, 1) == .failValid(.vmwriteReadOnlyComponent))
        #expect(l1.read(.vmInstructionError) == .read(13))
        var permissive = try L1Fixture(misc29: true)
        permissive.ready()
        #expect(permissive.write(.vmExitReason, 1) == .succeeded)
        #expect(permissive.read(.vmExitReason) == .read(1))
    }

    @Test func vmreadOfAnUnsupportedFieldFailsWith12() throws {
        var l1 = try L1Fixture()
        l1.ready()
        #expect(l1.run(.vmread(encoding: 0x6FFE)) == .failValid(.unsupportedVMCSComponent))
        #expect(l1.run(.vmread(encoding: 0x1_0000_681E)) == .failValid(.unsupportedVMCSComponent))
        #expect(l1.run(.vmwrite(encoding: 0x1000, value: 0)) == .failValid(.unsupportedVMCSComponent))
    }

    @Test func vmxonTwiceFailsWith15() throws {
        var l1 = try L1Fixture()
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .succeeded)
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .failInvalid)   // no current VMCS: VMfailInvalid
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .succeeded)
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .failValid(.vmxonInVMXRoot))
    }

    @Test func entryWithInvalidControlsFailsWith7() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        // Secondary bit 14 (VMCS shadowing) is not offered to L1.
        #expect(l1.write(.secondaryVMExecControl, UInt64(SecondaryControls([.enableEPT, .vmcsShadowing]).rawValue)) == .succeeded)
        #expect(l1.run(.vmlaunch) == .failValid(.entryInvalidControlFields))
        #expect(l1.vmx.lastEntryFailure?.contains("secondary") == true)
        #expect(l1.read(.vmInstructionError) == .read(7))
    }

    @Test func entryWithBadHostStateFailsWith8() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        #expect(l1.write(.hostCSSelector, 0) == .succeeded)
        #expect(l1.run(.vmlaunch) == .failValid(.entryInvalidHostStateFields))
    }

    @Test func entryWithBadGuestStateFailsAsAVMExit() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        #expect(l1.write(.guestRFLAGS, 0) == .succeeded)   // bit 1 must be 1
        guard case .entryFailed(let reason, _, let resume) = l1.run(.vmlaunch) else {
            Issue.record("the entry did not fail on guest state"); return
        }
        #expect(reason == 0x8000_0021)
        #expect(resume.rip == 0xFFFF_FFFF_A000_0000)
        #expect(l1.read(.vmExitReason) == .read(0x8000_0021))
    }

    @Test func movSSBlockingFailsWith26() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        #expect(l1.run(.vmlaunch, L1InstructionContext(blockedByMovSS: true)) == .failValid(.entryEventsBlockedByMOVSS))
    }

    @Test func vmclearAndVmptrldCheckTheirAddresses() throws {
        var l1 = try L1Fixture()
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .succeeded)
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .succeeded)
        #expect(l1.run(.vmclear(region: l1.vmcsB + 8)) == .failValid(.vmclearInvalidAddress))
        #expect(l1.run(.vmclear(region: l1.vmxon)) == .failValid(.vmclearVMXONPointer))
        #expect(l1.run(.vmptrld(region: 1 << 50)) == .failValid(.vmptrldInvalidAddress))
        #expect(l1.run(.vmptrld(region: l1.vmxon)) == .failValid(.vmptrldVMXONPointer))
        #expect(l1.run(.vmptrst) == .stored(l1.vmcsA))
        #expect(l1.run(.vmclear(region: l1.vmcsA)) == .succeeded)
        #expect(l1.run(.vmptrst) == .stored(~0))
        #expect(l1.read(.guestRIP) == .failInvalid)
    }

    @Test func inveptAndInvvpidCheckTheirTypes() throws {
        var l1 = try L1Fixture()
        l1.ready()
        #expect(l1.run(.invept(type: 1)) == .succeeded)
        #expect(l1.run(.invept(type: 3)) == .failValid(.invalidOperandToINVEPTOrINVVPID))
        #expect(l1.read(.vmInstructionError) == .read(28))
        #expect(l1.run(.invvpid(type: 2, vpid: 0)) == .succeeded)
        #expect(l1.run(.invvpid(type: 1, vpid: 0)) == .failValid(.invalidOperandToINVEPTOrINVVPID))
        #expect(l1.run(.invvpid(type: 3, vpid: 1)) == .failValid(.invalidOperandToINVEPTOrINVVPID))
    }

    @Test func faultsComeBeforeVMfail() throws {
        var l1 = try L1Fixture()
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .exception(.invalidOpcode))     // not in VMX operation
        #expect(l1.run(.vmxon(region: l1.vmxon), L1InstructionContext(cr4VMXE: false)) == .exception(.invalidOpcode))
        #expect(l1.run(.vmxon(region: l1.vmxon), L1InstructionContext(cpl: 3)) == .exception(.generalProtection(errorCode: 0)))
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .succeeded)
        #expect(l1.run(.vmread(encoding: 0x681E), L1InstructionContext(cpl: 3)) == .exception(.generalProtection(errorCode: 0)))
        #expect(l1.run(.vmread(encoding: 0x681E), L1InstructionContext(compatibilityMode: true)) == .exception(.invalidOpcode))
        try l1.memory.write32(l1.vmcsB, 7)
        var fresh = try L1Fixture()
        try fresh.memory.write32(fresh.vmxon, 7)
        #expect(fresh.run(.vmxon(region: fresh.vmxon)) == .failInvalid)   // wrong revision
    }

    @Test func rflagsFollowTheConventions() {
        let before: UInt64 = 0x2 | 0x8D5   // CF, PF, AF, ZF, SF, OF set
        #expect(VMXOutcome.succeeded.rflags(from: before) == 0x2)
        #expect(VMXOutcome.failInvalid.rflags(from: before) == 0x3)
        #expect(VMXOutcome.failValid(.unsupportedVMCSComponent).rflags(from: before) == 0x42)
        #expect(VMXOutcome.exception(.invalidOpcode).rflags(from: before) == before)
    }

    @Test func valuesAreTruncatedToTheFieldWidth() throws {
        var l1 = try L1Fixture()
        l1.ready()
        #expect(l1.write(.guestESSelector, 0x1_2345) == .succeeded)
        #expect(l1.read(.guestESSelector) == .read(0x2345))
        #expect(l1.write(.tscOffset, 0x1111_2222_3333_4444) == .succeeded)
        #expect(l1.read(.tscOffsetHigh) == .read(0x1111_2222))
        #expect(l1.write(.tscOffsetHigh, 0xAAAA_BBBB) == .succeeded)
        #expect(l1.read(.tscOffset) == .read(0xAAAA_BBBB_3333_4444))
    }

    @Test func vmclearWritesTheVMCSBackToL1Memory() throws {
        var l1 = try L1Fixture()
        l1.ready()
        #expect(l1.write(.guestRIP, 0xABCD) == .succeeded)
        #expect(l1.run(.vmclear(region: l1.vmcsA)) == .succeeded)
        let image = try l1.memory.read(l1.vmcsA, count: 4096)
        #expect(VMCS12(regionImage: image).read(.guestRIP) == 0xABCD)
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .succeeded)
        #expect(l1.read(.guestRIP) == .read(0xABCD))
    }
}
