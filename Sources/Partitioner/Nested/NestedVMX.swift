public import VMX

/// A VMX instruction L1 executed, with its operands already decoded by the backend.
public enum VMXInstruction: Equatable, Sendable, CustomStringConvertible {
    case vmxon(region: UInt64)
    case vmxoff
    case vmclear(region: UInt64)
    case vmptrld(region: UInt64)
    case vmptrst
    case vmread(encoding: UInt64)
    case vmwrite(encoding: UInt64, value: UInt64)
    case vmlaunch
    case vmresume
    case invept(type: UInt64)
    case invvpid(type: UInt64, vpid: UInt16)

    public var mnemonic: String {
        switch self {
        case .vmxon: return "VMXON"
        case .vmxoff: return "VMXOFF"
        case .vmclear: return "VMCLEAR"
        case .vmptrld: return "VMPTRLD"
        case .vmptrst: return "VMPTRST"
        case .vmread: return "VMREAD"
        case .vmwrite: return "VMWRITE"
        case .vmlaunch: return "VMLAUNCH"
        case .vmresume: return "VMRESUME"
        case .invept: return "INVEPT"
        case .invvpid: return "INVVPID"
        }
    }

    public var description: String {
        switch self {
        case .vmxon(let r), .vmclear(let r), .vmptrld(let r): return "\(mnemonic) \(hex(r))"
        case .vmread(let e): return "VMREAD \(VMCSField(UInt32(truncatingIfNeeded: e)))"
        case .vmwrite(let e, let v): return "VMWRITE \(VMCSField(UInt32(truncatingIfNeeded: e))), \(hex(v))"
        default: return mnemonic
        }
    }

    /// The basic exit reason a trap of this instruction reports.
    public var exitReason: ExitReason {
        switch self {
        case .vmxon: return .vmxon
        case .vmxoff: return .vmxoff
        case .vmclear: return .vmclear
        case .vmptrld: return .vmptrld
        case .vmptrst: return .vmptrst
        case .vmread: return .vmread
        case .vmwrite: return .vmwrite
        case .vmlaunch: return .vmlaunch
        case .vmresume: return .vmresume
        case .invept: return .invept
        case .invvpid: return .invvpid
        }
    }
}

/// The processor state of L1 that decides whether a VMX instruction faults (SDM 31.3).
public struct L1InstructionContext: Equatable, Sendable {
    public var cpl: Int
    public var protectedMode: Bool
    public var cr4VMXE: Bool
    public var virtual8086: Bool
    /// IA32_EFER.LMA = 1 and CS.L = 0: a compatibility-mode code segment.
    public var compatibilityMode: Bool
    /// Events are blocked by MOV SS (VMLAUNCH/VMRESUME fail with error 26).
    public var blockedByMovSS: Bool

    public init(cpl: Int = 0, protectedMode: Bool = true, cr4VMXE: Bool = true,
                virtual8086: Bool = false, compatibilityMode: Bool = false,
                blockedByMovSS: Bool = false) {
        self.cpl = cpl
        self.protectedMode = protectedMode
        self.cr4VMXE = cr4VMXE
        self.virtual8086 = virtual8086
        self.compatibilityMode = compatibilityMode
        self.blockedByMovSS = blockedByMovSS
    }

    /// A 64-bit L1 kernel at CPL 0 with CR4.VMXE set.
    public static let kernel = L1InstructionContext()
}

/// An exception a VMX instruction raises instead of completing.
public enum X86Exception: Equatable, Sendable {
    case invalidOpcode
    case generalProtection(errorCode: UInt32)
}

/// What L1 should see when the emulated VMX instruction completes.
public enum VMXOutcome: Equatable, Sendable {
    /// VMsucceed: CF, PF, AF, ZF, SF and OF cleared.
    case succeeded
    /// VMsucceed with the value VMREAD produced.
    case read(UInt64)
    /// VMsucceed with the pointer VMPTRST stores.
    case stored(UInt64)
    /// VMfailInvalid: CF set (there is no current VMCS to hold an error number).
    case failInvalid
    /// VMfailValid: ZF set, the error number in the current VMCS's VM-instruction error field.
    case failValid(VMInstructionError)
    /// The instruction faulted.
    case exception(X86Exception)
    /// VMLAUNCH/VMRESUME succeeded: the backend runs L2 from this state.
    case enteredL2(L2Entry)
    /// The VM entry failed while loading guest state (SDM 27.8): L1 sees a VM exit whose
    /// exit reason has bit 31 set, and resumes at its host state.
    case entryFailed(reason: UInt32, qualification: UInt64, resume: VMCSState)

