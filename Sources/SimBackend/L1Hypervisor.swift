import VMX
import Partitioner

/// One step of the guest hypervisor's (L1's) code, as the simulated vCPU executes it.
///
/// VMREAD/VMWRITE go through the processor's VMCS-shadowing check first: served from the
/// shadow VMCS without an exit, or trapped to L0. Continuations see the value L1 read, so
/// the model's control flow follows what L0 put in vmcs12 (the exit reason, the
/// qualification, RIP...), as the real code's does.
enum L1Op {
    case software(Cycles)
    case vmread(VMCSField, (UInt64) throws(SimError) -> [L1Op])
    case vmwrite(VMCSField, UInt64)
    case vmresume
    /// Any other VMX instruction (VMXON, VMCLEAR, VMPTRLD, VMLAUNCH...) and what follows
    /// from its outcome.
    case vmx(VMXInstruction, (VMXOutcome) throws(SimError) -> [L1Op])
    /// Ops computed when reached (they depend on state the previous ops changed).
    case later(() -> [L1Op])
    /// kvm_vcpu_block: if no interrupt is pending for L2, the vCPU thread sleeps and L1's
    /// CPU idles until one arrives.
    case blockUntilInterrupt
}

/// An event L1 delivers to L2 by event injection.
public enum GuestInterrupt: Equatable, Sendable {
    case timer
    case blockCompletion(request: Int)
    case ipi(from: Int, purpose: IPIPurpose)

    /// The vector the guest sees (values of a RHEL 6 guest: LOCAL_TIMER_VECTOR 0xEF,
    /// RESCHEDULE_VECTOR 0xFD; virtio MSI-X vectors from 0x41).
    public var vector: UInt8 {
        switch self {
        case .timer: return 0xEF
        case .blockCompletion: return 0x41
        case .ipi: return 0xFD
        }
    }
}

/// Why a vCPU sent an inter-processor interrupt.
public enum IPIPurpose: Equatable, Sendable {
    /// Wake a thread of the target vCPU that sleeps on I/O or on another thread.
    case wake(thread: Int, afterIO: Bool)
    /// Hand a piece of work to a thread on the target vCPU, which wakes `replyTo` when done.
    case runDuty(RemoteDuty, replyTo: Int)
}

/// Work a thread on another vCPU does for a chain (a lock holder releasing, the journal
/// thread committing), then answers with an IPI when `reply` is set.
public struct RemoteDuty: Equatable, Sendable {
    public var delay: Cycles
    public var compute: Cycles
    public var blockWrites: Int
    public var reply: Bool

    public init(delay: Cycles = 0, compute: Cycles, blockWrites: Int = 0, reply: Bool) {
        self.delay = delay
        self.compute = compute
        self.blockWrites = blockWrites
        self.reply = reply
    }
}

/// Side effects of L1's device and interrupt emulation, carried out by the simulated LPAR.
protocol L1Environment: AnyObject {
    /// The guest kicked a virtio queue (an ioeventfd write): QEMU starts the request.
    func kickBlockDevice(from vcpu: Int)
    /// The guest wrote its APIC's ICR: L1 delivers the IPI to the target vCPU.
    func sendIPI(from vcpu: Int)
}

