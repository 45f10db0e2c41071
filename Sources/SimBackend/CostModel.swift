/// Virtual time, in processor cycles of the simulated platform.
public typealias Cycles = UInt64

/// One constant of a cost model: its value and where the value comes from.
public struct CostConstant: Equatable, Sendable, Codable {
    public var name: String
    public var cycles: Double
    /// The paper, manual, source file or measurement the value is taken from, and how.
    public var source: String

    public init(_ name: String, _ cycles: Double, source: String) {
        self.name = name
        self.cycles = cycles
        self.source = source
    }
}

/// The cost of every transition the simulation charges, for one platform.
///
/// Costs are either hardware costs of the platform's processor, software costs of the
/// code that runs (Nestor's L0 path, which follows Linux KVM's nested VMX; the guest
/// hypervisor, which is Linux KVM of the whitepaper's RHEL 6.4; the L2 guest's kernel), or
/// device latencies. Workloads never carry costs of their own: they say what they do, and
/// this model prices it.
public struct PlatformCostModel: Equatable, Sendable, Codable {
    public var name: String
    public var summary: String
    public var cpuHz: Double

    // Hardware.
    public var vmTransition: CostConstant
    public var vmcsAccess: CostConstant
    public var vmptrld: CostConstant
    public var vmclear: CostConstant

    // Software of a KVM-style exit path (L0's, and the same code in L1).
    public var exitDispatch: CostConstant
    public var vmxEmulation: CostConstant
    public var nestedExitSoftware: CostConstant
    public var nestedEntrySoftware: CostConstant
    public var instructionEmulation: CostConstant
    public var guestPageWalk: CostConstant
    public var lapicAccess: CostConstant
    public var vcpuBlockWake: CostConstant

    // Devices and the guest hypervisor's device model.
    public var virtioBlockRequest: CostConstant
    public var pageCacheRead4K: CostConstant
    public var storageWrite: CostConstant

    // The L2 guest kernel.
    public var guestBlockSubmit: CostConstant
    public var guestBlockComplete: CostConstant
    public var guestContextSwitch: CostConstant
    public var guestIPIHandler: CostConstant
    public var guestTimerTick: CostConstant
    public var guestIdleTransition: CostConstant
    public var guestTickPeriod: CostConstant

    /// Counts read off the code (not costs): how many VMCS accesses L0 makes in hardware to
    /// emulate one trapped VMREAD/VMWRITE.
    public var vmxEmulationVMCSAccesses: Int
    /// Control fields L0 merges from vmcs12 and vmcs01 into vmcs02 on every nested entry.
    public var nestedEntryControlFields: Int

    /// Every constant, for reports.
    public var constants: [CostConstant] {
        [vmTransition, vmcsAccess, vmptrld, vmclear, exitDispatch, vmxEmulation,
         nestedExitSoftware, nestedEntrySoftware, instructionEmulation, guestPageWalk,
         lapicAccess, vcpuBlockWake, virtioBlockRequest, pageCacheRead4K, storageWrite,
         guestBlockSubmit, guestBlockComplete, guestContextSwitch, guestIPIHandler, guestTimerTick,
         guestIdleTransition, guestTickPeriod]
    }

    /// Rounds a cost to whole cycles.
    @inline(__always) public func c(_ constant: CostConstant) -> Cycles { Cycles(constant.cycles.rounded()) }

    public func seconds(_ cycles: Cycles) -> Double { Double(cycles) / cpuHz }
    public func cycles(seconds: Double) -> Cycles { Cycles((seconds * cpuHz).rounded()) }

