/// A basic VM-exit reason (SDM Appendix C), the low 16 bits of the exit-reason field.
public struct ExitReason: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }
    public static func < (a: ExitReason, b: ExitReason) -> Bool { a.rawValue < b.rawValue }

    public static let exceptionOrNMI = ExitReason(0)
    public static let externalInterrupt = ExitReason(1)
    public static let tripleFault = ExitReason(2)
    public static let initSignal = ExitReason(3)
    public static let sipi = ExitReason(4)
    public static let interruptWindow = ExitReason(7)
    public static let nmiWindow = ExitReason(8)
    public static let taskSwitch = ExitReason(9)
    public static let cpuid = ExitReason(10)
    public static let hlt = ExitReason(12)
    public static let invd = ExitReason(13)
    public static let invlpg = ExitReason(14)
    public static let rdpmc = ExitReason(15)
    public static let rdtsc = ExitReason(16)
    public static let vmcall = ExitReason(18)
    public static let vmclear = ExitReason(19)
    public static let vmlaunch = ExitReason(20)
    public static let vmptrld = ExitReason(21)
    public static let vmptrst = ExitReason(22)
    public static let vmread = ExitReason(23)
    public static let vmresume = ExitReason(24)
    public static let vmwrite = ExitReason(25)
    public static let vmxoff = ExitReason(26)
    public static let vmxon = ExitReason(27)
    public static let crAccess = ExitReason(28)
    public static let drAccess = ExitReason(29)
    public static let ioInstruction = ExitReason(30)
    public static let msrRead = ExitReason(31)
    public static let msrWrite = ExitReason(32)
    public static let invalidGuestState = ExitReason(33)
    public static let msrLoadFailure = ExitReason(34)
    public static let mwait = ExitReason(36)
    public static let monitorTrapFlag = ExitReason(37)
    public static let monitor = ExitReason(39)
    public static let pause = ExitReason(40)
    public static let machineCheckDuringEntry = ExitReason(41)
    public static let tprBelowThreshold = ExitReason(43)
    public static let apicAccess = ExitReason(44)
    public static let virtualizedEOI = ExitReason(45)
    public static let gdtrIdtrAccess = ExitReason(46)
    public static let ldtrTrAccess = ExitReason(47)
    public static let eptViolation = ExitReason(48)
    public static let eptMisconfiguration = ExitReason(49)
    public static let invept = ExitReason(50)
    public static let rdtscp = ExitReason(51)
    public static let preemptionTimer = ExitReason(52)
    public static let invvpid = ExitReason(53)
    public static let wbinvd = ExitReason(54)
    public static let xsetbv = ExitReason(55)
    public static let apicWrite = ExitReason(56)
    public static let rdrand = ExitReason(57)
    public static let invpcid = ExitReason(58)
    public static let vmfunc = ExitReason(59)
    public static let rdseed = ExitReason(61)
    public static let pmlFull = ExitReason(62)
    public static let xsaves = ExitReason(63)
    public static let xrstors = ExitReason(64)

    /// Bit 31 of the exit-reason field: the VM entry failed.
    public static let entryFailureFlag: UInt32 = 0x8000_0000

    static let names: [UInt16: String] = [
        0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT_SIGNAL",
        4: "SIPI_SIGNAL", 7: "INTERRUPT_WINDOW", 8: "NMI_WINDOW", 9: "TASK_SWITCH", 10: "CPUID",
        12: "HLT", 13: "INVD", 14: "INVLPG", 15: "RDPMC", 16: "RDTSC", 18: "VMCALL",
        19: "VMCLEAR", 20: "VMLAUNCH", 21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD",
        24: "VMRESUME", 25: "VMWRITE", 26: "VMOFF", 27: "VMON", 28: "CR_ACCESS",
        29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "MSR_READ", 32: "MSR_WRITE",
        33: "INVALID_STATE", 34: "MSR_LOAD_FAIL", 36: "MWAIT_INSTRUCTION",
        37: "MONITOR_TRAP_FLAG", 39: "MONITOR_INSTRUCTION", 40: "PAUSE_INSTRUCTION",
        41: "MCE_DURING_VMENTRY", 43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS",
        45: "EOI_INDUCED", 46: "GDTR_IDTR", 47: "LDTR_TR", 48: "EPT_VIOLATION",
        49: "EPT_MISCONFIG", 50: "INVEPT", 51: "RDTSCP", 52: "PREEMPTION_TIMER", 53: "INVVPID",
        54: "WBINVD", 55: "XSETBV", 56: "APIC_WRITE", 57: "RDRAND", 58: "INVPCID",
        59: "VMFUNC", 60: "ENCLS", 61: "RDSEED", 62: "PML_FULL", 63: "XSAVES", 64: "XRSTORS",
    ]

    /// Linux's name for the reason (`IO_INSTRUCTION`), or `REASON_n` for an unnamed one.
    public var name: String { ExitReason.names[rawValue] ?? "REASON_\(rawValue)" }
    public var description: String { "\(name)(\(rawValue))" }
    /// Every basic exit reason with a name.
    public static var allNamed: [ExitReason] { names.keys.sorted().map { ExitReason(rawValue: $0) } }

    /// True for the exits caused by the VMX instructions themselves.
    public var isVMXInstruction: Bool { (18...27).contains(rawValue) || self == .invept || self == .invvpid }
}

