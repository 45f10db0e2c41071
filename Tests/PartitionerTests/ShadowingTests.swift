import Testing
import Logging
import VMX
@testable import Partitioner
import Sizes

@Suite struct ShadowingTests {
    @Test func aShadowedFieldIsServedWithoutATrap() throws {
        var l1 = try L1Fixture()
        l1.ready()
        let trapped = l1.vmx.counters.totalTrapped
        guard case .served(.succeeded) = l1.vmx.nonRootWrite(UInt64(VMCSField.guestRIP.rawValue), value: 0x1234) else {
            Issue.record("VMWRITE GUEST_RIP trapped"); return
        }
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)) == .served(.read(0x1234)))
        #expect(l1.vmx.counters.totalTrapped == trapped)
        #expect(l1.vmx.counters.vmreadServedByShadow == 1)
        #expect(l1.vmx.counters.vmwriteServedByShadow == 1)
    }

    @Test func anUnshadowedFieldAlwaysExits() throws {
        var l1 = try L1Fixture()
        l1.ready()
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.tscOffset.rawValue)) == .exit)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.vmInstructionError.rawValue)) == .exit)
        #expect(l1.vmx.nonRootWrite(UInt64(VMCSField.vmExitReason.rawValue), value: 1) == .exit)   // read-only: VMREAD only
        #expect(l1.vmx.nonRootRead(0x1_681E) == .exit)
        #expect(l1.vmx.nonRootRead(0x8000) == .exit)
    }

    @Test func withoutShadowingEverythingExits() throws {
        var l1 = try L1Fixture(shadow: nil)
        l1.ready()
        for field in ShadowFieldSet.linuxKVM.all {
            #expect(l1.vmx.nonRootRead(UInt64(field.rawValue)) == .exit)
        }
    }

    @Test func withoutACurrentVMCSAShadowAccessFailsInvalid() throws {
        var l1 = try L1Fixture()
        #expect(l1.run(.vmxon(region: l1.vmxon)) == .succeeded)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)) == .served(.failInvalid))
    }

    @Test func aValueWrittenThroughTheShadowIsInVMCS12AfterVMRESUME() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        guard case .enteredL2 = l1.run(.vmlaunch) else { Issue.record("no entry"); return }
        _ = l1.vmx.reflect(L2Exit(reason: .hlt, instructionLength: 1, guestState: VMCSState.longMode(rip: 0x5000)))
        // L1 skips the HLT the way KVM does: read RIP and length through the shadow, write RIP.
        guard case .served(.read(let rip)) = l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)),
              case .served(.read(let length)) = l1.vmx.nonRootRead(UInt64(VMCSField.vmExitInstructionLen.rawValue)),
              case .served(.succeeded) = l1.vmx.nonRootWrite(UInt64(VMCSField.guestRIP.rawValue), value: rip + length)
        else { Issue.record("the skip trapped"); return }
        #expect(rip == 0x5000 && length == 1)
        let before = l1.vmx.counters.fieldsCopiedToVMCS12
        guard case .enteredL2(let entry) = l1.run(.vmresume) else { Issue.record("no entry"); return }
        #expect(entry.guestState.rip == 0x5001)
        #expect(l1.vmx.current?.read(.guestRIP) == 0x5001)
        #expect(l1.vmx.counters.fieldsCopiedToVMCS12 - before == 24)
    }

    @Test func anExitFieldL0WroteIsVisibleThroughTheShadow() throws {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        guard case .enteredL2 = l1.run(.vmlaunch) else { Issue.record("no entry"); return }
        let io = IOExitQualification(size: 2, direction: .output, port: 0xC050)
        let before = l1.vmx.counters.fieldsCopiedToShadow
        _ = l1.vmx.reflect(L2Exit(reason: .ioInstruction, qualification: io.rawValue, instructionLength: 2,
                                  guestState: VMCSState.longMode(rip: 0x7000)))
        #expect(l1.vmx.counters.fieldsCopiedToShadow - before == 36)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.vmExitReason.rawValue)) == .served(.read(30)))
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.exitQualification.rawValue)) == .served(.read(io.rawValue)))
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)) == .served(.read(0x7000)))
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.vmExitInstructionLen.rawValue)) == .served(.read(2)))
    }

    @Test func vmptrldSwitchKeepsEachVMCSsValues() throws {
        var l1 = try L1Fixture()
        l1.ready()
        _ = l1.vmx.nonRootWrite(UInt64(VMCSField.guestRIP.rawValue), value: 0xA)
        #expect(l1.run(.vmclear(region: l1.vmcsB)) == .succeeded)
        #expect(l1.run(.vmptrld(region: l1.vmcsB)) == .succeeded)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)) == .served(.read(0)))
        _ = l1.vmx.nonRootWrite(UInt64(VMCSField.guestRIP.rawValue), value: 0xB)
        #expect(l1.run(.vmptrld(region: l1.vmcsA)) == .succeeded)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)) == .served(.read(0xA)))
        #expect(l1.run(.vmptrld(region: l1.vmcsB)) == .succeeded)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestRIP.rawValue)) == .served(.read(0xB)))
    }

    @Test func aTrappedWriteKeepsTheShadowCoherent() throws {
        var l1 = try L1Fixture()
        l1.ready()
        // GUEST_PHYSICAL_ADDRESS is shadowed read-only; a VMWRITE of it traps (MISC bit 29).
        #expect(l1.vmx.nonRootWrite(UInt64(VMCSField.guestPhysicalAddress.rawValue), value: 0x1234_5678_9000) == .exit)
        #expect(l1.write(.guestPhysicalAddress, 0x1234_5678_9000) == .succeeded)
        #expect(l1.vmx.nonRootRead(UInt64(VMCSField.guestPhysicalAddress.rawValue)) == .served(.read(0x1234_5678_9000)))
        // A field shadowed read-write, written through the trapped high encoding.
        _ = l1.vmx.nonRootWrite(UInt64(VMCSField.guestRIP.rawValue), value: 0x1111)
        #expect(l1.read(.guestRIP) == .read(0x1111))
    }

    @Test func vmclearOfTheCurrentVMCSSyncsTheShadowOnce() throws {
        var l1 = try L1Fixture()
        l1.ready()
        _ = l1.vmx.nonRootWrite(UInt64(VMCSField.guestRSP.rawValue), value: 0x77)
        let before = l1.vmx.counters.fieldsCopiedToVMCS12
        #expect(l1.run(.vmclear(region: l1.vmcsA)) == .succeeded)
        #expect(l1.vmx.counters.fieldsCopiedToVMCS12 - before == 24)
        #expect(VMCS12(regionImage: try l1.memory.read(l1.vmcsA, count: 4096)).read(.guestRSP) == 0x77)
    }

    @Test func peekFoldsInTheShadow() throws {
        var l1 = try L1Fixture()
        l1.ready()
        _ = l1.vmx.nonRootWrite(UInt64(VMCSField.cpuBasedVMExecControl.rawValue), value: 0x84)
        #expect(l1.vmx.peek(.cpuBasedVMExecControl) == 0x84)
    }
}

