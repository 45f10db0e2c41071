/// A VMCS component, identified by its 32-bit encoding (Intel SDM Vol. 3C, 25.11.2 and Appendix B).
///
/// The encoding is a value, not an index: its bits say the component's width, its type
/// (control, VM-exit information, guest state, host state), and whether a 64-bit field is
/// accessed in full or by its high 32 bits.
public struct VMCSField: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    public static func < (lhs: VMCSField, rhs: VMCSField) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Bit 0: 0 for full access, 1 for the high 32 bits of a 64-bit field.
    public var accessType: FieldAccessType { rawValue & 1 == 0 ? .full : .high }
    /// Bits 9:1: the index within the width/type group.
    public var index: UInt32 { (rawValue >> 1) & 0x1FF }
    /// Bits 11:10: what the component belongs to.
    public var type: FieldType { FieldType(rawValue: UInt8((rawValue >> 10) & 3))! }
    /// Bits 14:13: the component's width.
    public var width: FieldWidth { FieldWidth(rawValue: UInt8((rawValue >> 13) & 3))! }
    /// True when bit 12 or any of bits 31:15 is set; no component has such an encoding.
    public var hasReservedBitsSet: Bool { rawValue & 0xFFFF_9000 != 0 }
    /// The encoding of the full 64-bit field a high-access encoding refers to.
    public var fullField: VMCSField { accessType == .high ? VMCSField(rawValue & ~1) : self }
    /// The value's size in bits as L1 sees it through VMREAD/VMWRITE in 64-bit mode.
    public var bitWidth: Int {
        if accessType == .high { return 32 }
        switch width {
        case .bits16: return 16
        case .bits32: return 32
        case .bits64, .natural: return 64
        }
    }
    /// The mask that truncates a value written to this component.
    public var valueMask: UInt64 { bitWidth == 64 ? ~0 : (UInt64(1) << UInt64(bitWidth)) - 1 }
    /// VM-exit information fields are read-only unless IA32_VMX_MISC bit 29 is reported.
    public var isReadOnly: Bool { type == .vmExitInformation }
    /// The index of this encoding in the VMREAD/VMWRITE bitmaps (bits 14:0), or nil when a higher
    /// bit is set (such an access always causes a VM exit).
    public var bitmapIndex: Int? { rawValue > 0x7FFF ? nil : Int(rawValue) }

    /// The Linux name (`GUEST_RIP`) when the field is in the catalog, else the hex encoding.
    public var linuxName: String? { VMCSField.namesByField[self] }
    public var description: String { linuxName ?? hex(rawValue, digits: 8) }
    /// True when the field is one of Linux's `enum vmcs_field`.
    public var isKnown: Bool { VMCSField.namesByField[self] != nil }

    /// Finds a field by its Linux name (`GUEST_RIP`) or by a hex encoding (`0x681e`).
    public static func named(_ text: String) -> VMCSField? {
        if let field = fieldsByName[text.uppercased()] { return field }
        let hex = text.lowercased().hasPrefix("0x") ? String(text.dropFirst(2)) : nil
        if let hex, let value = UInt32(hex, radix: 16) { return VMCSField(value) }
        return nil
    }

    static let namesByField: [VMCSField: String] = Dictionary(
        uniqueKeysWithValues: catalog.map { ($0.field, $0.name) })
    static let fieldsByName: [String: VMCSField] = Dictionary(
        uniqueKeysWithValues: catalog.map { ($0.name, $0.field) })
    /// Every catalogued encoding, sorted.
    public static let all: [VMCSField] = catalog.map(\.field).sorted()
}

/// Whether a 64-bit field is accessed in full or by its high half.
public enum FieldAccessType: Sendable, Equatable { case full, high }

/// The component's width, bits 14:13 of the encoding.
public enum FieldWidth: UInt8, Sendable, Equatable, CaseIterable {
    case bits16 = 0, bits64 = 1, bits32 = 2, natural = 3
}

/// The component's type, bits 11:10 of the encoding.
public enum FieldType: UInt8, Sendable, Equatable, CaseIterable {
    case control = 0, vmExitInformation = 1, guestState = 2, hostState = 3
}