    /// A copy with one constant multiplied by `factor` (for sensitivity analysis).
    public func scaling(_ name: String, by factor: Double) -> PlatformCostModel? {
        var copy = self
        let paths: [WritableKeyPath<PlatformCostModel, CostConstant>] = [
            \.vmTransition, \.vmcsAccess, \.vmptrld, \.vmclear, \.exitDispatch, \.vmxEmulation,
            \.nestedExitSoftware, \.nestedEntrySoftware, \.instructionEmulation, \.guestPageWalk,
            \.lapicAccess, \.vcpuBlockWake, \.virtioBlockRequest, \.pageCacheRead4K, \.storageWrite,
            \.guestBlockSubmit, \.guestBlockComplete, \.guestContextSwitch, \.guestIPIHandler, \.guestTimerTick,
            \.guestIdleTransition, \.guestTickPeriod,
        ]
        for path in paths where copy[keyPath: path].name == name {
            copy[keyPath: path].cycles *= factor
            return copy
        }
        return nil
    }
}

extension PlatformCostModel {
    /// The whitepaper's blade: Intel Xeon E5-2667 v3 (Haswell-EP, 8 cores, 3.2 GHz, HT off),
    /// L1 = Linux KVM of RHEL 6.4, L2 = RHEL 6.4 guest, FC-attached storage.
    public static let xeonE52667v3 = PlatformCostModel(
        name: "xeon-e5-2667v3",
        summary: "2 x Xeon E5-2667 v3 (Haswell-EP, 3.2 GHz, HT off); L1: RHEL 6.4 KVM; L2: RHEL 6.4",
        cpuHz: 3.2e9,
        vmTransition: CostConstant(
            "vm-transition", 500,
            source: "Hardware VM exit plus VM entry round trip. Agesen et al., \"Software Techniques for Avoiding Hardware Virtualization Exits\", USENIX ATC 2012, Fig. 1: Intel's round-trip latency falls to about 500 cycles by Sandy Bridge; Haswell is taken at the same value."),
        vmcsAccess: CostConstant(
            "vmcs-access", 40,
            source: "One VMREAD/VMWRITE that does not exit (L0 on its own VMCS, or L1 on the shadow VMCS). Intel publishes no latency; estimate of 'tens of cycles' on Haswell, the reason Linux KVM caches VMCS fields in memory. Sensitivity in docs/BENCHMARKS.md."),
        vmptrld: CostConstant(
            "vmptrld", 300,
            source: "VMPTRLD of a VMCS (switching vmcs01/vmcs02/shadow). Estimate: an order slower than a VMCS field access, as it may load VMCS data into the processor's cache; sensitivity in docs/BENCHMARKS.md."),
        vmclear: CostConstant(
            "vmclear", 300,
            source: "VMCLEAR of the shadow VMCS after each sync (Linux KVM copy_vmcs12_to_shadow / copy_shadow_to_vmcs12). Estimate, as VMPTRLD."),
        exitDispatch: CostConstant(
            "exit-dispatch", 500,
            source: "Software of one exit handled by a KVM-style hypervisor, without the hardware transition and without VMCS accesses: kvm-unit-tests x86/vmexit.c 'cpuid' measures about 1,200-1,300 cycles on Haswell for the whole round trip; minus 500 (vm-transition) and the ~6 VMCS accesses of the CPUID path."),
        vmxEmulation: CostConstant(
            "vmx-emulation", 200,
            source: "L0's work to emulate one trapped VMREAD/VMWRITE besides dispatch and VMCS accesses: decode VMX_INSTRUCTION_INFO, fetch the operand register, look the field up in vmcs12, set RFLAGS (Linux arch/x86/kvm/vmx/nested.c handle_vmread/handle_vmwrite). Estimate."),
        nestedExitSoftware: CostConstant(
            "nested-exit-software", 2000,
            source: "L0's software for a nested VM exit besides VMCS field copies: leave guest mode, switch to vmcs01, load L1 host state into the vCPU, event bookkeeping (Linux nested_vmx_vmexit). Estimate from the path length; the field copies are charged separately by count."),
        nestedEntrySoftware: CostConstant(
            "nested-entry-software", 2500,
            source: "L0's software for a nested VM entry besides VMCS field copies: consistency checks of controls, host and guest state in software, enter guest mode, switch to vmcs02 (Linux nested_vmx_run / nested_vmx_enter_non_root_mode). Estimate from the path length."),
        instructionEmulation: CostConstant(
            "instruction-emulation", 3000,
            source: "Linux KVM's x86 instruction emulator decoding and executing one MOV to an emulated APIC register (emulate_instruction in RHEL 6.4 KVM), besides VMCS accesses and page walks. Estimate: 'a few thousand cycles'."),
        guestPageWalk: CostConstant(
            "guest-page-walk", 300,
            source: "A software walk of the guest's 4-level page tables by the KVM emulator (instruction fetch or operand). Estimate: 4 dependent memory reads, mostly cached."),
        lapicAccess: CostConstant(
            "lapic-access", 500,
            source: "KVM's in-kernel local APIC register write (EOI, ICR, TMICT with hrtimer reprogramming). Estimate."),
        vcpuBlockWake: CostConstant(
            "vcpu-block-wake", 6000,
            source: "L1 blocks a halted vCPU thread and later wakes it: wake-up, two context switches, vcpu_put/vcpu_load (kvm_vcpu_block in RHEL 6.4). Estimate of about 2 us for a cross-CPU wake-up and switch on 2013 Linux."),
        virtioBlockRequest: CostConstant(
            "virtio-block-request", 48000,
            source: "Latency of one virtio-blk request in QEMU (qemu-kvm 0.12 of RHEL 6.4) from the ioeventfd kick to the interrupt injection: iothread wake-up, virtqueue pop, hand-off to the AIO thread pool, completion notification, virtqueue push, irq ioctl. Estimate: 15 us, the per-request overhead that motivated QEMU's virtio-blk data plane (2012-2013)."),
        pageCacheRead4K: CostConstant(
            "page-cache-read-4k", 3200,
            source: "A 4 KiB read served from L1's page cache (QEMU's default cache=writethrough in RHEL 6.4; sequential reads stay ahead thanks to readahead): lookup and copy, about 1 us. Estimate."),
        storageWrite: CostConstant(
            "storage-write", 480000,
            source: "A small synchronous write to FC-attached storage with a write cache (InnoDB redo log, ext4 journal): 150 us. Estimate for an enterprise array's cached write over 8 Gb FC."),
        guestBlockSubmit: CostConstant(
            "guest-block-submit", 12000,
            source: "L2's Linux 2.6.32 path to submit one 4 KiB direct read: system call, AIO, block layer, virtio-blk queueing. Estimate of about 4 us."),
        guestBlockComplete: CostConstant(
            "guest-block-complete", 10000,
            source: "L2's completion path of one block request: interrupt handler, bio completion, waking the waiter, context switch back. Estimate of about 3 us."),
        guestContextSwitch: CostConstant(
            "guest-context-switch", 6000,
            source: "L2's wake-up of a blocked thread and switch to it (CFS, 2.6.32). Estimate of about 2 us."),
        guestIPIHandler: CostConstant(
            "guest-ipi-handler", 1500,
            source: "L2's handler of a reschedule or function-call IPI (smp_reschedule_interrupt), besides its EOI. Estimate."),
        guestTimerTick: CostConstant(
            "guest-timer-tick", 5000,
            source: "L2's timer interrupt handler (scheduler tick, hrtimers, jiffies). Estimate."),
        guestIdleTransition: CostConstant(
            "guest-idle-transition", 3000,
            source: "L2's idle entry or exit with NO_HZ (tick_nohz_stop/restart_sched_tick), besides the APIC timer write it makes. Estimate."),
        guestTickPeriod: CostConstant(
            "guest-tick-period", 3_200_000,
            source: "RHEL 6 kernels are built with CONFIG_HZ=1000: one tick per millisecond on a busy CPU (tickless when idle)."),
        vmxEmulationVMCSAccesses: 12,
        nestedEntryControlFields: 25)
}
