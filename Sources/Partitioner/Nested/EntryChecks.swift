public import VMX

/// The checks a VM entry makes on vmcs12 before L0 runs L2 (SDM 27.2 and 27.3), each
/// returning the first problem found or nil.
public enum EntryChecks {
    /// A failed guest-state check: the exit qualification it reports (SDM 27.8).
    public struct GuestStateFailure: Equatable, Sendable {
        public var reason: String
        public var qualification: UInt64
    }

    /// The secondary controls in force: zero unless "activate secondary controls" is set.
    public static func secondary(of vmcs: VMCS12) -> UInt32 {
        let primary = ProcessorControls(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.cpuBasedVMExecControl)))
        return primary.contains(.activateSecondaryControls)
            ? UInt32(truncatingIfNeeded: vmcs.read(.secondaryVMExecControl)) : 0
    }

    private static func aligned(_ address: UInt64, _ caps: VMXCapabilities) -> Bool {
        address & 0xFFF == 0 && address >> UInt64(caps.physicalAddressWidth) == 0
    }

    /// VM-execution, VM-exit and VM-entry control checks (SDM 27.2.1); a failure is
    /// VM-instruction error 7.
    public static func controls(_ vmcs: VMCS12, _ caps: VMXCapabilities) -> String? {
        let pin = UInt32(truncatingIfNeeded: vmcs.read(.pinBasedVMExecControl))
        let proc = UInt32(truncatingIfNeeded: vmcs.read(.cpuBasedVMExecControl))
        let sec = secondary(of: vmcs)
        let exit = UInt32(truncatingIfNeeded: vmcs.read(.vmExitControls))
        let entry = UInt32(truncatingIfNeeded: vmcs.read(.vmEntryControls))
        if !caps.pinBased.permits(pin) { return "pin-based controls \(hex(pin)) break the allowed settings (bits \(hex(caps.pinBased.violations(of: pin))))" }
        if !caps.processor.permits(proc) { return "processor-based controls \(hex(proc)) break the allowed settings (bits \(hex(caps.processor.violations(of: proc))))" }
        if !caps.secondary.permits(sec) { return "secondary controls \(hex(sec)) break the allowed settings (bits \(hex(caps.secondary.violations(of: sec))))" }
        if !caps.exit.permits(exit) { return "VM-exit controls \(hex(exit)) break the allowed settings" }
        if !caps.entry.permits(entry) { return "VM-entry controls \(hex(entry)) break the allowed settings" }
        if vmcs.read(.cr3TargetCount) > UInt64(caps.cr3TargetCount) { return "CR3-target count above \(caps.cr3TargetCount)" }
        let primary = ProcessorControls(rawValue: proc)
        let secondaryControls = SecondaryControls(rawValue: sec)
        if primary.contains(.useIOBitmaps) {
            if !aligned(vmcs.read(.ioBitmapA), caps) || !aligned(vmcs.read(.ioBitmapB), caps) {
                return "I/O bitmap addresses are not 4 KiB aligned"
            }
        }
        if primary.contains(.useMSRBitmaps), !aligned(vmcs.read(.msrBitmap), caps) {
            return "MSR bitmap address is not 4 KiB aligned"
        }
        if primary.contains(.useTPRShadow) {
            if !aligned(vmcs.read(.virtualAPICPageAddr), caps) { return "virtual-APIC page address is not 4 KiB aligned" }
        } else if !secondaryControls.isDisjoint(with: [.virtualizeX2APICMode, .apicRegisterVirtualization, .virtualInterruptDelivery]) {
            return "APIC virtualization needs the TPR shadow"
        }
        if secondaryControls.contains(.virtualizeAPICAccesses), !aligned(vmcs.read(.apicAccessAddr), caps) {
            return "APIC-access address is not 4 KiB aligned"
        }
        if secondaryControls.contains(.enableEPT) {
            let eptp = vmcs.read(.eptPointer)
            let memoryType = eptp & 7
            let walkLength = (eptp >> 3) & 7
            if memoryType != 0 && memoryType != 6 { return "EPTP memory type \(memoryType) is neither UC (0) nor WB (6)" }
            if walkLength != 3 { return "EPTP page-walk length \(walkLength + 1) is not 4" }
            if eptp & 0xF80 != 0 { return "EPTP reserved bits 11:7 are set" }
            if (eptp & ~0xFFF) >> UInt64(caps.physicalAddressWidth) != 0 { return "EPTP address beyond the physical-address width" }
        } else if secondaryControls.contains(.unrestrictedGuest) {
            return "unrestricted guest needs EPT"
        }
        if secondaryControls.contains(.enableVPID), vmcs.read(.virtualProcessorID) == 0 {
            return "VPID enabled with VPID 0"
        }
        let pinControls = PinBasedControls(rawValue: pin)
        if pinControls.contains(.virtualNMIs) && !pinControls.contains(.nmiExiting) {
            return "virtual NMIs need NMI exiting"
        }
        if primary.contains(.nmiWindowExiting) && !pinControls.contains(.virtualNMIs) {
            return "NMI-window exiting needs virtual NMIs"
        }
        // VM-entry event injection (SDM 27.2.1.3).
        let info = InterruptionInfo(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.vmEntryIntrInfoField)))
        if info.isValid {
            if info.kind == .reserved { return "event injection with the reserved type 1" }
            if info.kind == .nmi && info.vector != 2 { return "NMI injection with vector \(info.vector)" }
            if info.kind == .hardwareException && info.vector > 31 { return "hardware exception vector \(info.vector) above 31" }
            if info.kind == .otherEvent && info.vector != 0 { return "other-event injection with vector \(info.vector)" }
            let withErrorCode: Set<UInt8> = [8, 10, 11, 12, 13, 14, 17]
            if info.deliversErrorCode != (info.kind == .hardwareException && withErrorCode.contains(info.vector)) {
                return "deliver-error-code bit does not match the event"
            }
            if UInt32(truncatingIfNeeded: vmcs.read(.vmEntryIntrInfoField)) & 0x7FFF_F000 != 0 {
                return "reserved bits of the VM-entry interruption field are set"
            }
            if [.softwareInterrupt, .privilegedSoftwareException, .softwareException].contains(info.kind) {
                let length = vmcs.read(.vmEntryInstructionLen)
                if length == 0 || length > 15 { return "software event with instruction length \(length)" }
            }
        }
        if vmcs.read(.vmEntryMSRLoadCount) > 512 || vmcs.read(.vmExitMSRLoadCount) > 512
            || vmcs.read(.vmExitMSRStoreCount) > 512 {
            return "MSR-list count above 512"
        }
        return nil
    }

    private static func canonical(_ address: UInt64) -> Bool {
        let top = address >> 47
        return top == 0 || top == 0x1FFFF
    }

    /// Host-state checks (SDM 27.2.2 and 27.2.3); a failure is VM-instruction error 8.
    public static func hostState(_ vmcs: VMCS12, _ caps: VMXCapabilities) -> String? {
        let cr0 = vmcs.read(.hostCR0)
        let cr4 = vmcs.read(.hostCR4)
        if cr0 & caps.cr0Fixed0 != caps.cr0Fixed0 || cr0 & ~caps.cr0Fixed1 & 0xFFFF_FFFF != 0 {
            return "host CR0 \(hex(cr0)) breaks the fixed bits"
        }
        if cr4 & caps.cr4Fixed0 != caps.cr4Fixed0 || cr4 & ~caps.cr4Fixed1 != 0 {
            return "host CR4 \(hex(cr4)) breaks the fixed bits"
        }
        if vmcs.read(.hostCR3) >> UInt64(caps.physicalAddressWidth) != 0 { return "host CR3 beyond the physical-address width" }
        let selectors: [VMCSField] = [.hostESSelector, .hostCSSelector, .hostSSSelector, .hostDSSelector,
                                      .hostFSSelector, .hostGSSelector, .hostTRSelector]
        for field in selectors where vmcs.read(field) & 7 != 0 {
            return "\(field) has RPL or TI set"
        }
        if vmcs.read(.hostCSSelector) == 0 { return "host CS selector is 0" }
        if vmcs.read(.hostTRSelector) == 0 { return "host TR selector is 0" }
        let exitControls = ExitControls(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.vmExitControls)))
        // L1 runs in 64-bit mode, so its host must be 64-bit too.
        if !exitControls.contains(.hostAddressSpaceSize) { return "host address-space size is 0 for a 64-bit L1" }
        if cr4 & (1 << 5) == 0 { return "host CR4.PAE is 0 with a 64-bit host" }
        for field in [VMCSField.hostRIP, .hostFSBase, .hostGSBase, .hostTRBase, .hostGDTRBase,
                      .hostIDTRBase, .hostIA32SysenterEsp, .hostIA32SysenterEip]
        where !canonical(vmcs.read(field)) {
            return "\(field) is not canonical"
        }
        return nil
    }

    /// Guest-state checks (SDM 27.3.1); a failure is a VM-entry failure (exit reason 33 with
    /// bit 31), reported to L1 as a VM exit.
    public static func guestState(_ vmcs: VMCS12, _ caps: VMXCapabilities) -> GuestStateFailure? {
        let sec = SecondaryControls(rawValue: secondary(of: vmcs))
        let entry = EntryControls(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.vmEntryControls)))
        var fixed0 = caps.cr0Fixed0
        if sec.contains(.unrestrictedGuest) { fixed0 &= ~UInt64(0x8000_0001) }   // PE and PG may be 0
        let cr0 = vmcs.read(.guestCR0)
        let cr4 = vmcs.read(.guestCR4)
        if cr0 & fixed0 != fixed0 || cr0 & ~caps.cr0Fixed1 & 0xFFFF_FFFF != 0 {
            return GuestStateFailure(reason: "guest CR0 \(hex(cr0)) breaks the fixed bits", qualification: 0)
        }
        if cr4 & caps.cr4Fixed0 != caps.cr4Fixed0 || cr4 & ~caps.cr4Fixed1 != 0 {
            return GuestStateFailure(reason: "guest CR4 \(hex(cr4)) breaks the fixed bits", qualification: 0)
        }
        if entry.contains(.ia32eModeGuest) && (cr0 & (1 << 31) == 0 || cr4 & (1 << 5) == 0) {
            return GuestStateFailure(reason: "IA-32e mode guest without paging and PAE", qualification: 0)
        }
        let rflags = vmcs.read(.guestRFLAGS)
        if rflags & 2 == 0 || rflags & 0xFFFF_FFFF_FFC0_8028 != 0 {
            return GuestStateFailure(reason: "guest RFLAGS \(hex(rflags)) has reserved bits wrong", qualification: 0)
        }
        let activity = vmcs.read(.guestActivityState)
        if activity > 3 || (activity > 0 && caps.activityStates & (1 << UInt32(activity - 1)) == 0) {
            return GuestStateFailure(reason: "guest activity state \(activity) is not supported", qualification: 0)
        }
        let interruptibility = vmcs.read(.guestInterruptibilityInfo)
        if interruptibility & ~UInt64(0x1F) != 0 || interruptibility & 3 == 3 {
            return GuestStateFailure(reason: "guest interruptibility \(hex(interruptibility)) is invalid", qualification: 0)
        }
        if interruptibility & 1 != 0 && rflags & (1 << 9) == 0 {
            return GuestStateFailure(reason: "blocking by STI with RFLAGS.IF clear", qualification: 0)
        }
        // L0 gives L1 no VMCS shadowing, so the link pointer must be unused (all ones).
        if vmcs.read(.vmcsLinkPointer) != ~0 {
            return GuestStateFailure(reason: "VMCS link pointer is not all ones", qualification: 4)
        }
        return nil
    }
}