    /// RFLAGS after the instruction, from RFLAGS before it (SDM 31.2 conventions).
    public func rflags(from before: UInt64) -> UInt64 {
        let arithmetic: UInt64 = (1 << 0) | (1 << 2) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 11)
        let cleared = before & ~arithmetic
        switch self {
        case .failInvalid: return cleared | 1          // CF
        case .failValid: return cleared | (1 << 6)     // ZF
        case .exception: return before
        default: return cleared
        }
    }
}

/// The state L0 loads to run L2 after a successful VMLAUNCH/VMRESUME.
public struct L2Entry: Equatable, Sendable {
    public var guestState: VMCSState
    /// An event L1 asked L0 to inject on entry (VM-entry interruption-information field).
    public var injection: InterruptionInfo?
    public var injectionErrorCode: UInt32
    public var injectionInstructionLength: UInt32
    /// L1's EPT pointer for L2, when L1 enabled EPT.
    public var eptPointer: UInt64?
}

/// Where L0 sent an L2 exit.
public enum ExitRoute: Equatable, Sendable {
    /// L0 handled it and L2 continues.
    case handledByL0(L0Handling)
    /// L0 reflected it to L1 as a nested VM exit; L1 resumes at its host state.
    case reflected(resume: VMCSState)
}

/// How L0 handled an exit it kept.
public enum L0Handling: Equatable, Sendable {
    /// An interrupt for L0 itself (its time slice or an L0 IPI).
    case l0Interrupt
    /// L1's EPT maps the address; L0 built the missing mapping of its own.
    case builtEPTMapping(l1PhysicalAddress: UInt64)
    /// L1 did not ask to see this exit; L0 emulated it for the LPAR.
    case emulatedForLPAR
}

/// An exit of L2 to L0, as the backend reports it.
public struct L2Exit: Equatable, Sendable {
    /// Who raised an external interrupt: L0's own timer/IPIs, or a device of the LPAR.
    public enum InterruptSource: Equatable, Sendable { case l0, lpar }

    public var reason: ExitReason
    public var qualification: UInt64
    public var interruptionInfo: UInt32
    public var interruptionErrorCode: UInt32
    public var idtVectoringInfo: UInt32
    public var idtVectoringErrorCode: UInt32
    public var instructionLength: UInt32
    public var instructionInfo: UInt32
    public var guestLinearAddress: UInt64
    public var guestPhysicalAddress: UInt64
    public var interruptSource: InterruptSource
    /// RCX at an MSR exit.
    public var msrIndex: UInt32
    /// The source register value of a MOV to CR.
    public var crSourceValue: UInt64
    /// L2's state at the exit.
    public var guestState: VMCSState

    public init(reason: ExitReason, qualification: UInt64 = 0, interruptionInfo: UInt32 = 0,
                interruptionErrorCode: UInt32 = 0, idtVectoringInfo: UInt32 = 0,
                idtVectoringErrorCode: UInt32 = 0, instructionLength: UInt32 = 0,
                instructionInfo: UInt32 = 0, guestLinearAddress: UInt64 = 0,
                guestPhysicalAddress: UInt64 = 0, interruptSource: InterruptSource = .lpar,
                msrIndex: UInt32 = 0, crSourceValue: UInt64 = 0, guestState: VMCSState) {
        self.reason = reason
        self.qualification = qualification
        self.interruptionInfo = interruptionInfo
        self.interruptionErrorCode = interruptionErrorCode
        self.idtVectoringInfo = idtVectoringInfo
        self.idtVectoringErrorCode = idtVectoringErrorCode
        self.instructionLength = instructionLength
        self.instructionInfo = instructionInfo
        self.guestLinearAddress = guestLinearAddress
        self.guestPhysicalAddress = guestPhysicalAddress
        self.interruptSource = interruptSource
        self.msrIndex = msrIndex
        self.crSourceValue = crSourceValue
        self.guestState = guestState
    }
}