@Suite struct ExitRoutingTests {
    func launched(_ configure: (inout L1Fixture) throws -> Void = { _ in }) throws -> L1Fixture {
        var l1 = try L1Fixture()
        l1.ready()
        l1.writeValidVMCS()
        try configure(&l1)
        guard case .enteredL2 = l1.run(.vmlaunch) else {
            Issue.record("no entry: \(l1.vmx.lastEntryFailure ?? "")")
            return l1
        }
        return l1
    }

    let state = VMCSState.longMode(rip: 0x9000)

    @Test func hltIsReflectedOnlyWithHLTExiting() throws {
        var l1 = try launched()
        guard case .reflected(let resume) = l1.vmx.route(L2Exit(reason: .hlt, guestState: state), memory: l1.memory) else {
            Issue.record("HLT was not reflected"); return
        }
        #expect(resume.rip == 0xFFFF_FFFF_A000_0000)
        #expect(resume.rflags == 2)
        #expect(l1.vmx.current?.read(.guestRIP) == 0x9000)
        var quiet = try launched { l1 in
            let proc = ProcessorControls.defaultOnes.subtracting([.cr3LoadExiting, .cr3StoreExiting]).union([.activateSecondaryControls])
            _ = l1.write(.cpuBasedVMExecControl, UInt64(proc.rawValue))
        }
        #expect(quiet.vmx.route(L2Exit(reason: .hlt, guestState: state), memory: quiet.memory) == .handledByL0(.emulatedForLPAR))
    }