extension VMCSField {
    // Generated from the field list of Linux's arch/x86/include/asm/vmx.h (enum vmcs_field).
    public static let virtualProcessorID = VMCSField(0x0000)
    public static let postedIntrNV = VMCSField(0x0002)
    public static let lastPIDPointerIndex = VMCSField(0x0008)
    public static let guestESSelector = VMCSField(0x0800)
    public static let guestCSSelector = VMCSField(0x0802)
    public static let guestSSSelector = VMCSField(0x0804)
    public static let guestDSSelector = VMCSField(0x0806)
    public static let guestFSSelector = VMCSField(0x0808)
    public static let guestGSSelector = VMCSField(0x080A)
    public static let guestLDTRSelector = VMCSField(0x080C)
    public static let guestTRSelector = VMCSField(0x080E)
    public static let guestIntrStatus = VMCSField(0x0810)
    public static let guestPMLIndex = VMCSField(0x0812)
    public static let hostESSelector = VMCSField(0x0C00)
    public static let hostCSSelector = VMCSField(0x0C02)
    public static let hostSSSelector = VMCSField(0x0C04)
    public static let hostDSSelector = VMCSField(0x0C06)
    public static let hostFSSelector = VMCSField(0x0C08)
    public static let hostGSSelector = VMCSField(0x0C0A)
    public static let hostTRSelector = VMCSField(0x0C0C)
    public static let ioBitmapA = VMCSField(0x2000)
    public static let ioBitmapAHigh = VMCSField(0x2001)
    public static let ioBitmapB = VMCSField(0x2002)
    public static let ioBitmapBHigh = VMCSField(0x2003)
    public static let msrBitmap = VMCSField(0x2004)
    public static let msrBitmapHigh = VMCSField(0x2005)
    public static let vmExitMSRStoreAddr = VMCSField(0x2006)
    public static let vmExitMSRStoreAddrHigh = VMCSField(0x2007)
    public static let vmExitMSRLoadAddr = VMCSField(0x2008)
    public static let vmExitMSRLoadAddrHigh = VMCSField(0x2009)
    public static let vmEntryMSRLoadAddr = VMCSField(0x200A)
    public static let vmEntryMSRLoadAddrHigh = VMCSField(0x200B)
    public static let pmlAddress = VMCSField(0x200E)
    public static let pmlAddressHigh = VMCSField(0x200F)
    public static let tscOffset = VMCSField(0x2010)
    public static let tscOffsetHigh = VMCSField(0x2011)
    public static let virtualAPICPageAddr = VMCSField(0x2012)
    public static let virtualAPICPageAddrHigh = VMCSField(0x2013)
    public static let apicAccessAddr = VMCSField(0x2014)
    public static let apicAccessAddrHigh = VMCSField(0x2015)
    public static let postedIntrDescAddr = VMCSField(0x2016)
    public static let postedIntrDescAddrHigh = VMCSField(0x2017)
    public static let vmFunctionControl = VMCSField(0x2018)
    public static let vmFunctionControlHigh = VMCSField(0x2019)
    public static let eptPointer = VMCSField(0x201A)
    public static let eptPointerHigh = VMCSField(0x201B)
    public static let eoiExitBitmap0 = VMCSField(0x201C)
    public static let eoiExitBitmap0High = VMCSField(0x201D)
    public static let eoiExitBitmap1 = VMCSField(0x201E)
    public static let eoiExitBitmap1High = VMCSField(0x201F)
    public static let eoiExitBitmap2 = VMCSField(0x2020)
    public static let eoiExitBitmap2High = VMCSField(0x2021)
    public static let eoiExitBitmap3 = VMCSField(0x2022)
    public static let eoiExitBitmap3High = VMCSField(0x2023)
    public static let eptpListAddress = VMCSField(0x2024)
    public static let eptpListAddressHigh = VMCSField(0x2025)
    public static let vmreadBitmap = VMCSField(0x2026)
    public static let vmreadBitmapHigh = VMCSField(0x2027)
    public static let vmwriteBitmap = VMCSField(0x2028)
    public static let vmwriteBitmapHigh = VMCSField(0x2029)
    public static let veInformationAddress = VMCSField(0x202A)
    public static let veInformationAddressHigh = VMCSField(0x202B)
    public static let xssExitBitmap = VMCSField(0x202C)
    public static let xssExitBitmapHigh = VMCSField(0x202D)
    public static let enclsExitingBitmap = VMCSField(0x202E)
    public static let enclsExitingBitmapHigh = VMCSField(0x202F)
    public static let tscMultiplier = VMCSField(0x2032)
    public static let tscMultiplierHigh = VMCSField(0x2033)
    public static let tertiaryVMExecControl = VMCSField(0x2034)
    public static let tertiaryVMExecControlHigh = VMCSField(0x2035)
    public static let sharedEPTPointer = VMCSField(0x203C)
    public static let pidPointerTable = VMCSField(0x2042)
    public static let pidPointerTableHigh = VMCSField(0x2043)
    public static let guestPhysicalAddress = VMCSField(0x2400)
    public static let guestPhysicalAddressHigh = VMCSField(0x2401)
    public static let vmcsLinkPointer = VMCSField(0x2800)
    public static let vmcsLinkPointerHigh = VMCSField(0x2801)
    public static let guestIA32Debugctl = VMCSField(0x2802)
    public static let guestIA32DebugctlHigh = VMCSField(0x2803)
    public static let guestIA32PAT = VMCSField(0x2804)
    public static let guestIA32PATHigh = VMCSField(0x2805)
    public static let guestIA32EFER = VMCSField(0x2806)
    public static let guestIA32EFERHigh = VMCSField(0x2807)
    public static let guestIA32PerfGlobalCTRL = VMCSField(0x2808)
    public static let guestIA32PerfGlobalCTRLHigh = VMCSField(0x2809)
    public static let guestPDPTR0 = VMCSField(0x280A)
    public static let guestPDPTR0High = VMCSField(0x280B)
    public static let guestPDPTR1 = VMCSField(0x280C)
    public static let guestPDPTR1High = VMCSField(0x280D)
    public static let guestPDPTR2 = VMCSField(0x280E)
    public static let guestPDPTR2High = VMCSField(0x280F)
    public static let guestPDPTR3 = VMCSField(0x2810)
    public static let guestPDPTR3High = VMCSField(0x2811)
    public static let guestBNDCFGS = VMCSField(0x2812)
    public static let guestBNDCFGSHigh = VMCSField(0x2813)
    public static let guestIA32RTITCtl = VMCSField(0x2814)
    public static let guestIA32RTITCtlHigh = VMCSField(0x2815)
    public static let hostIA32PAT = VMCSField(0x2C00)
    public static let hostIA32PATHigh = VMCSField(0x2C01)
    public static let hostIA32EFER = VMCSField(0x2C02)
    public static let hostIA32EFERHigh = VMCSField(0x2C03)
    public static let hostIA32PerfGlobalCTRL = VMCSField(0x2C04)
    public static let hostIA32PerfGlobalCTRLHigh = VMCSField(0x2C05)
    public static let pinBasedVMExecControl = VMCSField(0x4000)
    public static let cpuBasedVMExecControl = VMCSField(0x4002)
    public static let exceptionBitmap = VMCSField(0x4004)
    public static let pageFaultErrorCodeMask = VMCSField(0x4006)
    public static let pageFaultErrorCodeMatch = VMCSField(0x4008)
    public static let cr3TargetCount = VMCSField(0x400A)
    public static let vmExitControls = VMCSField(0x400C)
    public static let vmExitMSRStoreCount = VMCSField(0x400E)
    public static let vmExitMSRLoadCount = VMCSField(0x4010)
    public static let vmEntryControls = VMCSField(0x4012)
    public static let vmEntryMSRLoadCount = VMCSField(0x4014)
    public static let vmEntryIntrInfoField = VMCSField(0x4016)
    public static let vmEntryExceptionErrorCode = VMCSField(0x4018)
    public static let vmEntryInstructionLen = VMCSField(0x401A)
    public static let tprThreshold = VMCSField(0x401C)
    public static let secondaryVMExecControl = VMCSField(0x401E)
    public static let pleGap = VMCSField(0x4020)
    public static let pleWindow = VMCSField(0x4022)
    public static let notifyWindow = VMCSField(0x4024)
    public static let vmInstructionError = VMCSField(0x4400)
    public static let vmExitReason = VMCSField(0x4402)
    public static let vmExitIntrInfo = VMCSField(0x4404)
    public static let vmExitIntrErrorCode = VMCSField(0x4406)
    public static let idtVectoringInfoField = VMCSField(0x4408)
    public static let idtVectoringErrorCode = VMCSField(0x440A)
    public static let vmExitInstructionLen = VMCSField(0x440C)
    public static let vmxInstructionInfo = VMCSField(0x440E)
    public static let guestESLimit = VMCSField(0x4800)
    public static let guestCSLimit = VMCSField(0x4802)
    public static let guestSSLimit = VMCSField(0x4804)
    public static let guestDSLimit = VMCSField(0x4806)
    public static let guestFSLimit = VMCSField(0x4808)
    public static let guestGSLimit = VMCSField(0x480A)
    public static let guestLDTRLimit = VMCSField(0x480C)
    public static let guestTRLimit = VMCSField(0x480E)
    public static let guestGDTRLimit = VMCSField(0x4810)
    public static let guestIDTRLimit = VMCSField(0x4812)
    public static let guestESARBytes = VMCSField(0x4814)
    public static let guestCSARBytes = VMCSField(0x4816)
    public static let guestSSARBytes = VMCSField(0x4818)
    public static let guestDSARBytes = VMCSField(0x481A)
    public static let guestFSARBytes = VMCSField(0x481C)
    public static let guestGSARBytes = VMCSField(0x481E)
    public static let guestLDTRARBytes = VMCSField(0x4820)
    public static let guestTRARBytes = VMCSField(0x4822)
    public static let guestInterruptibilityInfo = VMCSField(0x4824)
    public static let guestActivityState = VMCSField(0x4826)
    public static let guestSysenterCS = VMCSField(0x482A)
    public static let vmxPreemptionTimerValue = VMCSField(0x482E)
    public static let hostIA32SysenterCS = VMCSField(0x4C00)
    public static let cr0GuestHostMask = VMCSField(0x6000)
    public static let cr4GuestHostMask = VMCSField(0x6002)
    public static let cr0ReadShadow = VMCSField(0x6004)
    public static let cr4ReadShadow = VMCSField(0x6006)
    public static let cr3TargetValue0 = VMCSField(0x6008)
    public static let cr3TargetValue1 = VMCSField(0x600A)
    public static let cr3TargetValue2 = VMCSField(0x600C)
    public static let cr3TargetValue3 = VMCSField(0x600E)
    public static let exitQualification = VMCSField(0x6400)
    public static let guestLinearAddress = VMCSField(0x640A)
    public static let guestCR0 = VMCSField(0x6800)
    public static let guestCR3 = VMCSField(0x6802)
    public static let guestCR4 = VMCSField(0x6804)
    public static let guestESBase = VMCSField(0x6806)
    public static let guestCSBase = VMCSField(0x6808)
    public static let guestSSBase = VMCSField(0x680A)
    public static let guestDSBase = VMCSField(0x680C)
    public static let guestFSBase = VMCSField(0x680E)
    public static let guestGSBase = VMCSField(0x6810)
    public static let guestLDTRBase = VMCSField(0x6812)
    public static let guestTRBase = VMCSField(0x6814)
    public static let guestGDTRBase = VMCSField(0x6816)
    public static let guestIDTRBase = VMCSField(0x6818)
    public static let guestDR7 = VMCSField(0x681A)
    public static let guestRSP = VMCSField(0x681C)
    public static let guestRIP = VMCSField(0x681E)
    public static let guestRFLAGS = VMCSField(0x6820)
    public static let guestPendingDBGExceptions = VMCSField(0x6822)
    public static let guestSysenterEsp = VMCSField(0x6824)
    public static let guestSysenterEip = VMCSField(0x6826)
    public static let hostCR0 = VMCSField(0x6C00)
    public static let hostCR3 = VMCSField(0x6C02)
    public static let hostCR4 = VMCSField(0x6C04)
    public static let hostFSBase = VMCSField(0x6C06)
    public static let hostGSBase = VMCSField(0x6C08)
    public static let hostTRBase = VMCSField(0x6C0A)
    public static let hostGDTRBase = VMCSField(0x6C0C)
    public static let hostIDTRBase = VMCSField(0x6C0E)
    public static let hostIA32SysenterEsp = VMCSField(0x6C10)
    public static let hostIA32SysenterEip = VMCSField(0x6C12)
    public static let hostRSP = VMCSField(0x6C14)
    public static let hostRIP = VMCSField(0x6C16)