/// The result of a VMREAD/VMWRITE L1 executes in VMX non-root operation, decided by the
/// processor (or by Nestor's VMX microcode page) before any exit.
public enum NonRootAccess: Equatable, Sendable {
    /// Served from the shadow VMCS without a VM exit.
    case served(VMXOutcome)
    /// The access causes a VM exit: L0 emulates it with `execute`.
    case exit
}

/// L0's emulation of VMX for one virtual CPU of an LPAR that runs a guest hypervisor.
///
/// It follows the SDM's pseudocode for each instruction (Vol. 3C, chapter 31) against the
/// vmcs12 it keeps in L1's memory, and Linux KVM's points for synchronising vmcs12 with the
/// shadow VMCS: vmcs12 -> shadow when it reflects an exit and on VMPTRLD; shadow -> vmcs12
/// on VMLAUNCH/VMRESUME, on VMCLEAR of the current VMCS and when VMPTRLD switches away.
public struct NestedVMX: Equatable, Sendable {
    public let capabilities: VMXCapabilities
    /// The shadow field set when L0 uses VMCS shadowing for this LPAR, else nil.
    public let shadowFields: ShadowFieldSet?
    /// The bitmaps L0 programs (and maps read-only for the VMX microcode page).
    public let vmreadBitmap: VMXAccessBitmap
    public let vmwriteBitmap: VMXAccessBitmap

    public private(set) var inVMXOperation = false
    public private(set) var vmxonRegion: UInt64 = 0
    /// The current-VMCS pointer, nil when it is invalid (all ones).
    public private(set) var currentRegion: UInt64?
    /// L0's cached copy of the current vmcs12.
    public private(set) var current: VMCS12?
    /// The shadow VMCS linked to the current vmcs12 when shadowing is on.
    public private(set) var shadow: ShadowVMCS?
    /// True while L2 runs (between a successful entry and the next reflected exit).
    public private(set) var inL2 = false
    /// Incremented by every VMXON, recorded by VMLAUNCH.
    public private(set) var vmxonEpoch: UInt32 = 0
    /// Why the last VM entry failed its checks, for logs and diagnostics.
    public private(set) var lastEntryFailure: String?
    public var counters = NestedCounters()

    public init(capabilities: VMXCapabilities = .nestorDefault(), shadowFields: ShadowFieldSet?) {
        self.capabilities = capabilities
        self.shadowFields = shadowFields
        self.vmreadBitmap = shadowFields?.vmreadBitmap ?? .trapAll
        self.vmwriteBitmap = shadowFields?.vmwriteBitmap ?? .trapAll
    }

    /// True when L0 uses VMCS shadowing and a shadow VMCS is linked (L1 has a current VMCS).
    public var shadowActive: Bool { shadowFields != nil && shadow != nil }

    // MARK: Non-root VMREAD/VMWRITE (the processor's side of VMCS shadowing)

    /// A VMREAD by L1: served from the shadow VMCS when shadowing is on, a VMCS is linked and
    /// the field's VMREAD bitmap bit is clear; otherwise it exits to L0 (SDM 31.3, VMREAD).
    public mutating func nonRootRead(_ encoding: UInt64) -> NonRootAccess {
        guard shadowFields != nil, encoding <= 0x7FFF, !vmreadBitmap.traps(encoding) else { return .exit }
        guard let shadow else { return .served(.failInvalid) }
        guard VMCS12.supports(encoding) else {
            current?.write(.vmInstructionError, UInt64(VMInstructionError.unsupportedVMCSComponent.rawValue))
            return .served(.failValid(.unsupportedVMCSComponent))
        }
        counters.vmreadServedByShadow += 1
        return .served(.read(shadow.read(VMCSField(UInt32(encoding)))))
    }

