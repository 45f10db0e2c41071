public import VMX

/// L0's decision for each L2 exit: the exits L1 asked to see (by its vmcs12 controls,
/// bitmaps, masks and EPT) are reflected; the rest stay in L0. Modelled on Linux KVM's
/// `nested_vmx_exit_reflected` and the SDM's conditions for each exit (25.6, 26).
public enum ExitRouting {
    /// The guest-state fields a reflected exit saves from L2 into vmcs12. The VMCS link
    /// pointer and the preemption-timer value are not guest state a VM exit saves.
    public static let savedGuestFields: [VMCSField] = VMCSState.guestStateFields.filter {
        $0 != .vmcsLinkPointer && $0 != .vmxPreemptionTimerValue
    }

    /// L0's decision for one exit.
    public enum Decision: Equatable, Sendable {
        case keep(L0Handling)
        /// Reflect it; for an EPT violation, with the qualification computed against L1's
        /// EPT (its entries' permissions) instead of L0's.
        case reflect(qualification: UInt64?)
    }

    /// What L0 does with an L2 exit.
    public static func decide(_ exit: L2Exit, vmcs12 vmcs: VMCS12, memory: any GuestMemory) -> Decision {
        if exit.reason == .eptViolation || exit.reason == .eptMisconfiguration {
            let sec = SecondaryControls(rawValue: EntryChecks.secondary(of: vmcs))
            guard sec.contains(.enableEPT) else { return .keep(.emulatedForLPAR) }
            switch EPTWalker.translate(eptp: vmcs.read(.eptPointer), address: exit.guestPhysicalAddress,
                                       access: EPTWalker.Access(qualification: exit.qualification), memory: memory) {
            case .mapped(let l1Address): return .keep(.builtEPTMapping(l1PhysicalAddress: l1Address))
            case .violation(let q):
                // Keep the hardware's bits about the linear address and NMI unblocking.
                let carried = exit.qualification & ((1 << 7) | (1 << 8) | (1 << 12))
                return .reflect(qualification: q.rawValue | carried)
            case .misconfiguration: return .reflect(qualification: nil)
            }
        }
        if let handling = l0Handling(of: exit, vmcs12: vmcs, memory: memory) { return .keep(handling) }
        return .reflect(qualification: nil)
    }