    /// Every field of Linux's `enum vmcs_field`, in encoding order, with its Linux name.
    public static let catalog: [(field: VMCSField, name: String)] = [
        (.virtualProcessorID, "VIRTUAL_PROCESSOR_ID"),
        (.postedIntrNV, "POSTED_INTR_NV"),
        (.lastPIDPointerIndex, "LAST_PID_POINTER_INDEX"),
        (.guestESSelector, "GUEST_ES_SELECTOR"),
        (.guestCSSelector, "GUEST_CS_SELECTOR"),
        (.guestSSSelector, "GUEST_SS_SELECTOR"),
        (.guestDSSelector, "GUEST_DS_SELECTOR"),
        (.guestFSSelector, "GUEST_FS_SELECTOR"),
        (.guestGSSelector, "GUEST_GS_SELECTOR"),
        (.guestLDTRSelector, "GUEST_LDTR_SELECTOR"),
        (.guestTRSelector, "GUEST_TR_SELECTOR"),
        (.guestIntrStatus, "GUEST_INTR_STATUS"),
        (.guestPMLIndex, "GUEST_PML_INDEX"),
        (.hostESSelector, "HOST_ES_SELECTOR"),
        (.hostCSSelector, "HOST_CS_SELECTOR"),
        (.hostSSSelector, "HOST_SS_SELECTOR"),
        (.hostDSSelector, "HOST_DS_SELECTOR"),
        (.hostFSSelector, "HOST_FS_SELECTOR"),
        (.hostGSSelector, "HOST_GS_SELECTOR"),
        (.hostTRSelector, "HOST_TR_SELECTOR"),
        (.ioBitmapA, "IO_BITMAP_A"),
        (.ioBitmapAHigh, "IO_BITMAP_A_HIGH"),
        (.ioBitmapB, "IO_BITMAP_B"),
        (.ioBitmapBHigh, "IO_BITMAP_B_HIGH"),
        (.msrBitmap, "MSR_BITMAP"),
        (.msrBitmapHigh, "MSR_BITMAP_HIGH"),
        (.vmExitMSRStoreAddr, "VM_EXIT_MSR_STORE_ADDR"),
        (.vmExitMSRStoreAddrHigh, "VM_EXIT_MSR_STORE_ADDR_HIGH"),
        (.vmExitMSRLoadAddr, "VM_EXIT_MSR_LOAD_ADDR"),
        (.vmExitMSRLoadAddrHigh, "VM_EXIT_MSR_LOAD_ADDR_HIGH"),
        (.vmEntryMSRLoadAddr, "VM_ENTRY_MSR_LOAD_ADDR"),
        (.vmEntryMSRLoadAddrHigh, "VM_ENTRY_MSR_LOAD_ADDR_HIGH"),
        (.pmlAddress, "PML_ADDRESS"),
        (.pmlAddressHigh, "PML_ADDRESS_HIGH"),
        (.tscOffset, "TSC_OFFSET"),
        (.tscOffsetHigh, "TSC_OFFSET_HIGH"),
        (.virtualAPICPageAddr, "VIRTUAL_APIC_PAGE_ADDR"),
        (.virtualAPICPageAddrHigh, "VIRTUAL_APIC_PAGE_ADDR_HIGH"),
        (.apicAccessAddr, "APIC_ACCESS_ADDR"),
        (.apicAccessAddrHigh, "APIC_ACCESS_ADDR_HIGH"),
        (.postedIntrDescAddr, "POSTED_INTR_DESC_ADDR"),
        (.postedIntrDescAddrHigh, "POSTED_INTR_DESC_ADDR_HIGH"),
        (.vmFunctionControl, "VM_FUNCTION_CONTROL"),
        (.vmFunctionControlHigh, "VM_FUNCTION_CONTROL_HIGH"),
        (.eptPointer, "EPT_POINTER"),
        (.eptPointerHigh, "EPT_POINTER_HIGH"),
        (.eoiExitBitmap0, "EOI_EXIT_BITMAP0"),
        (.eoiExitBitmap0High, "EOI_EXIT_BITMAP0_HIGH"),
        (.eoiExitBitmap1, "EOI_EXIT_BITMAP1"),
        (.eoiExitBitmap1High, "EOI_EXIT_BITMAP1_HIGH"),
        (.eoiExitBitmap2, "EOI_EXIT_BITMAP2"),
        (.eoiExitBitmap2High, "EOI_EXIT_BITMAP2_HIGH"),
        (.eoiExitBitmap3, "EOI_EXIT_BITMAP3"),
        (.eoiExitBitmap3High, "EOI_EXIT_BITMAP3_HIGH"),
        (.eptpListAddress, "EPTP_LIST_ADDRESS"),
        (.eptpListAddressHigh, "EPTP_LIST_ADDRESS_HIGH"),
        (.vmreadBitmap, "VMREAD_BITMAP"),
        (.vmreadBitmapHigh, "VMREAD_BITMAP_HIGH"),
        (.vmwriteBitmap, "VMWRITE_BITMAP"),
        (.vmwriteBitmapHigh, "VMWRITE_BITMAP_HIGH"),
        (.veInformationAddress, "VE_INFORMATION_ADDRESS"),
        (.veInformationAddressHigh, "VE_INFORMATION_ADDRESS_HIGH"),
        (.xssExitBitmap, "XSS_EXIT_BITMAP"),
        (.xssExitBitmapHigh, "XSS_EXIT_BITMAP_HIGH"),
        (.enclsExitingBitmap, "ENCLS_EXITING_BITMAP"),
        (.enclsExitingBitmapHigh, "ENCLS_EXITING_BITMAP_HIGH"),
        (.tscMultiplier, "TSC_MULTIPLIER"),
        (.tscMultiplierHigh, "TSC_MULTIPLIER_HIGH"),
        (.tertiaryVMExecControl, "TERTIARY_VM_EXEC_CONTROL"),
        (.tertiaryVMExecControlHigh, "TERTIARY_VM_EXEC_CONTROL_HIGH"),
        (.sharedEPTPointer, "SHARED_EPT_POINTER"),
        (.pidPointerTable, "PID_POINTER_TABLE"),
        (.pidPointerTableHigh, "PID_POINTER_TABLE_HIGH"),
        (.guestPhysicalAddress, "GUEST_PHYSICAL_ADDRESS"),
        (.guestPhysicalAddressHigh, "GUEST_PHYSICAL_ADDRESS_HIGH"),
        (.vmcsLinkPointer, "VMCS_LINK_POINTER"),
        (.vmcsLinkPointerHigh, "VMCS_LINK_POINTER_HIGH"),
        (.guestIA32Debugctl, "GUEST_IA32_DEBUGCTL"),
        (.guestIA32DebugctlHigh, "GUEST_IA32_DEBUGCTL_HIGH"),
        (.guestIA32PAT, "GUEST_IA32_PAT"),
        (.guestIA32PATHigh, "GUEST_IA32_PAT_HIGH"),
        (.guestIA32EFER, "GUEST_IA32_EFER"),
        (.guestIA32EFERHigh, "GUEST_IA32_EFER_HIGH"),
        (.guestIA32PerfGlobalCTRL, "GUEST_IA32_PERF_GLOBAL_CTRL"),
        (.guestIA32PerfGlobalCTRLHigh, "GUEST_IA32_PERF_GLOBAL_CTRL_HIGH"),
        (.guestPDPTR0, "GUEST_PDPTR0"),
        (.guestPDPTR0High, "GUEST_PDPTR0_HIGH"),
        (.guestPDPTR1, "GUEST_PDPTR1"),
        (.guestPDPTR1High, "GUEST_PDPTR1_HIGH"),
        (.guestPDPTR2, "GUEST_PDPTR2"),
        (.guestPDPTR2High, "GUEST_PDPTR2_HIGH"),
        (.guestPDPTR3, "GUEST_PDPTR3"),
        (.guestPDPTR3High, "GUEST_PDPTR3_HIGH"),
        (.guestBNDCFGS, "GUEST_BNDCFGS"),
        (.guestBNDCFGSHigh, "GUEST_BNDCFGS_HIGH"),
        (.guestIA32RTITCtl, "GUEST_IA32_RTIT_CTL"),
        (.guestIA32RTITCtlHigh, "GUEST_IA32_RTIT_CTL_HIGH"),
        (.hostIA32PAT, "HOST_IA32_PAT"),
        (.hostIA32PATHigh, "HOST_IA32_PAT_HIGH"),
        (.hostIA32EFER, "HOST_IA32_EFER"),
        (.hostIA32EFERHigh, "HOST_IA32_EFER_HIGH"),
        (.hostIA32PerfGlobalCTRL, "HOST_IA32_PERF_GLOBAL_CTRL"),
        (.hostIA32PerfGlobalCTRLHigh, "HOST_IA32_PERF_GLOBAL_CTRL_HIGH"),
        (.pinBasedVMExecControl, "PIN_BASED_VM_EXEC_CONTROL"),
        (.cpuBasedVMExecControl, "CPU_BASED_VM_EXEC_CONTROL"),
        (.exceptionBitmap, "EXCEPTION_BITMAP"),
        (.pageFaultErrorCodeMask, "PAGE_FAULT_ERROR_CODE_MASK"),
        (.pageFaultErrorCodeMatch, "PAGE_FAULT_ERROR_CODE_MATCH"),
        (.cr3TargetCount, "CR3_TARGET_COUNT"),
        (.vmExitControls, "VM_EXIT_CONTROLS"),
        (.vmExitMSRStoreCount, "VM_EXIT_MSR_STORE_COUNT"),
        (.vmExitMSRLoadCount, "VM_EXIT_MSR_LOAD_COUNT"),
        (.vmEntryControls, "VM_ENTRY_CONTROLS"),
        (.vmEntryMSRLoadCount, "VM_ENTRY_MSR_LOAD_COUNT"),
        (.vmEntryIntrInfoField, "VM_ENTRY_INTR_INFO_FIELD"),
        (.vmEntryExceptionErrorCode, "VM_ENTRY_EXCEPTION_ERROR_CODE"),
        (.vmEntryInstructionLen, "VM_ENTRY_INSTRUCTION_LEN"),
        (.tprThreshold, "TPR_THRESHOLD"),
        (.secondaryVMExecControl, "SECONDARY_VM_EXEC_CONTROL"),
        (.pleGap, "PLE_GAP"),
        (.pleWindow, "PLE_WINDOW"),
        (.notifyWindow, "NOTIFY_WINDOW"),
        (.vmInstructionError, "VM_INSTRUCTION_ERROR"),
        (.vmExitReason, "VM_EXIT_REASON"),
        (.vmExitIntrInfo, "VM_EXIT_INTR_INFO"),
        (.vmExitIntrErrorCode, "VM_EXIT_INTR_ERROR_CODE"),
        (.idtVectoringInfoField, "IDT_VECTORING_INFO_FIELD"),
        (.idtVectoringErrorCode, "IDT_VECTORING_ERROR_CODE"),
        (.vmExitInstructionLen, "VM_EXIT_INSTRUCTION_LEN"),
        (.vmxInstructionInfo, "VMX_INSTRUCTION_INFO"),
        (.guestESLimit, "GUEST_ES_LIMIT"),
        (.guestCSLimit, "GUEST_CS_LIMIT"),
        (.guestSSLimit, "GUEST_SS_LIMIT"),
        (.guestDSLimit, "GUEST_DS_LIMIT"),
        (.guestFSLimit, "GUEST_FS_LIMIT"),
        (.guestGSLimit, "GUEST_GS_LIMIT"),
        (.guestLDTRLimit, "GUEST_LDTR_LIMIT"),
        (.guestTRLimit, "GUEST_TR_LIMIT"),
        (.guestGDTRLimit, "GUEST_GDTR_LIMIT"),
        (.guestIDTRLimit, "GUEST_IDTR_LIMIT"),
        (.guestESARBytes, "GUEST_ES_AR_BYTES"),
        (.guestCSARBytes, "GUEST_CS_AR_BYTES"),
        (.guestSSARBytes, "GUEST_SS_AR_BYTES"),
        (.guestDSARBytes, "GUEST_DS_AR_BYTES"),
        (.guestFSARBytes, "GUEST_FS_AR_BYTES"),
        (.guestGSARBytes, "GUEST_GS_AR_BYTES"),
        (.guestLDTRARBytes, "GUEST_LDTR_AR_BYTES"),
        (.guestTRARBytes, "GUEST_TR_AR_BYTES"),
        (.guestInterruptibilityInfo, "GUEST_INTERRUPTIBILITY_INFO"),
        (.guestActivityState, "GUEST_ACTIVITY_STATE"),
        (.guestSysenterCS, "GUEST_SYSENTER_CS"),
        (.vmxPreemptionTimerValue, "VMX_PREEMPTION_TIMER_VALUE"),
        (.hostIA32SysenterCS, "HOST_IA32_SYSENTER_CS"),
        (.cr0GuestHostMask, "CR0_GUEST_HOST_MASK"),
        (.cr4GuestHostMask, "CR4_GUEST_HOST_MASK"),
        (.cr0ReadShadow, "CR0_READ_SHADOW"),
        (.cr4ReadShadow, "CR4_READ_SHADOW"),
        (.cr3TargetValue0, "CR3_TARGET_VALUE0"),
        (.cr3TargetValue1, "CR3_TARGET_VALUE1"),
        (.cr3TargetValue2, "CR3_TARGET_VALUE2"),
        (.cr3TargetValue3, "CR3_TARGET_VALUE3"),
        (.exitQualification, "EXIT_QUALIFICATION"),
        (.guestLinearAddress, "GUEST_LINEAR_ADDRESS"),
        (.guestCR0, "GUEST_CR0"),
        (.guestCR3, "GUEST_CR3"),
        (.guestCR4, "GUEST_CR4"),
        (.guestESBase, "GUEST_ES_BASE"),
        (.guestCSBase, "GUEST_CS_BASE"),
        (.guestSSBase, "GUEST_SS_BASE"),
        (.guestDSBase, "GUEST_DS_BASE"),
        (.guestFSBase, "GUEST_FS_BASE"),
        (.guestGSBase, "GUEST_GS_BASE"),
        (.guestLDTRBase, "GUEST_LDTR_BASE"),
        (.guestTRBase, "GUEST_TR_BASE"),
        (.guestGDTRBase, "GUEST_GDTR_BASE"),
        (.guestIDTRBase, "GUEST_IDTR_BASE"),
        (.guestDR7, "GUEST_DR7"),
        (.guestRSP, "GUEST_RSP"),
        (.guestRIP, "GUEST_RIP"),
        (.guestRFLAGS, "GUEST_RFLAGS"),
        (.guestPendingDBGExceptions, "GUEST_PENDING_DBG_EXCEPTIONS"),
        (.guestSysenterEsp, "GUEST_SYSENTER_ESP"),
        (.guestSysenterEip, "GUEST_SYSENTER_EIP"),
        (.hostCR0, "HOST_CR0"),
        (.hostCR3, "HOST_CR3"),
        (.hostCR4, "HOST_CR4"),
        (.hostFSBase, "HOST_FS_BASE"),
        (.hostGSBase, "HOST_GS_BASE"),
        (.hostTRBase, "HOST_TR_BASE"),
        (.hostGDTRBase, "HOST_GDTR_BASE"),
        (.hostIDTRBase, "HOST_IDTR_BASE"),
        (.hostIA32SysenterEsp, "HOST_IA32_SYSENTER_ESP"),
        (.hostIA32SysenterEip, "HOST_IA32_SYSENTER_EIP"),
        (.hostRSP, "HOST_RSP"),
        (.hostRIP, "HOST_RIP"),
    ]
}