    @Test func l0KeepsItsOwnInterrupts() throws {
        var l1 = try launched()
        let exit = L2Exit(reason: .externalInterrupt, interruptSource: .l0, guestState: state)
        #expect(l1.vmx.route(exit, memory: l1.memory) == .handledByL0(.l0Interrupt))
        #expect(l1.vmx.inL2)
        let forL1 = L2Exit(reason: .externalInterrupt, interruptSource: .lpar, guestState: state)
        guard case .reflected = l1.vmx.route(forL1, memory: l1.memory) else { Issue.record("not reflected"); return }
        #expect(l1.vmx.counters.l2ExitsByReason[1] == 2)
        #expect(l1.vmx.counters.l2ExitsReflected == 1)
        #expect(l1.vmx.counters.l2ExitsHandledByL0 == 1)
    }

    @Test func ioFollowsL1sIOBitmap() throws {
        var l1 = try launched()
        try l1.memory.write(l1.ioBitmapB + 0x4050 / 8, [UInt8(1 << (0x4050 % 8))])
        let kick = IOExitQualification(size: 2, direction: .output, port: 0xC050)
        let other = IOExitQualification(size: 1, direction: .input, port: 0x70)
        #expect(l1.vmx.route(L2Exit(reason: .ioInstruction, qualification: other.rawValue, guestState: state), memory: l1.memory)
                == .handledByL0(.emulatedForLPAR))
        guard case .reflected = l1.vmx.route(L2Exit(reason: .ioInstruction, qualification: kick.rawValue, guestState: state),
                                              memory: l1.memory) else { Issue.record("kick not reflected"); return }
        #expect(l1.vmx.current?.read(.exitQualification) == kick.rawValue)
    }

    @Test func msrExitsFollowL1sMSRBitmap() throws {
        var l1 = try launched()
        // Write bitmap for high MSRs starts at 3072; EFER 0xC0000080 -> bit 0x80.
        try l1.memory.write(l1.msrBitmap + 3072 + 0x80 / 8, [1])
        let efer = L2Exit(reason: .msrWrite, msrIndex: 0xC000_0080, guestState: state)
        guard case .reflected = l1.vmx.route(efer, memory: l1.memory) else { Issue.record("EFER write kept"); return }
        var again = try launched()
        #expect(again.vmx.route(L2Exit(reason: .msrRead, msrIndex: 0xC000_0080, guestState: state), memory: again.memory)
                == .handledByL0(.emulatedForLPAR))
    }

    @Test func crAccessFollowsTheMasks() throws {
        var l1 = try launched { l1 in
            _ = l1.write(.cr0GuestHostMask, 0x8000_0001)
            _ = l1.write(.cr0ReadShadow, 0x8000_0031)
        }
        let q = CRAccessQualification(controlRegister: 0, accessType: .movToCR, generalRegister: 0).rawValue
        #expect(l1.vmx.route(L2Exit(reason: .crAccess, qualification: q, crSourceValue: 0x8000_0033, guestState: state),
                             memory: l1.memory) == .handledByL0(.emulatedForLPAR))
        guard case .reflected = l1.vmx.route(L2Exit(reason: .crAccess, qualification: q, crSourceValue: 0x30, guestState: state),
                                              memory: l1.memory) else { Issue.record("CR0.PG change kept"); return }
    }

    @Test func anEPTViolationIsReflectedOnlyWhenL1DidNotMapTheAddress() throws {
        var l1 = try launched()
        // Map GPA 0x4000_0000 (1 GiB) with a 2 MiB page at L1 address 0x60_0000, read/write.
        let pml4 = l1.ept, pdpt: UInt64 = 0x20_1000, pd: UInt64 = 0x20_2000
        try l1.memory.write64(pml4, pdpt | 7)
        try l1.memory.write64(pdpt + 1 * 8, pd | 7)
        try l1.memory.write64(pd, 0x60_0000 | (1 << 7) | 3)
        let read = EPTViolationQualification(read: true).rawValue
        let mapped = L2Exit(reason: .eptViolation, qualification: read, guestPhysicalAddress: 0x4000_1234, guestState: state)
        #expect(l1.vmx.route(mapped, memory: l1.memory) == .handledByL0(.builtEPTMapping(l1PhysicalAddress: 0x60_1234)))
        let fetch = EPTViolationQualification(instructionFetch: true).rawValue
        let noExec = L2Exit(reason: .eptViolation, qualification: fetch, guestPhysicalAddress: 0x4000_1234, guestState: state)
        guard case .reflected = l1.vmx.route(noExec, memory: l1.memory) else { Issue.record("fetch of a non-executable page kept"); return }
        let q = EPTViolationQualification(rawValue: l1.vmx.current!.read(.exitQualification))
        #expect(q.instructionFetch && q.entryReadable && q.entryWritable && !q.entryExecutable)
        #expect(l1.vmx.current?.read(.guestPhysicalAddress) == 0x4000_1234)
    }

    @Test func theWalkerReportsMisconfigurations() throws {
        let memory = SparseGuestMemory(size: 16 * ByteSize.mib)
        try memory.write64(0x1000, 0x2000 | 2)   // write-only entry
        #expect(EPTWalker.translate(eptp: 0x1000 | 0x1E, address: 0, access: .init(), memory: memory) == .misconfiguration)
        #expect(EPTWalker.translate(eptp: 0x3000, address: 0, access: .init(), memory: memory)
                == .violation(EPTViolationQualification(read: true)))
    }

    @Test func reflectionClearsTheEntryInjectionAndSavesL2State() throws {
        var l1 = try launched { l1 in
            _ = l1.write(.vmEntryIntrInfoField, UInt64(InterruptionInfo(vector: 0x41, kind: .externalInterrupt).rawValue))
        }
        var exitState = state
        exitState[.guestRSP] = 0x4242
        _ = l1.vmx.route(L2Exit(reason: .cpuid, instructionLength: 2, guestState: exitState), memory: l1.memory)
        #expect(l1.vmx.current!.read(.vmEntryIntrInfoField) & UInt64(InterruptionInfo.validBit) == 0)
        #expect(l1.vmx.current!.read(.guestRSP) == 0x4242)
        #expect(l1.vmx.current!.read(.vmExitInstructionLen) == 2)
        #expect(!l1.vmx.inL2)
    }
}