    /// How L0 handles the exit itself, or nil when L1 must see it.
    static func l0Handling(of exit: L2Exit, vmcs12 vmcs: VMCS12, memory: any GuestMemory) -> L0Handling? {
        let pin = PinBasedControls(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.pinBasedVMExecControl)))
        let proc = ProcessorControls(rawValue: UInt32(truncatingIfNeeded: vmcs.read(.cpuBasedVMExecControl)))
        let sec = SecondaryControls(rawValue: EntryChecks.secondary(of: vmcs))
        switch exit.reason {
        case .externalInterrupt:
            if exit.interruptSource == .l0 { return .l0Interrupt }
            return pin.contains(.externalInterruptExiting) ? nil : .emulatedForLPAR
        case .exceptionOrNMI:
            let info = InterruptionInfo(rawValue: exit.interruptionInfo)
            if info.kind == .nmi { return pin.contains(.nmiExiting) ? nil : .emulatedForLPAR }
            let bitmap = UInt32(truncatingIfNeeded: vmcs.read(.exceptionBitmap))
            return bitmap & (1 << UInt32(info.vector & 31)) != 0 ? nil : .emulatedForLPAR
        case .tripleFault, .taskSwitch, .cpuid, .invd, .vmcall, .vmclear, .vmlaunch, .vmptrld,
             .vmptrst, .vmread, .vmresume, .vmwrite, .vmxoff, .vmxon, .invept, .invvpid,
             .invalidGuestState, .xsetbv, .gdtrIdtrAccess, .ldtrTrAccess, .tprBelowThreshold:
            return nil
        case .interruptWindow:
            return proc.contains(.interruptWindowExiting) ? nil : .emulatedForLPAR
        case .nmiWindow:
            return proc.contains(.nmiWindowExiting) ? nil : .emulatedForLPAR
        case .hlt:
            return proc.contains(.hltExiting) ? nil : .emulatedForLPAR
        case .invlpg:
            return proc.contains(.invlpgExiting) ? nil : .emulatedForLPAR
        case .rdpmc:
            return proc.contains(.rdpmcExiting) ? nil : .emulatedForLPAR
        case .rdtsc, .rdtscp:
            return proc.contains(.rdtscExiting) ? nil : .emulatedForLPAR
        case .mwait:
            return proc.contains(.mwaitExiting) ? nil : .emulatedForLPAR
        case .monitor:
            return proc.contains(.monitorExiting) ? nil : .emulatedForLPAR
        case .pause:
            return proc.contains(.pauseExiting) || sec.contains(.pauseLoopExiting) ? nil : .emulatedForLPAR
        case .drAccess:
            return proc.contains(.movDRExiting) ? nil : .emulatedForLPAR
        case .wbinvd:
            return sec.contains(.wbinvdExiting) ? nil : .emulatedForLPAR
        case .apicAccess:
            return sec.contains(.virtualizeAPICAccesses) ? nil : .emulatedForLPAR
        case .preemptionTimer:
            return pin.contains(.preemptionTimer) ? nil : .emulatedForLPAR
        case .ioInstruction:
            return ioExitReflected(exit, vmcs, proc, memory) ? nil : .emulatedForLPAR
        case .msrRead, .msrWrite:
            return msrExitReflected(exit, vmcs, proc, memory) ? nil : .emulatedForLPAR
        case .crAccess:
            return crExitReflected(exit, vmcs, proc) ? nil : .emulatedForLPAR
        default:
            return nil
        }
    }

    static func ioExitReflected(_ exit: L2Exit, _ vmcs: VMCS12, _ proc: ProcessorControls,
                                _ memory: any GuestMemory) -> Bool {
        if proc.contains(.useIOBitmaps) {
            guard let io = IOExitQualification(rawValue: exit.qualification) else { return true }
            for offset in 0..<io.size {
                let port = Int(io.port) + offset
                if port > 0xFFFF { return true }
                let base = port < 0x8000 ? vmcs.read(.ioBitmapA) : vmcs.read(.ioBitmapB)
                let bit = port & 0x7FFF
                guard let byte = try? memory.read(base + UInt64(bit / 8), count: 1).first else { return true }
                if byte & (1 << UInt8(bit % 8)) != 0 { return true }
            }
            return false
        }
        return proc.contains(.unconditionalIOExiting)
    }

    static func msrExitReflected(_ exit: L2Exit, _ vmcs: VMCS12, _ proc: ProcessorControls,
                                 _ memory: any GuestMemory) -> Bool {
        guard proc.contains(.useMSRBitmaps) else { return true }
        var base = vmcs.read(.msrBitmap)
        if exit.reason == .msrWrite { base += 2048 }
        var index = exit.msrIndex
        if index >= 0xC000_0000 && index <= 0xC000_1FFF {
            index -= 0xC000_0000
            base += 1024
        } else if index > 0x1FFF {
            return true
        }
        guard let byte = try? memory.read(base + UInt64(index / 8), count: 1).first else { return true }
        return byte & (1 << UInt8(index % 8)) != 0
    }

    static func crExitReflected(_ exit: L2Exit, _ vmcs: VMCS12, _ proc: ProcessorControls) -> Bool {
        let q = CRAccessQualification(rawValue: exit.qualification)
        let value = exit.crSourceValue
        switch q.accessType {
        case .movToCR:
            switch q.controlRegister {
            case 0: return vmcs.read(.cr0GuestHostMask) & (value ^ vmcs.read(.cr0ReadShadow)) != 0
            case 3:
                let count = vmcs.read(.cr3TargetCount)
                let targets: [VMCSField] = [.cr3TargetValue0, .cr3TargetValue1, .cr3TargetValue2, .cr3TargetValue3]
                for (i, target) in targets.enumerated() where UInt64(i) < count && vmcs.read(target) == value {
                    return false
                }
                return proc.contains(.cr3LoadExiting)
            case 4: return vmcs.read(.cr4GuestHostMask) & (value ^ vmcs.read(.cr4ReadShadow)) != 0
            case 8: return proc.contains(.cr8LoadExiting)
            default: return true
            }
        case .movFromCR:
            if q.controlRegister == 3 { return proc.contains(.cr3StoreExiting) }
            if q.controlRegister == 8 { return proc.contains(.cr8StoreExiting) }
            return true
        case .clts:
            return vmcs.read(.cr0GuestHostMask) & 8 != 0 && vmcs.read(.cr0ReadShadow) & 8 != 0
        case .lmsw:
            let mask = vmcs.read(.cr0GuestHostMask)
            let shadow = vmcs.read(.cr0ReadShadow)
            let source = UInt64(q.lmswSourceData)
            if mask & 0xE & (source ^ shadow) != 0 { return true }
            return mask & 1 != 0 && shadow & 1 == 0 && source & 1 != 0
        }
    }
}