    /// A VMWRITE by L1, decided the same way with the VMWRITE bitmap.
    public mutating func nonRootWrite(_ encoding: UInt64, value: UInt64) -> NonRootAccess {
        guard shadowFields != nil, encoding <= 0x7FFF, !vmwriteBitmap.traps(encoding) else { return .exit }
        guard shadow != nil else { return .served(.failInvalid) }
        guard VMCS12.supports(encoding) else {
            current?.write(.vmInstructionError, UInt64(VMInstructionError.unsupportedVMCSComponent.rawValue))
            return .served(.failValid(.unsupportedVMCSComponent))
        }
        let field = VMCSField(UInt32(encoding))
        if field.isReadOnly && !capabilities.vmwriteToReadOnlyFields {
            current?.write(.vmInstructionError, UInt64(VMInstructionError.vmwriteReadOnlyComponent.rawValue))
            return .served(.failValid(.vmwriteReadOnlyComponent))
        }
        shadow?.write(field, value)
        counters.vmwriteServedByShadow += 1
        return .served(.succeeded)
    }

    // MARK: L0's emulation of a trapped VMX instruction

    /// Emulates one VMX instruction that trapped to L0.
    public mutating func execute(
        _ instruction: VMXInstruction, context: L1InstructionContext = .kernel,
        memory: any GuestMemory
    ) -> VMXOutcome {
        counters.countTrap(instruction.mnemonic)
        // Faults common to every VMX instruction (SDM 31.3).
        if case .vmxon = instruction, !inVMXOperation {
            if !context.protectedMode || !context.cr4VMXE || context.virtual8086 || context.compatibilityMode {
                return .exception(.invalidOpcode)
            }
            if context.cpl > 0 { return .exception(.generalProtection(errorCode: 0)) }
        } else {
            if !inVMXOperation || context.virtual8086 || context.compatibilityMode
                || !context.protectedMode {
                return .exception(.invalidOpcode)
            }
            if context.cpl > 0 { return .exception(.generalProtection(errorCode: 0)) }
        }

        switch instruction {
        case .vmxon(let region): return vmxon(region, memory: memory)
        case .vmxoff: return vmxoff(memory: memory)
        case .vmclear(let region): return vmclear(region, memory: memory)
        case .vmptrld(let region): return vmptrld(region, memory: memory)
        case .vmptrst: return .stored(currentRegion ?? ~0)
        case .vmread(let encoding): return vmread(encoding)
        case .vmwrite(let encoding, let value): return vmwrite(encoding, value)
        case .vmlaunch: return enter(launch: true, context: context, memory: memory)
        case .vmresume: return enter(launch: false, context: context, memory: memory)
        case .invept(let type):
            // Single-context (1) and all-context (2) are reported in IA32_VMX_EPT_VPID_CAP.
            return type == 1 || type == 2 ? .succeeded : failRecording(.invalidOperandToINVEPTOrINVVPID)
        case .invvpid(let type, let vpid):
            // Individual-address (0), single-context (1), all-context (2); 0 and 1 need a VPID.
            if type > 2 || (type < 2 && vpid == 0) { return failRecording(.invalidOperandToINVEPTOrINVVPID) }
            return .succeeded
        }
    }

    private mutating func failRecording(_ error: VMInstructionError) -> VMXOutcome {
        guard currentRegion != nil else { return .failInvalid }
        current?.write(.vmInstructionError, UInt64(error.rawValue))
        return .failValid(error)
    }

    /// 4 KiB aligned, within the physical-address width, and backed by the LPAR's memory.
    private func validRegionAddress(_ address: UInt64, _ memory: any GuestMemory) -> Bool {
        address & 0xFFF == 0 && address >> UInt64(capabilities.physicalAddressWidth) == 0
            && address <= memory.size && memory.size - address >= UInt64(VMCSRegionHeader.regionSize)
    }

    private mutating func vmxon(_ region: UInt64, memory: any GuestMemory) -> VMXOutcome {
        if inVMXOperation { return failRecording(.vmxonInVMXRoot) }
        guard validRegionAddress(region, memory), let first = try? memory.read32(region) else { return .failInvalid }
        let header = VMCSRegionHeader(firstDword: first)
        guard header.revisionIdentifier == capabilities.revisionIdentifier, !header.isShadow else {
            return .failInvalid
        }
        inVMXOperation = true
        vmxonRegion = region
        currentRegion = nil
        current = nil
        shadow = nil
        vmxonEpoch &+= 1
        return .succeeded
    }