/// The guest hypervisor of the whitepaper's setup, Linux KVM of RHEL 6.4 (kernel
/// 2.6.32-358 lineage), for one L2 vCPU: its VMREAD/VMWRITE sequence for each exit.
///
/// The sequences follow arch/x86/kvm/vmx.c and x86.c of the RHEL 6 kernel:
/// - after every VM exit, vmx_vcpu_run reads IDT_VECTORING_INFO_FIELD, and
///   vmx_complete_interrupts reads VM_EXIT_INTR_INFO and VM_EXIT_REASON; vcpu_enter_guest
///   reads the guest TSC (kvm_get_msr(MSR_IA32_TSC) -> TSC_OFFSET); vmx_handle_exit reads
///   GUEST_RIP for trace_kvm_exit (an argument, so evaluated) and GUEST_CR3 (EPT, paging);
/// - before every VM entry, vmx_save_host_state writes HOST_FS/GS_SELECTOR and
///   HOST_FS/GS_BASE when the host state was reloaded (after vcpu_put), inject_pending_event
///   reads GUEST_RFLAGS and GUEST_INTERRUPTIBILITY_INFO (vmx_interrupt_allowed) and writes
///   VM_ENTRY_INTR_INFO_FIELD (vmx_inject_irq) when an interrupt is pending,
///   update_cr8_intercept writes TPR_THRESHOLD, and vmx_vcpu_run writes GUEST_CR3, GUEST_RSP
///   and GUEST_RIP when dirty, and HOST_CR0 ("loading guest fpu may have cleared host cr0.ts");
/// - handle_io reads EXIT_QUALIFICATION; skip_emulated_instruction reads GUEST_RIP (cached),
///   VM_EXIT_INSTRUCTION_LEN and GUEST_INTERRUPTIBILITY_INFO (vmx_set_interrupt_shadow);
/// - handle_halt skips the instruction and blocks the vCPU (kvm_vcpu_block);
/// - handle_apic_access reads EXIT_QUALIFICATION and runs the instruction emulator
///   (RHEL 6.4 has no EOI fast path): cache_all_regs reads GUEST_RSP and marks RIP and RSP
///   dirty, get_cs_db_l_bits reads GUEST_CS_AR_BYTES, kvm_get_rflags reads GUEST_RFLAGS,
///   each guest-virtual access (fetch, operand) asks vmx_get_cpl, which reads GUEST_RFLAGS
///   and GUEST_CS_SELECTOR (no RFLAGS cache in this kernel); afterwards the emulator reads
///   GUEST_INTERRUPTIBILITY_INFO and writes GUEST_RFLAGS;
/// - handle_interrupt_window reads and writes CPU_BASED_VM_EXEC_CONTROL.
final class RHEL6KVMModel {
    let vcpu: Int
    let costs: PlatformCostModel
    unowned let environment: any L1Environment

    private var ripCached: UInt64?
    private var rspCached: UInt64?
    private var ripDirty = false
    private var rspDirty = false
    private var hostStateLoaded = false
    private var rflags: UInt64 = 0x202
    /// Instruction length of the APIC-access instruction being emulated (the emulator's decode).
    var emulatedInstructionLength: UInt64 = 6
    /// The APIC register the guest writes (offset in the APIC page).
    var apicOffset: UInt64 = 0

    /// Extra VMREADs of a shadowed field L1 makes per exit (0 for RHEL 6.4 KVM itself); the
    /// benchmark's sweep raises it to show how the gain grows with VMCS accesses per exit.
    var extraReadsPerExit = 0

    /// Interrupts L1's local APIC model holds for L2 (the IRR), oldest first.
    var pendingInterrupts: [GuestInterrupt] = []
    /// The interrupt whose vector L1 wrote into VM_ENTRY_INTR_INFO_FIELD for the next entry.
    private var injecting: GuestInterrupt?

    /// The interrupt L0 injected on entry, identified by its vector.
    func injectedInterrupt(vector: UInt8) -> GuestInterrupt? {
        defer { injecting = nil }
        guard let injecting, injecting.vector == vector else { return nil }
        return injecting
    }

    /// Ports of the virtio-blk device's queue-notify register the guest kicks (an ioeventfd).
    static let kickPort: UInt16 = 0xC050
    /// The APIC registers Linux writes: EOI, ICR (low, the write that sends), timer initial count.
    static let apicEOI: UInt64 = 0xB0
    static let apicICR: UInt64 = 0x300
    static let apicTMICT: UInt64 = 0x380

    init(vcpu: Int, costs: PlatformCostModel, environment: any L1Environment) {
        self.vcpu = vcpu
        self.costs = costs
        self.environment = environment
    }

    // MARK: Register cache (kvm_cache_regs.h)

    private func ripRead() -> [L1Op] {
        ripCached != nil ? [] : [.vmread(.guestRIP) { [self] value in ripCached = value; return [] }]
    }

