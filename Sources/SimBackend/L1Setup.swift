import VMX
import Partitioner

/// Where the simulated guest hypervisor keeps its VMX structures in the LPAR's memory.
struct L1MemoryLayout {
    static let apicBase: UInt64 = 0xFEE0_0000
    let vmxonRegion: UInt64
    let vmcsRegion: UInt64
    let ioBitmapA: UInt64
    let ioBitmapB: UInt64
    let msrBitmap: UInt64
    let eptPML4: UInt64
    let virtualAPICPage: UInt64
    let apicAccessPage: UInt64

    /// Pages for vCPU `index` starting at 1 MiB (one 64 KiB block per vCPU).
    init(vcpu index: Int) {
        let base: UInt64 = 0x10_0000 + UInt64(index) * 0x1_0000
        vmxonRegion = base
        vmcsRegion = base + 0x1000
        ioBitmapA = base + 0x2000
        ioBitmapB = base + 0x3000
        msrBitmap = base + 0x4000
        eptPML4 = base + 0x5000
        virtualAPICPage = base + 0x6000
        apicAccessPage = base + 0x7000
    }

    /// What L1 writes with ordinary stores before VMXON: region headers and bitmaps.
    func prepare(memory: any GuestMemory, revision: UInt32) throws(GuestMemoryError) {
        let header = VMCSRegionHeader(revisionIdentifier: revision).firstDword
        try memory.write32(vmxonRegion, header)
        try memory.write32(vmcsRegion, header)
        // KVM intercepts every port but 0x80 (vmx_init: memset 0xff, clear_bit(0x80)).
        var bitmapA = [UInt8](repeating: 0xFF, count: 4096)
        bitmapA[0x80 / 8] &= ~UInt8(1 << (0x80 % 8))
        try memory.write(ioBitmapA, bitmapA)
        try memory.write(ioBitmapB, [UInt8](repeating: 0xFF, count: 4096))
        try memory.write(msrBitmap, [UInt8](repeating: 0xFF, count: 4096))
    }
}

/// L1's setup of one L2 vCPU, as RHEL 6.4 KVM does it: VMXON (hardware_enable), VMCLEAR and
/// VMPTRLD of the vCPU's VMCS (vmx_vcpu_load), the VMWRITEs of vmx_vcpu_setup and
/// vmx_vcpu_reset for a 64-bit guest with EPT, VPID, TPR shadow and APIC-access
/// virtualization, then VMLAUNCH.
enum L1Setup {
    static func expectSuccess(_ what: String) -> (VMXOutcome) throws(SimError) -> [L1Op] {
        { outcome throws(SimError) in
            guard outcome == .succeeded else { throw .model("L1 setup: \(what) failed with \(outcome)") }
            return []
        }
    }