    private mutating func vmxoff(memory: any GuestMemory) -> VMXOutcome {
        releaseCurrent(memory: memory)
        inVMXOperation = false
        inL2 = false
        return .succeeded
    }

    private mutating func vmclear(_ region: UInt64, memory: any GuestMemory) -> VMXOutcome {
        guard validRegionAddress(region, memory) else {
            return failRecording(.vmclearInvalidAddress)
        }
        if region == vmxonRegion { return failRecording(.vmclearVMXONPointer) }
        if region == currentRegion {
            current?.launchState = .clear
            releaseCurrent(memory: memory)   // folds the shadow in and writes the region back
        } else {
            // Make the region's launch state clear in memory (SDM: "initialize implementation-
            // specific data in the VMCS region; launch state <- clear").
            if let bytes = try? memory.read(region, count: VMCSRegionHeader.regionSize) {
                var vmcs = VMCS12(regionImage: bytes)
                vmcs.launchState = .clear
                try? memory.write(region, vmcs.regionImage())
            }
        }
        return .succeeded
    }

    private mutating func vmptrld(_ region: UInt64, memory: any GuestMemory) -> VMXOutcome {
        guard validRegionAddress(region, memory) else {
            return failRecording(.vmptrldInvalidAddress)
        }
        if region == vmxonRegion { return failRecording(.vmptrldVMXONPointer) }
        guard let first = try? memory.read32(region) else { return failRecording(.vmptrldInvalidAddress) }
        let header = VMCSRegionHeader(firstDword: first)
        // L0 does not offer VMCS shadowing to L1, so a region marked as a shadow VMCS is refused.
        guard header.revisionIdentifier == capabilities.revisionIdentifier, !header.isShadow else {
            return failRecording(.vmptrldIncorrectRevision)
        }
        if region == currentRegion { return .succeeded }
        releaseCurrent(memory: memory)
        guard let bytes = try? memory.read(region, count: VMCSRegionHeader.regionSize) else {
            return failRecording(.vmptrldInvalidAddress)
        }
        currentRegion = region
        current = VMCS12(regionImage: bytes)
        if let shadowFields {
            var fresh = ShadowVMCS(fieldSet: shadowFields)
            counters.fieldsCopiedToShadow += UInt64(fresh.load(from: current!))
            counters.shadowSyncsToShadow += 1
            shadow = fresh
        }
        return .succeeded
    }

    /// Writes the current vmcs12 back to L1 memory and makes the current-VMCS pointer invalid.
    private mutating func releaseCurrent(memory: any GuestMemory) {
        guard let region = currentRegion, current != nil else { return }
        syncShadowToVMCS12()
        try? memory.write(region, current!.regionImage())
        currentRegion = nil
        current = nil
        shadow = nil
    }

    private mutating func vmread(_ encoding: UInt64) -> VMXOutcome {
        guard currentRegion != nil, current != nil else { return .failInvalid }
        guard VMCS12.supports(encoding) else { return failRecording(.unsupportedVMCSComponent) }
        let field = VMCSField(UInt32(encoding))
        // A shadowed field may be newer in the shadow VMCS (L1 wrote it without an exit).
        if let shadow, shadow.holds(field), shadowFields!.readWrite.contains(field.fullField) {
            current!.write(field.fullField, shadow.read(field.fullField))
            counters.fieldsCopiedToVMCS12 += 1
        }
        return .read(current!.read(field))
    }

    private mutating func vmwrite(_ encoding: UInt64, _ value: UInt64) -> VMXOutcome {
        guard currentRegion != nil, current != nil else { return .failInvalid }
        guard VMCS12.supports(encoding) else { return failRecording(.unsupportedVMCSComponent) }
        let field = VMCSField(UInt32(encoding))
        if field.isReadOnly && !capabilities.vmwriteToReadOnlyFields {
            return failRecording(.vmwriteReadOnlyComponent)
        }
        if let shadow, shadow.holds(field), shadowFields!.readWrite.contains(field.fullField) {
            current!.write(field.fullField, shadow.read(field.fullField))
        }
        current!.write(field, value)
        // Keep the shadow coherent: L1 will read this field through it without an exit.
        if shadow?.holds(field) == true {
            shadow!.write(field.fullField, current!.read(field.fullField))
            counters.fieldsCopiedToShadow += 1
        }
        return .succeeded
    }

