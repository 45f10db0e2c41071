/// Indices of the VMX capability MSRs (SDM Appendix A, Table 2-2 of Vol. 4).
public enum VMXCapabilityMSR: UInt32, Sendable, CaseIterable {
    case basic = 0x480
    case pinBasedControls = 0x481
    case processorControls = 0x482
    case exitControls = 0x483
    case entryControls = 0x484
    case misc = 0x485
    case cr0Fixed0 = 0x486
    case cr0Fixed1 = 0x487
    case cr4Fixed0 = 0x488
    case cr4Fixed1 = 0x489
    case vmcsEnum = 0x48A
    case secondaryControls = 0x48B
    case eptVPIDCapabilities = 0x48C
    case truePinBasedControls = 0x48D
    case trueProcessorControls = 0x48E
    case trueExitControls = 0x48F
    case trueEntryControls = 0x490
    case vmFunctions = 0x491
}

/// The VMX capabilities an L0 reports to a guest hypervisor through the capability MSRs.
///
/// These values are what the nested-VMX core checks VM entries against: a control bit that
/// the matching capability forbids makes VMLAUNCH/VMRESUME fail with VM-instruction error 7.
public struct VMXCapabilities: Equatable, Sendable {
    /// Bits 30:0 of IA32_VMX_BASIC and of the first dword of every VMCS region L1 uses.
    public var revisionIdentifier: UInt32
    public var pinBased: ControlCapability
    public var processor: ControlCapability
    public var secondary: ControlCapability
    public var exit: ControlCapability
    public var entry: ControlCapability
    /// IA32_VMX_MISC bit 29: VMWRITE may write VM-exit information fields.
    public var vmwriteToReadOnlyFields: Bool
    /// IA32_VMX_MISC bits 24:16: how many CR3-target values are supported.
    public var cr3TargetCount: UInt32
    /// IA32_VMX_MISC bits 8:6: activity states HLT, shutdown, wait-for-SIPI supported.
    public var activityStates: UInt32
    public var cr0Fixed0: UInt64
    public var cr0Fixed1: UInt64
    public var cr4Fixed0: UInt64
    public var cr4Fixed1: UInt64
    /// The highest index (bits 9:1) of any supported field encoding, for IA32_VMX_VMCS_ENUM.
    public var highestFieldIndex: UInt32
    /// Physical-address width (bits) guest-physical pointers must fit in.
    public var physicalAddressWidth: Int

    public init(
        revisionIdentifier: UInt32, pinBased: ControlCapability, processor: ControlCapability,
        secondary: ControlCapability, exit: ControlCapability, entry: ControlCapability,
        vmwriteToReadOnlyFields: Bool, cr3TargetCount: UInt32 = 4, activityStates: UInt32 = 0b001,
        cr0Fixed0: UInt64 = 0x8000_0021, cr0Fixed1: UInt64 = 0xFFFF_FFFF,
        cr4Fixed0: UInt64 = 0x2000, cr4Fixed1: UInt64 = 0x003F_67FF,
        highestFieldIndex: UInt32 = 0x17, physicalAddressWidth: Int = 46
    ) {
        self.revisionIdentifier = revisionIdentifier & 0x7FFF_FFFF
        self.pinBased = pinBased
        self.processor = processor
        self.secondary = secondary
        self.exit = exit
        self.entry = entry
        self.vmwriteToReadOnlyFields = vmwriteToReadOnlyFields
        self.cr3TargetCount = cr3TargetCount
        self.activityStates = activityStates
        self.cr0Fixed0 = cr0Fixed0
        self.cr0Fixed1 = cr0Fixed1
        self.cr4Fixed0 = cr4Fixed0
        self.cr4Fixed1 = cr4Fixed1
        self.highestFieldIndex = highestFieldIndex
        self.physicalAddressWidth = physicalAddressWidth
    }

    /// The revision identifier Nestor's L0 reports ("NEST" folded into 31 bits).
    public static let nestorRevision: UInt32 = 0x4E45_5354 & 0x7FFF_FFFF

