/// Pin-based VM-execution controls (SDM 25.6.1).
public struct PinBasedControls: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let externalInterruptExiting = PinBasedControls(rawValue: 1 << 0)
    public static let nmiExiting = PinBasedControls(rawValue: 1 << 3)
    public static let virtualNMIs = PinBasedControls(rawValue: 1 << 5)
    public static let preemptionTimer = PinBasedControls(rawValue: 1 << 6)
    public static let postedInterrupts = PinBasedControls(rawValue: 1 << 7)
    /// Bits 1, 2 and 4 are reserved to 1 ("default1" class, SDM Appendix A.3.1).
    public static let defaultOnes = PinBasedControls(rawValue: 0x16)
}

/// Primary processor-based VM-execution controls (SDM 25.6.2).
public struct ProcessorControls: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let interruptWindowExiting = ProcessorControls(rawValue: 1 << 2)
    public static let useTSCOffsetting = ProcessorControls(rawValue: 1 << 3)
    public static let hltExiting = ProcessorControls(rawValue: 1 << 7)
    public static let invlpgExiting = ProcessorControls(rawValue: 1 << 9)
    public static let mwaitExiting = ProcessorControls(rawValue: 1 << 10)
    public static let rdpmcExiting = ProcessorControls(rawValue: 1 << 11)
    public static let rdtscExiting = ProcessorControls(rawValue: 1 << 12)
    public static let cr3LoadExiting = ProcessorControls(rawValue: 1 << 15)
    public static let cr3StoreExiting = ProcessorControls(rawValue: 1 << 16)
    public static let cr8LoadExiting = ProcessorControls(rawValue: 1 << 19)
    public static let cr8StoreExiting = ProcessorControls(rawValue: 1 << 20)
    public static let useTPRShadow = ProcessorControls(rawValue: 1 << 21)
    public static let nmiWindowExiting = ProcessorControls(rawValue: 1 << 22)
    public static let movDRExiting = ProcessorControls(rawValue: 1 << 23)
    public static let unconditionalIOExiting = ProcessorControls(rawValue: 1 << 24)
    public static let useIOBitmaps = ProcessorControls(rawValue: 1 << 25)
    public static let monitorTrapFlag = ProcessorControls(rawValue: 1 << 27)
    public static let useMSRBitmaps = ProcessorControls(rawValue: 1 << 28)
    public static let monitorExiting = ProcessorControls(rawValue: 1 << 29)
    public static let pauseExiting = ProcessorControls(rawValue: 1 << 30)
    public static let activateSecondaryControls = ProcessorControls(rawValue: 1 << 31)
    /// Bits 1, 4-6, 8, 13-16 and 26 are reserved to 1 (SDM Appendix A.3.2).
    public static let defaultOnes = ProcessorControls(rawValue: 0x0401_E172)
}

/// Secondary processor-based VM-execution controls (SDM 25.6.2).
public struct SecondaryControls: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let virtualizeAPICAccesses = SecondaryControls(rawValue: 1 << 0)
    public static let enableEPT = SecondaryControls(rawValue: 1 << 1)
    public static let descriptorTableExiting = SecondaryControls(rawValue: 1 << 2)
    public static let enableRDTSCP = SecondaryControls(rawValue: 1 << 3)
    public static let virtualizeX2APICMode = SecondaryControls(rawValue: 1 << 4)
    public static let enableVPID = SecondaryControls(rawValue: 1 << 5)
    public static let wbinvdExiting = SecondaryControls(rawValue: 1 << 6)
    public static let unrestrictedGuest = SecondaryControls(rawValue: 1 << 7)
    public static let apicRegisterVirtualization = SecondaryControls(rawValue: 1 << 8)
    public static let virtualInterruptDelivery = SecondaryControls(rawValue: 1 << 9)
    public static let pauseLoopExiting = SecondaryControls(rawValue: 1 << 10)
    public static let rdrandExiting = SecondaryControls(rawValue: 1 << 11)
    public static let enableINVPCID = SecondaryControls(rawValue: 1 << 12)
    public static let enableVMFunctions = SecondaryControls(rawValue: 1 << 13)
    /// Bit 14: "VMCS shadowing" — VMREAD/VMWRITE in VMX non-root operation may access a shadow
    /// VMCS, as the VMREAD/VMWRITE bitmaps direct.
    public static let vmcsShadowing = SecondaryControls(rawValue: 1 << 14)
    public static let rdseedExiting = SecondaryControls(rawValue: 1 << 16)
    public static let enablePML = SecondaryControls(rawValue: 1 << 17)
    public static let eptViolationVE = SecondaryControls(rawValue: 1 << 18)
    public static let enableXSAVES = SecondaryControls(rawValue: 1 << 20)
    public static let useTSCScaling = SecondaryControls(rawValue: 1 << 25)
}