    private mutating func syncShadowToVMCS12() {
        guard let shadow, current != nil else { return }
        counters.fieldsCopiedToVMCS12 += UInt64(shadow.store(into: &current!))
        counters.shadowSyncsToVMCS12 += 1
    }

    private mutating func syncVMCS12ToShadow() {
        guard shadow != nil, let current else { return }
        counters.fieldsCopiedToShadow += UInt64(shadow!.load(from: current))
        counters.shadowSyncsToShadow += 1
    }

    // MARK: VM entry

    private mutating func enter(launch: Bool, context: L1InstructionContext,
                                memory: any GuestMemory) -> VMXOutcome {
        guard currentRegion != nil, current != nil else { return .failInvalid }
        syncShadowToVMCS12()
        if context.blockedByMovSS { return failRecording(.entryEventsBlockedByMOVSS) }
        let vmcs = current!
        if launch && vmcs.launchState != .clear { return failRecording(.vmlaunchNonClearVMCS) }
        if !launch {
            if vmcs.launchState != .launched { return failRecording(.vmresumeNonLaunchedVMCS) }
            if vmcs.launchEpoch != vmxonEpoch { return failRecording(.vmresumeAfterVMXOFF) }
        }
        if let problem = EntryChecks.controls(vmcs, capabilities) {
            lastEntryFailure = problem
            return failRecording(.entryInvalidControlFields)
        }
        if let problem = EntryChecks.hostState(vmcs, capabilities) {
            lastEntryFailure = problem
            return failRecording(.entryInvalidHostStateFields)
        }
        if let failure = EntryChecks.guestState(vmcs, capabilities) {
            lastEntryFailure = failure.reason
            // SDM 27.8: the entry fails after the checks of controls and host state; the
            // processor loads host state and reports exit reason 33 (or 34) with bit 31 set.
            let reason = ExitReason.entryFailureFlag | UInt32(ExitReason.invalidGuestState.rawValue)
            current!.write(.vmExitReason, UInt64(reason))
            current!.write(.exitQualification, failure.qualification)
            syncVMCS12ToShadow()
            return .entryFailed(reason: reason, qualification: failure.qualification,
                                resume: hostResumeState(vmcs))
        }
        lastEntryFailure = nil
        if launch {
            current!.launchState = .launched
            current!.launchEpoch = vmxonEpoch
        }
        var guest = VMCSState()
        for field in VMCSState.guestStateFields { guest[field] = vmcs.read(field) }
        let info = InterruptionInfo(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.vmEntryIntrInfoField)))
        let secondary = SecondaryControls(rawValue: EntryChecks.secondary(of: vmcs))
        inL2 = true
        counters.l2Entries += 1
        return .enteredL2(L2Entry(
            guestState: guest,
            injection: info.isValid ? info : nil,
            injectionErrorCode: UInt32(truncatingIfNeeded: vmcs.read(.vmEntryExceptionErrorCode)),
            injectionInstructionLength: UInt32(truncatingIfNeeded: vmcs.read(.vmEntryInstructionLen)),
            eptPointer: secondary.contains(.enableEPT) ? vmcs.read(.eptPointer) : nil))
    }

    /// L1's state after a VM exit: the host-state fields of vmcs12, with RIP/RSP/CR* named
    /// as the guest-state fields of L1 (so the backend loads them the same way).
    private func hostResumeState(_ vmcs: VMCS12) -> VMCSState {
        var state = VMCSState()
        let map: [(VMCSField, VMCSField)] = [
            (.hostRIP, .guestRIP), (.hostRSP, .guestRSP), (.hostCR0, .guestCR0),
            (.hostCR3, .guestCR3), (.hostCR4, .guestCR4), (.hostCSSelector, .guestCSSelector),
            (.hostSSSelector, .guestSSSelector), (.hostDSSelector, .guestDSSelector),
            (.hostESSelector, .guestESSelector), (.hostFSSelector, .guestFSSelector),
            (.hostGSSelector, .guestGSSelector), (.hostTRSelector, .guestTRSelector),
            (.hostFSBase, .guestFSBase), (.hostGSBase, .guestGSBase), (.hostTRBase, .guestTRBase),
            (.hostGDTRBase, .guestGDTRBase), (.hostIDTRBase, .guestIDTRBase),
            (.hostIA32SysenterCS, .guestSysenterCS), (.hostIA32SysenterEsp, .guestSysenterEsp),
            (.hostIA32SysenterEip, .guestSysenterEip), (.hostIA32EFER, .guestIA32EFER),
            (.hostIA32PAT, .guestIA32PAT),
        ]
        for (host, guest) in map { state[guest] = vmcs.read(host) }
        // SDM 28.5.1: RFLAGS is cleared except bit 1 on every VM exit.
        state[.guestRFLAGS] = 0x2
        return state
    }

    // MARK: Exit routing

    /// Decides whether L0 keeps an L2 exit or reflects it to L1, and reflects it: the exit
    /// fields of vmcs12 are filled, L2's state is saved into vmcs12, the shadow VMCS is
    /// refreshed, and L1 resumes at vmcs12's host state.
    public mutating func route(_ exit: L2Exit, memory: any GuestMemory) -> ExitRoute {
        counters.countL2Exit(exit.reason)
        guard inL2, let vmcs = current else {
            counters.l2ExitsHandledByL0 += 1
            return .handledByL0(.emulatedForLPAR)
        }
        switch ExitRouting.decide(exit, vmcs12: vmcs, memory: memory) {
        case .keep(let handling):
            counters.l2ExitsHandledByL0 += 1
            return .handledByL0(handling)
        case .reflect(let qualification):
            var reflected = exit
            if let qualification { reflected.qualification = qualification }
            return .reflected(resume: reflect(reflected))
        }
    }

    /// Performs the nested VM exit to L1 (SDM 28, as L0 emulates it for vmcs12).
    public mutating func reflect(_ exit: L2Exit) -> VMCSState {
        counters.l2ExitsReflected += 1
        var vmcs = current!
        vmcs.write(.vmExitReason, UInt64(exit.reason.rawValue))
        vmcs.write(.exitQualification, exit.qualification)
        vmcs.write(.vmExitIntrInfo, UInt64(exit.interruptionInfo))
        vmcs.write(.vmExitIntrErrorCode, UInt64(exit.interruptionErrorCode))
        vmcs.write(.idtVectoringInfoField, UInt64(exit.idtVectoringInfo))
        vmcs.write(.idtVectoringErrorCode, UInt64(exit.idtVectoringErrorCode))
        vmcs.write(.vmExitInstructionLen, UInt64(exit.instructionLength))
        vmcs.write(.vmxInstructionInfo, UInt64(exit.instructionInfo))
        vmcs.write(.guestLinearAddress, exit.guestLinearAddress)
        vmcs.write(.guestPhysicalAddress, exit.guestPhysicalAddress)
        for field in ExitRouting.savedGuestFields {
            vmcs.write(field, exit.guestState[field])
        }
        // SDM 28.2.4: a VM exit clears the valid bit of the VM-entry interruption field.
        let entryInfo = vmcs.read(.vmEntryIntrInfoField)
        vmcs.write(.vmEntryIntrInfoField, entryInfo & ~UInt64(InterruptionInfo.validBit))
        current = vmcs
        inL2 = false
        syncVMCS12ToShadow()
        return hostResumeState(vmcs)
    }

    // MARK: The shadow VMCS as a page of slots (the KVM backend's VMX microcode page)

    /// The shadow VMCS's values, one per field of `shadowFields.all` in that order; nil when
    /// shadowing is off or no VMCS is current.
    public var shadowSlots: [UInt64]? {
        guard let shadowFields, let shadow else { return nil }
        return shadowFields.all.map { shadow.read($0) }
    }

    /// L1 wrote shadowed fields without an exit (through the VMX microcode page): takes the
    /// read-write fields from `slots` (laid out as `shadowSlots`); the read-only ones stay
    /// L0's, whatever the page says.
    public mutating func absorbShadowSlots(_ slots: [UInt64]) {
        guard let shadowFields, shadow != nil, slots.count == shadowFields.all.count else { return }
        let writable = Set(shadowFields.readWrite)
        for (field, value) in zip(shadowFields.all, slots) where writable.contains(field) {
            shadow!.write(field, value)
        }
    }

    /// Reads a vmcs12 field as L0 sees it (after folding in the shadow's newer values).
    public func peek(_ field: VMCSField) -> UInt64? {
        guard var vmcs = current else { return nil }
        if let shadow { shadow.store(into: &vmcs) }
        return vmcs.read(field)
    }
}