    /// What Nestor's L0 offers an LPAR created with `vmm: true`.
    ///
    /// The set follows what Linux KVM's nested VMX offers L1 (EPT, VPID, unrestricted guest,
    /// MSR and I/O bitmaps, TPR shadow, APIC-access virtualization), with VMCS shadowing
    /// reported to L1 as not available: L0 uses shadowing itself, for L1; L1 does not nest
    /// further. `shadowing` controls only L0's own use and does not change these MSRs.
    public static func nestorDefault(vmwriteToReadOnlyFields: Bool = true) -> VMXCapabilities {
        let pinAllowed: PinBasedControls = [
            .defaultOnes, .externalInterruptExiting, .nmiExiting, .virtualNMIs, .preemptionTimer,
        ]
        let procAllowed: ProcessorControls = [
            .defaultOnes, .interruptWindowExiting, .useTSCOffsetting, .hltExiting, .invlpgExiting,
            .mwaitExiting, .rdpmcExiting, .rdtscExiting, .cr3LoadExiting, .cr3StoreExiting,
            .cr8LoadExiting, .cr8StoreExiting, .useTPRShadow, .nmiWindowExiting, .movDRExiting,
            .unconditionalIOExiting, .useIOBitmaps, .monitorTrapFlag, .useMSRBitmaps,
            .monitorExiting, .pauseExiting, .activateSecondaryControls,
        ]
        let secondaryAllowed: SecondaryControls = [
            .virtualizeAPICAccesses, .enableEPT, .descriptorTableExiting, .enableRDTSCP,
            .virtualizeX2APICMode, .enableVPID, .wbinvdExiting, .unrestrictedGuest,
            .pauseLoopExiting, .enableINVPCID,
        ]
        let exitAllowed: ExitControls = [
            .defaultOnes, .hostAddressSpaceSize, .loadIA32PerfGlobalCtrl,
            .acknowledgeInterruptOnExit, .saveIA32PAT, .loadIA32PAT, .saveIA32EFER, .loadIA32EFER,
            .savePreemptionTimer,
        ]
        let entryAllowed: EntryControls = [
            .defaultOnes, .ia32eModeGuest, .loadIA32PerfGlobalCtrl, .loadIA32PAT, .loadIA32EFER,
        ]
        return VMXCapabilities(
            revisionIdentifier: nestorRevision,
            pinBased: ControlCapability(mustBeOne: PinBasedControls.defaultOnes.rawValue,
                                        mayBeOne: pinAllowed.rawValue),
            // The TRUE controls (IA32_VMX_BASIC bit 55) let CR3-load and CR3-store exiting
            // be 0, as an EPT guest needs; the legacy MSR still reports them as default 1.
            processor: ControlCapability(
                mustBeOne: ProcessorControls.defaultOnes.subtracting([.cr3LoadExiting, .cr3StoreExiting]).rawValue,
                mayBeOne: procAllowed.rawValue),
            secondary: ControlCapability(mustBeOne: 0, mayBeOne: secondaryAllowed.rawValue),
            exit: ControlCapability(mustBeOne: ExitControls.defaultOnes.rawValue,
                                    mayBeOne: exitAllowed.rawValue),
            entry: ControlCapability(mustBeOne: EntryControls.defaultOnes.rawValue,
                                     mayBeOne: entryAllowed.rawValue),
            vmwriteToReadOnlyFields: vmwriteToReadOnlyFields)
    }

    /// IA32_VMX_BASIC: revision (30:0), region size (44:32), memory type WB (53:50 = 6),
    /// INS/OUTS exit information (54), TRUE controls (55).
    public var basic: UInt64 {
        UInt64(revisionIdentifier) | (UInt64(VMCSRegionHeader.regionSize) << 32) | (6 << 50)
            | (1 << 54) | (1 << 55)
    }

    /// IA32_VMX_MISC: activity states (8:6), CR3-target count (24:16), VMWRITE to
    /// VM-exit information fields (29), "store EFER.LMA" (5).
    public var misc: UInt64 {
        var value: UInt64 = (1 << 5) | (UInt64(activityStates & 7) << 6)
            | (UInt64(cr3TargetCount & 0x1FF) << 16)
        if vmwriteToReadOnlyFields { value |= 1 << 29 }
        return value
    }

    /// The value L1 reads with RDMSR of a capability MSR.
    public func read(_ msr: VMXCapabilityMSR) -> UInt64 {
        switch msr {
        case .basic: return basic
        case .pinBasedControls, .truePinBasedControls: return pinBased.msrValue
        case .processorControls:
            return ControlCapability(mustBeOne: processor.mustBeOne | ProcessorControls.defaultOnes.rawValue,
                                     mayBeOne: processor.mayBeOne).msrValue
        case .trueProcessorControls: return processor.msrValue
        case .exitControls, .trueExitControls: return exit.msrValue
        case .entryControls, .trueEntryControls: return entry.msrValue
        case .misc: return misc
        case .cr0Fixed0: return cr0Fixed0
        case .cr0Fixed1: return cr0Fixed1
        case .cr4Fixed0: return cr4Fixed0
        case .cr4Fixed1: return cr4Fixed1
        case .vmcsEnum: return UInt64(highestFieldIndex) << 1
        case .secondaryControls: return secondary.msrValue
        // EPT: execute-only, 4-level walk, WB, 2 MiB pages, INVEPT single and all-context;
        // VPID: INVVPID individual-address, single and all-context.
        case .eptVPIDCapabilities:
            return (1 << 0) | (1 << 6) | (1 << 14) | (1 << 16) | (1 << 20) | (1 << 25) | (1 << 26)
                | (1 << 32) | (1 << 40) | (1 << 41) | (1 << 42)
        case .vmFunctions: return 0
        }
    }
}