/// VM-exit controls (SDM 25.7.1).
public struct ExitControls: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let saveDebugControls = ExitControls(rawValue: 1 << 2)
    public static let hostAddressSpaceSize = ExitControls(rawValue: 1 << 9)
    public static let loadIA32PerfGlobalCtrl = ExitControls(rawValue: 1 << 12)
    public static let acknowledgeInterruptOnExit = ExitControls(rawValue: 1 << 15)
    public static let saveIA32PAT = ExitControls(rawValue: 1 << 18)
    public static let loadIA32PAT = ExitControls(rawValue: 1 << 19)
    public static let saveIA32EFER = ExitControls(rawValue: 1 << 20)
    public static let loadIA32EFER = ExitControls(rawValue: 1 << 21)
    public static let savePreemptionTimer = ExitControls(rawValue: 1 << 22)
    /// Bits 0-8, 10, 11, 13, 14, 16 and 17 are reserved to 1 (SDM Appendix A.4).
    public static let defaultOnes = ExitControls(rawValue: 0x0003_6DFF)
}

/// VM-entry controls (SDM 25.8.1).
public struct EntryControls: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let loadDebugControls = EntryControls(rawValue: 1 << 2)
    public static let ia32eModeGuest = EntryControls(rawValue: 1 << 9)
    public static let entryToSMM = EntryControls(rawValue: 1 << 10)
    public static let deactivateDualMonitor = EntryControls(rawValue: 1 << 11)
    public static let loadIA32PerfGlobalCtrl = EntryControls(rawValue: 1 << 13)
    public static let loadIA32PAT = EntryControls(rawValue: 1 << 14)
    public static let loadIA32EFER = EntryControls(rawValue: 1 << 15)
    /// Bits 0-8 and 12 are reserved to 1 (SDM Appendix A.5).
    public static let defaultOnes = EntryControls(rawValue: 0x0000_11FF)
}

/// Allowed settings of a 32-bit control word, as a capability MSR reports them (SDM A.3):
/// bits 31:0 are the allowed-0 settings (a set bit must be 1), bits 63:32 the allowed-1
/// settings (a clear bit must be 0).
public struct ControlCapability: Equatable, Sendable {
    public var mustBeOne: UInt32
    public var mayBeOne: UInt32

    public init(mustBeOne: UInt32, mayBeOne: UInt32) {
        self.mustBeOne = mustBeOne
        self.mayBeOne = mayBeOne | mustBeOne
    }

    public init(msrValue: UInt64) {
        self.init(mustBeOne: UInt32(truncatingIfNeeded: msrValue), mayBeOne: UInt32(msrValue >> 32))
    }

    public var msrValue: UInt64 { UInt64(mustBeOne) | (UInt64(mayBeOne) << 32) }

    /// True when `value` sets every must-be-one bit and no must-be-zero bit.
    public func permits(_ value: UInt32) -> Bool {
        value & mustBeOne == mustBeOne && value & ~mayBeOne == 0
    }

    /// The bits of `value` that break this capability.
    public func violations(of value: UInt32) -> UInt32 {
        (mustBeOne & ~value) | (value & ~mayBeOne)
    }
}