/// What a vCPU's nested-VMX state is made of, to save and restore it (what Linux's
/// `kvm_nested_state` carries for VMX: the VMXON and current-VMCS addresses, whether L2 runs,
/// vmcs12 and the shadow VMCS), with the epoch and counters Nestor keeps beside them.
public struct NestedVMXSnapshot: Equatable, Sendable, Codable {
    public var inVMXOperation: Bool
    public var vmxonRegion: UInt64
    public var currentRegion: UInt64?
    /// The cached vmcs12, as its region image (launch state and epoch included).
    public var vmcs12: [UInt8]?
    /// The shadow VMCS, as `NestedVMX.shadowSlots`.
    public var shadowSlots: [UInt64]?
    public var inL2: Bool
    public var vmxonEpoch: UInt32
    public var counters: NestedCounters
}

extension NestedVMX {
    public var snapshot: NestedVMXSnapshot {
        NestedVMXSnapshot(inVMXOperation: inVMXOperation, vmxonRegion: vmxonRegion, currentRegion: currentRegion,
                          vmcs12: current?.regionImage(), shadowSlots: shadowSlots, inL2: inL2, vmxonEpoch: vmxonEpoch,
                          counters: counters)
    }

    /// The state of `snapshot`, on an L0 with the same capabilities and shadow field set.
    public init(capabilities: VMXCapabilities, shadowFields: ShadowFieldSet?, restoring snapshot: NestedVMXSnapshot) {
        self.init(capabilities: capabilities, shadowFields: shadowFields)
        inVMXOperation = snapshot.inVMXOperation
        vmxonRegion = snapshot.vmxonRegion
        currentRegion = snapshot.currentRegion
        current = snapshot.vmcs12.map { VMCS12(regionImage: $0) }
        if let shadowFields, let slots = snapshot.shadowSlots, slots.count == shadowFields.all.count, current != nil {
            var restored = ShadowVMCS(fieldSet: shadowFields)
            for (field, value) in zip(shadowFields.all, slots) { restored.write(field, value) }
            shadow = restored
        }
        inL2 = snapshot.inL2
        vmxonEpoch = snapshot.vmxonEpoch
        counters = snapshot.counters
    }
}