@Suite struct L0ExitHandlerTests {
    @Test func anLPARWithoutVMMGetsUndefinedOpcode() {
        let handler = L0ExitHandler(core: nil)
        #expect(handler.handle(.vmxInstruction(.vmxon(region: 0x1000), context: .kernel)) == .completeVMX(.exception(.invalidOpcode)))
        #expect(handler.handle(.hlt) == .haltUntilInterrupt)
        #expect(handler.handle(.ioOut(port: 0x3F8, size: 1, value: 65)) == .emulateDevice)
        #expect(handler.handle(.interrupted) == .resumeGuest)
    }

    @Test func aTripleFaultFailsOnlyTheLPAR() throws {
        let l1 = try L1Fixture()
        let handler = L0ExitHandler(core: NestedVMXCore(vmx: l1.vmx, memory: l1.memory))
        #expect(handler.handle(.shutdown) == .failLPAR(reason: "triple fault (shutdown)"))
        #expect(handler.handle(.internalError("emulation failure")) == .failLPAR(reason: "internal error: emulation failure"))
    }

    @Test func theHandlerEmulatesThroughTheSharedCore() throws {
        let l1 = try L1Fixture()
        let core = NestedVMXCore(vmx: l1.vmx, memory: l1.memory)
        let handler = L0ExitHandler(core: core)
        #expect(handler.handle(.vmxInstruction(.vmxon(region: l1.vmxon), context: .kernel)) == .completeVMX(.succeeded))
        #expect(core.vmx.inVMXOperation)
        #expect(core.vmx.counters.vmxTrapped["VMXON"] == 1)
    }
}

@Suite struct FieldCountTests {
    /// docs/simulation.md charges nested transitions by these counts.
    @Test func theTransitionsCopyTheseManyFields() {
        #expect(VMCSState.guestStateFields.count == 63)
        #expect(ExitRouting.savedGuestFields.count == 61)
        #expect(VMCSState.hostStateFields.count == 23)
        #expect(VMCSState.exitInformationFields.count == 10)
    }
}

/// A log handler that keeps what it is given.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    final class Store: @unchecked Sendable {
        var entries: [(Logger.Level, String, Logger.Metadata)] = []
    }
    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(store: Store) { self.store = store }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        store.entries.append((event.level, event.message.description, event.metadata ?? [:]))
    }
}

@Suite struct L0LoggingTests {
    @Test func aFailedLPARIsLoggedWithItsName() throws {
        let store = RecordingLogHandler.Store()
        let logger = Logger(label: "test") { _ in RecordingLogHandler(store: store) }
        let l1 = try L1Fixture()
        let handler = L0ExitHandler(core: NestedVMXCore(vmx: l1.vmx, memory: l1.memory), lpar: "vmm-lpar", vcpu: 2, logger: logger)
        _ = handler.handle(.shutdown)
        #expect(store.entries.count == 1)
        #expect(store.entries.first?.0 == .warning)
        #expect(store.entries.first?.2["lpar.name"] == "vmm-lpar")
        #expect(store.entries.first?.2["lpar.vcpu"] == "2")
    }
}