    static func fields(layout: L1MemoryLayout, vcpu: Int) -> [(VMCSField, UInt64)] {
        let pin: PinBasedControls = [.defaultOnes, .externalInterruptExiting, .nmiExiting, .virtualNMIs]
        let proc: ProcessorControls = [
            .hltExiting, .useTSCOffsetting, .useIOBitmaps, .useMSRBitmaps, .useTPRShadow,
            .mwaitExiting, .monitorExiting, .movDRExiting, .activateSecondaryControls,
        ]
        let procValue = proc.rawValue | ProcessorControls.defaultOnes.rawValue & ~UInt32(0x18000)
        let secondary: SecondaryControls = [.virtualizeAPICAccesses, .enableEPT, .enableVPID,
                                            .unrestrictedGuest, .wbinvdExiting]
        let exit: ExitControls = [.defaultOnes, .hostAddressSpaceSize, .saveIA32PAT, .loadIA32PAT]
        let entry: EntryControls = [.defaultOnes, .ia32eModeGuest, .loadIA32PAT]
        var list: [(VMCSField, UInt64)] = [
            (.ioBitmapA, layout.ioBitmapA), (.ioBitmapB, layout.ioBitmapB),
            (.msrBitmap, layout.msrBitmap), (.vmcsLinkPointer, ~0),
            (.pinBasedVMExecControl, UInt64(pin.rawValue)),
            (.cpuBasedVMExecControl, UInt64(procValue)),
            (.secondaryVMExecControl, UInt64(secondary.rawValue)),
            (.pleGap, 128), (.pleWindow, 4096),
            (.pageFaultErrorCodeMask, 0), (.pageFaultErrorCodeMatch, 0), (.cr3TargetCount, 0),
            (.hostFSSelector, 0), (.hostGSSelector, 0),
            (.hostCR0, 0x8005_0033), (.hostCR4, 0x0004_26F0), (.hostCR3, 0x01A0_5000),
            (.hostCSSelector, 0x10), (.hostDSSelector, 0), (.hostESSelector, 0),
            (.hostSSSelector, 0x18), (.hostTRSelector, 0x40),
            (.hostIDTRBase, 0xFFFF_FFFF_FF57_4000), (.hostRIP, 0xFFFF_FFFF_A020_1000),
            (.hostIA32SysenterCS, 0x10), (.hostIA32SysenterEip, 0xFFFF_FFFF_8100_2000),
            (.hostIA32PAT, 0x0007_0406_0007_0406),
            (.hostFSBase, 0x7F00_0000_0000), (.hostGSBase, 0xFFFF_8800_0000_0000),
            (.vmExitMSRStoreCount, 0), (.vmExitMSRLoadCount, 0), (.vmEntryMSRLoadCount, 0),
            (.guestIA32PAT, 0x0007_0406_0007_0406),
            (.vmExitControls, UInt64(exit.rawValue)), (.vmEntryControls, UInt64(entry.rawValue)),
            (.cr0GuestHostMask, ~UInt64(8)), (.cr4GuestHostMask, ~UInt64(0x0681)),
            (.exceptionBitmap, (1 << 18) | (1 << 6) | (1 << 1)),
            (.vmEntryIntrInfoField, 0), (.virtualAPICPageAddr, layout.virtualAPICPage),
            (.tprThreshold, 0), (.apicAccessAddr, layout.apicAccessPage),
            (.virtualProcessorID, UInt64(vcpu + 1)),
            (.eptPointer, layout.eptPML4 | 6 | (3 << 3)),
            (.tscOffset, 0xFFFF_FF00_0000_0000),
            (.hostTRBase, 0xFFFF_8800_0001_0000), (.hostGDTRBase, 0xFFFF_8800_0002_0000),
            (.hostIA32SysenterEsp, 0), (.hostRSP, 0xFFFF_8800_1234_0000),
        ]
        let guest = VMCSState.longMode(rip: 0xFFFF_FFFF_8100_0000, rsp: 0xFFFF_8800_0200_0000)
        for field in VMCSState.guestStateFields where field != .vmcsLinkPointer {
            list.append((field, guest[field]))
        }
        list.append((.cr0ReadShadow, guest[.guestCR0]))
        list.append((.cr4ReadShadow, guest[.guestCR4] & ~0x2000))
        return list
    }

    static func ops(layout: L1MemoryLayout, vcpu: Int) -> [L1Op] {
        var ops: [L1Op] = [
            .vmx(.vmxon(region: layout.vmxonRegion), expectSuccess("VMXON")),
            .vmx(.vmclear(region: layout.vmcsRegion), expectSuccess("VMCLEAR")),
            .vmx(.vmptrld(region: layout.vmcsRegion), expectSuccess("VMPTRLD")),
        ]
        for (field, value) in fields(layout: layout, vcpu: vcpu) {
            ops.append(.vmwrite(field, value))
        }
        ops.append(.vmx(.vmlaunch) { outcome throws(SimError) in
            throw .model("L1 setup: VMLAUNCH did not enter L2: \(outcome)")
        })
        return ops
    }
}