/// Per-LPAR counters of the nested-VMX path.
public struct NestedCounters: Equatable, Sendable, Codable {
    /// L2 exits seen by L0, by basic exit reason.
    public var l2ExitsByReason: [UInt16: UInt64] = [:]
    public var l2ExitsReflected: UInt64 = 0
    public var l2ExitsHandledByL0: UInt64 = 0
    public var l2Entries: UInt64 = 0
    /// VMX instructions of L1 that trapped to L0, by mnemonic.
    public var vmxTrapped: [String: UInt64] = [:]
    public var vmreadServedByShadow: UInt64 = 0
    public var vmwriteServedByShadow: UInt64 = 0
    public var fieldsCopiedToShadow: UInt64 = 0
    public var fieldsCopiedToVMCS12: UInt64 = 0
    public var shadowSyncsToShadow: UInt64 = 0
    public var shadowSyncsToVMCS12: UInt64 = 0
    /// Time L0 spent on this LPAR's nested path, as the backend measured or modelled it.
    public var l0Nanoseconds: UInt64 = 0

    public init() {}

    public var totalTrapped: UInt64 { vmxTrapped.values.reduce(0, +) }
    public var totalServedByShadow: UInt64 { vmreadServedByShadow + vmwriteServedByShadow }
    public var totalL2Exits: UInt64 { l2ExitsByReason.values.reduce(0, +) }

    mutating func countTrap(_ mnemonic: String) { vmxTrapped[mnemonic, default: 0] += 1 }
    mutating func countL2Exit(_ reason: ExitReason) { l2ExitsByReason[reason.rawValue, default: 0] += 1 }
}