/// VM-instruction error numbers (SDM 31.4, Table 31-1), stored by a VMfailValid in the
/// VM-instruction error field of the current VMCS.
public enum VMInstructionError: UInt32, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    case vmcallInVMXRoot = 1
    case vmclearInvalidAddress = 2
    case vmclearVMXONPointer = 3
    case vmlaunchNonClearVMCS = 4
    case vmresumeNonLaunchedVMCS = 5
    case vmresumeAfterVMXOFF = 6
    case entryInvalidControlFields = 7
    case entryInvalidHostStateFields = 8
    case vmptrldInvalidAddress = 9
    case vmptrldVMXONPointer = 10
    case vmptrldIncorrectRevision = 11
    case unsupportedVMCSComponent = 12
    case vmwriteReadOnlyComponent = 13
    case vmxonInVMXRoot = 15
    case entryInvalidExecutiveVMCSPointer = 16
    case entryNonLaunchedExecutiveVMCS = 17
    case entryExecutiveVMCSPointerNotVMXON = 18
    case vmcallNonClearVMCS = 19
    case vmcallInvalidExitControls = 20
    case vmcallIncorrectMSEGRevision = 22
    case vmxoffUnderDualMonitor = 23
    case vmcallInvalidSMMMonitorFeatures = 24
    case entryInvalidExecutionControlsInExecutiveVMCS = 25
    case entryEventsBlockedByMOVSS = 26
    case invalidOperandToINVEPTOrINVVPID = 28

    public var description: String {
        switch self {
        case .vmcallInVMXRoot: return "VMCALL executed in VMX root operation"
        case .vmclearInvalidAddress: return "VMCLEAR with invalid physical address"
        case .vmclearVMXONPointer: return "VMCLEAR with VMXON pointer"
        case .vmlaunchNonClearVMCS: return "VMLAUNCH with non-clear VMCS"
        case .vmresumeNonLaunchedVMCS: return "VMRESUME with non-launched VMCS"
        case .vmresumeAfterVMXOFF: return "VMRESUME after VMXOFF"
        case .entryInvalidControlFields: return "VM entry with invalid control field(s)"
        case .entryInvalidHostStateFields: return "VM entry with invalid host-state field(s)"
        case .vmptrldInvalidAddress: return "VMPTRLD with invalid physical address"
        case .vmptrldVMXONPointer: return "VMPTRLD with VMXON pointer"
        case .vmptrldIncorrectRevision: return "VMPTRLD with incorrect VMCS revision identifier"
        case .unsupportedVMCSComponent: return "VMREAD/VMWRITE from/to unsupported VMCS component"
        case .vmwriteReadOnlyComponent: return "VMWRITE to read-only VMCS component"
        case .vmxonInVMXRoot: return "VMXON executed in VMX root operation"
        case .entryInvalidExecutiveVMCSPointer: return "VM entry with invalid executive-VMCS pointer"
        case .entryNonLaunchedExecutiveVMCS: return "VM entry with non-launched executive VMCS"
        case .entryExecutiveVMCSPointerNotVMXON:
            return "VM entry with executive-VMCS pointer not VMXON pointer"
        case .vmcallNonClearVMCS: return "VMCALL with non-clear VMCS"
        case .vmcallInvalidExitControls: return "VMCALL with invalid VM-exit control fields"
        case .vmcallIncorrectMSEGRevision: return "VMCALL with incorrect MSEG revision identifier"
        case .vmxoffUnderDualMonitor: return "VMXOFF under dual-monitor treatment of SMIs and SMM"
        case .vmcallInvalidSMMMonitorFeatures: return "VMCALL with invalid SMM-monitor features"
        case .entryInvalidExecutionControlsInExecutiveVMCS:
            return "VM entry with invalid VM-execution control fields in executive VMCS"
        case .entryEventsBlockedByMOVSS: return "VM entry with events blocked by MOV SS"
        case .invalidOperandToINVEPTOrINVVPID: return "Invalid operand to INVEPT/INVVPID"
        }
    }
}