    private func skipEmulatedInstruction() -> [L1Op] {
        ripRead() + [
            .vmread(.vmExitInstructionLen) { [self] (length: UInt64) throws(SimError) -> [L1Op] in
                guard let rip = ripCached else { throw .model("RIP not cached at skip_emulated_instruction") }
                ripCached = rip &+ length
                ripDirty = true
                return []
            },
        ] + setInterruptShadowZero()
    }

    private func setInterruptShadowZero() -> [L1Op] {
        [.vmread(.guestInterruptibilityInfo) { old in
            old & 3 != 0 ? [.vmwrite(.guestInterruptibilityInfo, old & ~3)] : []
        }]
    }

    // MARK: Exit and entry paths

    /// The ops after a reflected exit, up to and including the next VMRESUME.
    func handleExit() -> [L1Op] {
        ripCached = nil
        rspCached = nil
        ripDirty = false
        rspDirty = false
        return [
            .vmread(.idtVectoringInfoField) { _ in [] },
            .vmread(.vmExitIntrInfo) { _ in [] },
            .vmread(.vmExitReason) { [self] (raw: UInt64) throws(SimError) -> [L1Op] in
                let reason = ExitReason(rawValue: UInt16(truncatingIfNeeded: raw))
                return [.vmread(.tscOffset) { _ in [] }] + ripRead()
                    + [.vmread(.guestCR3) { _ in [] }, .software(costs.c(costs.exitDispatch))]
                    + (try handler(for: reason, rawReason: raw))
                    + Array(repeating: L1Op.vmread(.exitQualification) { _ in [] }, count: extraReadsPerExit)
                    + [.later { [self] in enterGuest() }]
            },
        ]
    }

    private func handler(for reason: ExitReason, rawReason: UInt64) throws(SimError) -> [L1Op] {
        if rawReason & UInt64(ExitReason.entryFailureFlag) != 0 {
            throw .model("L2 entry failed: exit reason \(hex(rawReason))")
        }
        switch reason {
        case .ioInstruction:
            return [.vmread(.exitQualification) { [self] (raw: UInt64) throws(SimError) -> [L1Op] in
                guard let io = IOExitQualification(rawValue: raw) else {
                    throw .model("bad I/O exit qualification \(hex(raw))")
                }
                guard io.direction == .output, !io.isString, io.port == Self.kickPort else {
                    throw .model("the simulated guest made an I/O exit the model has no device for (port \(hex(io.port)))")
                }
                // kvm_emulate_pio -> kernel_pio -> ioeventfd: handled without QEMU.
                return skipEmulatedInstruction() + [.later { [self] in
                    environment.kickBlockDevice(from: vcpu)
                    return []
                }]
            }]
        case .hlt:
            return skipEmulatedInstruction() + [.blockUntilInterrupt]
        case .apicAccess:
            return [.vmread(.exitQualification) { [self] raw in
                apicOffset = raw & 0xFFF
                return emulateAPICWrite()
            }]
        case .externalInterrupt:
            // handle_external_interrupt counts the exit; L1's own interrupt handler runs when
            // vcpu_enter_guest enables interrupts, and queues the event it brought for L2.
            return [.software(costs.c(costs.lapicAccess))]
        case .interruptWindow:
            return [.vmread(.cpuBasedVMExecControl) { value in
                [.vmwrite(.cpuBasedVMExecControl, value & ~UInt64(ProcessorControls.interruptWindowExiting.rawValue))]
            }]
        default:
            throw .model("the L1 model has no handler for exit \(reason)")
        }
    }