/// A walk of L1's 4-level EPT tables in L1 memory (SDM 29.3.2).
public enum EPTWalker {
    public struct Access: Equatable, Sendable {
        public var read: Bool
        public var write: Bool
        public var fetch: Bool

        public init(read: Bool = true, write: Bool = false, fetch: Bool = false) {
            self.read = read
            self.write = write
            self.fetch = fetch
        }

        /// The access an EPT-violation qualification describes.
        public init(qualification: UInt64) {
            let q = EPTViolationQualification(rawValue: qualification)
            self.init(read: q.read, write: q.write, fetch: q.instructionFetch)
        }
    }

    public enum Result: Equatable, Sendable {
        /// The L1-physical address `address` maps to.
        case mapped(UInt64)
        /// Not present or not permitted: L1 sees an EPT violation with this qualification.
        case violation(EPTViolationQualification)
        /// An entry is malformed: L1 sees an EPT misconfiguration.
        case misconfiguration
    }

    /// Walks the tables rooted at `eptp` for `address`.
    public static func translate(eptp: UInt64, address: UInt64, access: Access, memory: any GuestMemory) -> Result {
        let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
        var table = eptp & addressMask
        var permissions: UInt64 = 7
        for level in stride(from: 4, through: 1, by: -1) {
            let shift = UInt64(12 + 9 * (level - 1))
            let index = (address >> shift) & 0x1FF
            guard let entry = try? memory.read64(table + index * 8) else { return .misconfiguration }
            let rwx = entry & 7
            if rwx == 0 {
                return .violation(qualification(access, permissions: 0))
            }
            // Write-only and write+execute are misconfigurations (SDM 29.3.3.1).
            if rwx == 2 || rwx == 6 { return .misconfiguration }
            permissions &= rwx
            let large = entry & (1 << 7) != 0
            if level == 1 || (large && (level == 2 || level == 3)) {
                if (access.read && permissions & 1 == 0) || (access.write && permissions & 2 == 0)
                    || (access.fetch && permissions & 4 == 0) {
                    return .violation(qualification(access, permissions: permissions))
                }
                let pageMask: UInt64 = (1 << shift) - 1
                return .mapped((entry & addressMask & ~pageMask) | (address & pageMask))
            }
            table = entry & addressMask
        }
        return .misconfiguration
    }

    static func qualification(_ access: Access, permissions: UInt64) -> EPTViolationQualification {
        EPTViolationQualification(read: access.read, write: access.write, instructionFetch: access.fetch,
                                  entryReadable: permissions & 1 != 0, entryWritable: permissions & 2 != 0,
                                  entryExecutable: permissions & 4 != 0)
    }
}