    /// emulate_instruction for a MOV to an APIC register (RHEL 6.4 handle_apic_access).
    private func emulateAPICWrite() -> [L1Op] {
        var ops: [L1Op] = ripRead()
        // cache_all_regs: RAX..., RSP, RIP read; then regs_dirty = ~0.
        ops.append(.vmread(.guestRSP) { [self] value in rspCached = value; ripDirty = true; rspDirty = true; return [] })
        ops.append(.vmread(.guestCSARBytes) { _ in [] })                        // get_cs_db_l_bits
        ops.append(.vmread(.guestRFLAGS) { [self] value in rflags = value; return [] })   // kvm_get_rflags
        ops += cpl() + [.software(costs.c(costs.guestPageWalk))]            // instruction fetch
        ops.append(.software(costs.c(costs.instructionEmulation)))
        ops += cpl() + [.software(costs.c(costs.guestPageWalk))]            // operand translation
        ops.append(.software(costs.c(costs.lapicAccess)))
        ops.append(.later { [self] in
            if apicOffset == Self.apicICR { environment.sendIPI(from: vcpu) }
            return []
        })
        ops += setInterruptShadowZero()
        ops.append(.later { [self] in [.vmwrite(.guestRFLAGS, rflags)] })    // kvm_x86_ops->set_rflags
        ops.append(.later { [self] in
            if let rip = ripCached { ripCached = rip &+ emulatedInstructionLength }
            return []
        })
        return ops
    }

    /// vmx_get_cpl: RFLAGS (virtual-8086 check) then the CS selector's RPL.
    private func cpl() -> [L1Op] {
        [.vmread(.guestRFLAGS) { _ in [] }, .vmread(.guestCSSelector) { _ in [] }]
    }

    /// vcpu_enter_guest + vmx_vcpu_run up to VMRESUME.
    func enterGuest() -> [L1Op] {
        var ops: [L1Op] = []
        if !hostStateLoaded {
            ops += [.vmwrite(.hostFSSelector, 0), .vmwrite(.hostGSSelector, 0),
                    .vmwrite(.hostFSBase, 0x7F00_0000_0000), .vmwrite(.hostGSBase, 0xFFFF_8800_0000_0000)]
            hostStateLoaded = true
        }
        if let interrupt = pendingInterrupts.first {
            ops.append(.vmread(.guestRFLAGS) { [self] rflags in
                [.vmread(.guestInterruptibilityInfo) { [self] blocking in
                    let allowed = rflags & (1 << 9) != 0 && blocking & 3 == 0
                    guard allowed else { return irqWindow() }
                    pendingInterrupts.removeFirst()
                    injecting = interrupt
                    let info = InterruptionInfo(vector: interrupt.vector, kind: .externalInterrupt)
                    var next: [L1Op] = [.vmwrite(.vmEntryIntrInfoField, UInt64(info.rawValue))]
                    if !pendingInterrupts.isEmpty { next += irqWindow() }
                    return next
                }]
            })
        }
        ops.append(.vmwrite(.tprThreshold, 0))
        ops.append(.vmwrite(.guestCR3, 0x1000))
        ops.append(.later { [self] in
            var writes: [L1Op] = []
            if rspDirty, let rsp = rspCached { writes.append(.vmwrite(.guestRSP, rsp)) }
            if ripDirty, let rip = ripCached { writes.append(.vmwrite(.guestRIP, rip)) }
            return writes + [.vmwrite(.hostCR0, 0x8005_0033), .vmresume]
        })
        return ops
    }

    private func irqWindow() -> [L1Op] {
        [.vmread(.cpuBasedVMExecControl) { value in
            [.vmwrite(.cpuBasedVMExecControl, value | UInt64(ProcessorControls.interruptWindowExiting.rawValue))]
        }]
    }

    /// The vCPU thread slept (vcpu_put reloaded the host state; the next entry rewrites it).
    func didBlock() { hostStateLoaded = false }

    /// Ops after the vCPU thread is woken: back into vcpu_enter_guest.
    func resumeAfterBlock() -> [L1Op] {
        [.software(costs.c(costs.vcpuBlockWake)), .later { [self] in enterGuest() }]
    }
}

/// Errors of the simulation itself (never of the simulated guest).
public enum SimError: Error, Equatable, Sendable, CustomStringConvertible {
    case model(String)
    case unexpected(String)
    case backend(BackendErrorText)

    public var description: String {
        switch self {
        case .model(let text): return "simulation model error: \(text)"
        case .unexpected(let text): return "simulation protocol error: \(text)"
        case .backend(let text): return text.text
        }
    }
}

/// A backend error's text (kept as text so SimError stays independent of its cases).
public struct BackendErrorText: Equatable, Sendable { public var text: String }
