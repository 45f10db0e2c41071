#if os(Linux)
import CKVM
import Glibc
import Dispatch
import Synchronization
public import KVM
public import Partitioner
import VMX

/// The partitioner's backend on /dev/kvm: each LPAR a KVM virtual machine whose memory is
/// one memfd of the LPAR's size, mapped at guest-physical 0.
public struct KVMHypervisor: Hypervisor {
    public let kvm: KVM
    public let capabilities: HypervisorCapabilities
    /// What LPARs created with vmm get; nil: such LPARs are refused.
    public let vmx: KVMVMXSupport?

    public init(kvm: KVM, vmx: KVMVMXSupport? = nil) {
        self.kvm = kvm
        self.vmx = vmx
        let module = KVMProbe.module() ?? "kvm"
        capabilities = HypervisorCapabilities(
            kind: .kvm, nestedVMX: vmx != nil, vmcsShadowing: vmx != nil,
            maxVCPUsPerLPAR: Int(max(1, kvm.checkExtension(KVM_CAP_MAX_VCPUS))),
            summary: "/dev/kvm (API \(kvm.apiVersion), \(module)): "
                + (vmx != nil ? "LPARs, and guest hypervisors through the VMX gate and microcode page" : "plain LPARs"))
    }

    public func createVM(_ spec: LPARSpec) throws(BackendError) -> any VirtualMachine {
        try KVMLPAR(spec: spec, kvm: kvm, vmx: vmx)
    }
}

/// An LPAR's guest-physical memory: the host mapping of its memfd.
public final class MappedGuestMemory: GuestMemory {
    public let base: UnsafeMutableRawPointer
    public let size: UInt64

    init(base: UnsafeMutableRawPointer, size: UInt64) {
        self.base = base
        self.size = size
    }

    public func read(_ address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        guard count >= 0, address <= size, UInt64(count) <= size - address else {
            throw .outOfRange(address: address, count: count, size: size)
        }
        return Array(UnsafeRawBufferPointer(start: base + Int(address), count: count))
    }

    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(GuestMemoryError) {
        guard address <= size, UInt64(bytes.count) <= size - address else {
            throw .outOfRange(address: address, count: bytes.count, size: size)
        }
        bytes.withUnsafeBytes { (base + Int(address)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
}

/// One LPAR as a KVM virtual machine: one vCPU per logical CPU of its spec (at most 16).
public final class KVMLPAR: VirtualMachine {
    public let spec: LPARSpec
    public let memory: any GuestMemory
    let mapped: MappedGuestMemory
    let vm: KVMVirtualMachine
    let cpus: [KVMLPARCPU]
    private let memoryFD: Int32
    /// The read-only VMX pages of an LPAR created with vmm.
    private let vmxArea: UnsafeMutableRawPointer?

    init(spec: LPARSpec, kvm: KVM, vmx: KVMVMXSupport? = nil) throws(BackendError) {
        let size = spec.memory.size
        if spec.vmm && vmx == nil {
            throw .invalidConfiguration("LPAR \(spec.name) asks for vmm, but this L0 has no VMX microcode page")
        }
        if spec.vmm && size <= GuestABI.VMX.shadow + 0x1000 {
            throw .invalidConfiguration("LPAR \(spec.name): a guest hypervisor needs more than \(GuestABI.VMX.shadow + 0x1000) bytes")
        }
        let fd = ckvm_memfd("nestor-lpar-\(spec.name)")
        guard fd >= 0, ftruncate(fd, off_t(size)) == 0, let base = ckvm_mmap_shared(fd, Int(size)) else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw .unavailable(backend: .kvm, reason: "cannot allocate \(size >> 20) MiB for LPAR \(spec.name): \(reason)")
        }
        var area: UnsafeMutableRawPointer?
        do {
            let vm = try kvm.createVM()
            try vm.setTSSAddress(0xfffb_d000)
            var nested: NestedVMXCore?
            if spec.vmm, let vmx {
                // The VMX area: RAM below and above it, the read-only pages (microcode,
                // control, bitmaps) in a slot of their own; the shadow page is RAM.
                let low = GuestABI.VMX.microcode, high = low + GuestABI.VMX.readOnlySize
                guard let pages = mmap(nil, Int(GuestABI.VMX.readOnlySize), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                      pages != MAP_FAILED else {
                    throw BackendError.unavailable(backend: .kvm, reason: "cannot map the VMX area: \(String(cString: strerror(errno)))")
                }
                area = pages
                try vm.setUserMemoryRegion(slot: 0, guestPhysical: 0, size: low, host: base)
                try vm.setUserMemoryRegion(slot: 1, guestPhysical: high, size: size - high, host: base + Int(high))
                try vm.setUserMemoryRegion(slot: 2, guestPhysical: low, size: GuestABI.VMX.readOnlySize, host: pages, readOnly: true)
                let capabilities = VMXCapabilities.nestorDefault(vmwriteToReadOnlyFields: vmx.vmwriteToReadOnlyFields)
                nested = NestedVMXCore(vmx: NestedVMX(capabilities: capabilities, shadowFields: spec.vmcsShadowing ? spec.shadowFields : nil),
                                       memory: MappedGuestMemory(base: base, size: size))
            } else {
                try vm.setUserMemoryRegion(slot: 0, guestPhysical: 0, size: size, host: base)
            }
            let count = max(1, min(spec.cpu.logicalCPUCount, GuestABI.maxVCPUs))
            var cpus: [KVMLPARCPU] = []
            for index in 0..<count {
                var gate: VMXGate?
                if index == 0, let nested, let area, let vmx {
                    gate = try VMXGate(core: nested, kvm: kvm, microcode: vmx.microcode, area: area, memory: base, memorySize: size)
                }
                cpus.append(KVMLPARCPU(index: index, vcpu: try vm.createVCPU(id: index), gate: gate))
            }
            self.cpus = cpus
            self.vm = vm
        } catch {
            if let area { munmap(area, Int(GuestABI.VMX.readOnlySize)) }
            ckvm_munmap(base, Int(size))
            close(fd)
            throw .unavailable(backend: .kvm, reason: "LPAR \(spec.name): \(error)")
        }
        self.vmxArea = area
        self.spec = spec
        self.memoryFD = fd
        self.mapped = MappedGuestMemory(base: base, size: size)
        self.memory = mapped
    }

    deinit {
        if let vmxArea { munmap(vmxArea, Int(GuestABI.VMX.readOnlySize)) }
        ckvm_munmap(mapped.base, Int(mapped.size))
        close(memoryFD)
    }

    public var vcpuCount: Int { cpus.count }

    public func vcpu(_ index: Int) throws(BackendError) -> any VirtualCPU {
        guard cpus.indices.contains(index) else { throw .vcpuIndexOutOfRange(index: index, count: cpus.count) }
        return cpus[index]
    }
}

/// A KVM vCPU behind the backend protocol: KVM's exits in neutral terms.
public final class KVMLPARCPU: VirtualCPU {
    public let index: Int
    let vcpu: KVMVCPU
    /// The VMX gate and microcode page (vCPU 0 of an LPAR created with vmm).
    let gate: VMXGate?
    /// L1's registers at the gate, until L0's answer is written back.
    var atGate: kvm_regs?
    /// The L2 guest this vCPU runs now (between a VM entry and the exit reflected to L1).
    var activeL2: L2Guest?
    /// L2's registers at its last exit.
    var l2Registers = kvm_regs()
    /// When L1's VMX-preemption timer expires for the L2 running now (uptime nanoseconds).
    var preemptionDeadline: UInt64?
    /// A POSIX timer that kicks this vCPU's thread out of L2's KVM_RUN (made on that thread).
    private var kickTimer: Int = -1
    /// Nanoseconds this vCPU spent in KVM_RUN for L1 (or the LPAR's only level) and for L2;
    /// the rest of its thread's time is L0's.
    let l1Nanoseconds = Atomic<UInt64>(0)
    let l2Nanoseconds = Atomic<UInt64>(0)

    /// Time in the guest so far: L1 (or the LPAR's only level) and L2, in nanoseconds.
    public var guestNanoseconds: (l1: UInt64, l2: UInt64) {
        (l1Nanoseconds.load(ordering: .relaxed), l2Nanoseconds.load(ordering: .relaxed))
    }

    init(index: Int, vcpu: KVMVCPU, gate: VMXGate? = nil) {
        self.index = index
        self.vcpu = vcpu
        self.gate = gate
    }

    /// The vCPU's thread is ending: its kick timer goes with it.
    func threadEnded() {
        if kickTimer >= 0 {
            _ = ckvm_kick_timer_delete(kickTimer)
            kickTimer = -1
        }
    }

    /// The L2 guests L0 keeps for this vCPU (read on its own thread).
    var l2GuestCount: Int { gate?.guests.count ?? 0 }

    /// The nested-VMX core L0's exit handler shares with the gate; nil without vmm.
    public var nested: NestedVMXCore? { gate?.core }

    /// VMREADs and VMWRITEs the microcode page served without an exit.
    public var servedByMicrocode: (reads: UInt64, writes: UInt64) { gate?.served ?? (0, 0) }

    public func run() throws(BackendError) -> VCPUExit {
        if let l2 = activeL2 {
            do { return try runL2(l2) } catch { throw .internalError("L2: \(error)") }
        }
        let exit: KVMExit
        let start = DispatchTime.now().uptimeNanoseconds
        do { exit = try vcpu.run() } catch { throw .internalError("\(error)") }
        l1Nanoseconds.add(DispatchTime.now().uptimeNanoseconds - start, ordering: .relaxed)
        switch exit {
        case .ioOut(GuestABI.VMX.gatePort, 4, let operation):
            if operation == GuestABI.VMX.Operation.invept.rawValue { gate?.eptGeneration &+= 1 }
            // A VMX instruction through the gate: the operands are in L1's registers.
            let regs: kvm_regs
            do { regs = try vcpu.registers() } catch { throw .internalError("\(error)") }
            atGate = regs
            gate?.absorb()
            if operation == GuestABI.VMX.Operation.vmclear.rawValue, let gate, let guest = gate.guests[regs.rdi], guest !== activeL2 {
                // L1 is done with that VMCS: L0 lets go of the L2 VM it ran it with (a later
                // VMLAUNCH of the region makes a fresh one).
                gate.guests[regs.rdi] = nil
            }
            if gate == nil && index > 0 {
                return .internalError("the VMX gate serves vCPU 0 of an LPAR created with vmm; vCPU \(index) used it")
            }
            return VMXGate.decode(operation, regs)
        case .ioOut(let port, let size, let value): return .ioOut(port: port, size: size, value: value)
        case .ioIn(let port, let size): return .ioIn(port: port, size: size)
        case .mmioRead(let address, let size): return .mmioRead(address: address, size: size)
        case .mmioWrite(let address, let size, let value): return .mmioWrite(address: address, size: size, value: value)
        case .hlt: return .hlt
        case .shutdown: return .shutdown
        case .failEntry(let reason): return .failEntry(reason: reason)
        case .internalError(let suberror): return .internalError("KVM internal error, suberror \(suberror)")
        case .interrupted: return .interrupted
        case .other(let reason): return .internalError("unexpected KVM exit \(reason)")
        }
    }

    /// L0's answer. Device emulation writes its result with `completeIn` before the next run.
    public func resume(_ response: L0Response) throws(BackendError) {
        switch response {
        case .emulateDevice, .resumeGuest: return
        case .haltUntilInterrupt: usleep(1_000)   // no interrupt controller: the next tick
        case .failLPAR(let reason): throw .guestFault(reason)
        case .completeMSRRead(let value):
            guard var regs = atGate else { throw .internalError("an MSR read completed outside the VMX gate") }
            regs.rax = value
            try finishGate(regs)
        case .completeVMX(let outcome):
            guard var regs = atGate else { throw .internalError("a VMX instruction completed outside the VMX gate") }
            switch outcome {
            case .exception(let exception):
                throw .guestFault("a VMX instruction raised \(exception) (L1 has no IDT to take it)")
            case .enteredL2(let entry):
                atGate = nil
                try enterL2(entry, l1: regs)
                return
            case .entryFailed(_, _, let resume):
                atGate = nil
                try resumeL1(at: resume, registers: regs)
                return
            case .read(let value), .stored(let value):
                regs.rax = value
            case .succeeded, .failInvalid, .failValid:
                break
            }
            regs.rflags = outcome.rflags(from: regs.rflags)
            try finishGate(regs)
        case .resumeL2(let handling):
            guard let l2 = activeL2 else { throw .internalError("an L2 exit on a vCPU that runs no L2") }
            if case .builtEPTMapping = handling, let gate, let eptp = l2.builtEPTP {
                // L1 mapped it without INVEPT (allowed for a new mapping): L0 builds it now.
                do { try l2.prepareMemory(eptp: eptp, generation: gate.eptGeneration, l1: gate.core.memory, force: true) }
                catch { throw .internalError("L2 memory: \(error)") }
            }
        case .resumeL1(let state):
            guard activeL2 != nil else { throw .internalError("an L2 exit on a vCPU that runs no L2") }
            activeL2 = nil
            if preemptionDeadline != nil {
                preemptionDeadline = nil
                if kickTimer >= 0 { _ = ckvm_kick_timer_arm(kickTimer, 0, 0) }
            }
            try resumeL1(at: state, registers: l2Registers)
        }
    }

    // MARK: L2

    /// VMLAUNCH/VMRESUME succeeded: the vCPU's thread now runs L2's vCPU, loaded from
    /// vmcs12 and from L1's registers at the gate.
    private func enterL2(_ entry: L2Entry, l1 regs: kvm_regs) throws(BackendError) {
        guard let gate, let region = gate.core.vmx.currentRegion else { throw .internalError("a VM entry without a current VMCS") }
        do {
            let l2 = try gate.guest(for: region)
            if let eptp = entry.eptPointer {
                try l2.prepareMemory(eptp: eptp, generation: gate.eptGeneration, l1: gate.core.memory)
            } else {
                try l2.prepareIdentity()
            }
            let spilled = gate.spilled
            try l2.enter(entry, registers: regs, spilledRAX: spilled.rax, spilledRDX: spilled.rdx)
            activeL2 = l2
            // The VMX-preemption timer (pin-based bit 6): it counts down from vmcs12's value at
            // the TSC's rate (IA32_VMX_MISC bits 4:0 are 0); L0 ends L2's run when it expires.
            preemptionDeadline = nil
            let pin = PinBasedControls(rawValue: UInt32(truncatingIfNeeded: gate.core.vmx.peek(.pinBasedVMExecControl) ?? 0))
            if pin.contains(.preemptionTimer) {
                let ticks = entry.guestState[.vmxPreemptionTimerValue] & 0xFFFF_FFFF
                let kilohertz = l2.vcpu.tscKilohertz() ?? vcpu.tscKilohertz() ?? 1_000_000
                preemptionDeadline = DispatchTime.now().uptimeNanoseconds + ticks * 1_000_000 / kilohertz
            }
        } catch {
            throw .internalError("cannot enter L2: \(error)")
        }
        gate.publish()
    }

    /// L1 continues at `state` (vmcs12's host state) with `registers` as its general
    /// registers (L2's at the exit, as on hardware). RFLAGS keeps IOPL 3: L1 runs at CPL 3.
    private func resumeL1(at state: VMCSState, registers: kvm_regs) throws(BackendError) {
        var regs = registers
        regs.rip = state.rip
        regs.rsp = state.rsp
        regs.rflags = state.rflags | 0x3002
        do {
            if state[.guestCR3] != 0 {
                var sregs = try vcpu.specialRegisters()
                if sregs.cr3 != state[.guestCR3] {
                    sregs.cr3 = state[.guestCR3]
                    try vcpu.setSpecialRegisters(sregs)
                }
            }
            try vcpu.setRegisters(regs)
        } catch {
            throw .internalError("\(error)")
        }
        gate?.publish()
    }

    /// Runs L2 until an exit L0 must decide: L2's instruction is left undone (the exit of
    /// KVM is completed without running L2 and L2's registers put back), as a VM exit
    /// leaves it for L1.
    private func runL2(_ l2: L2Guest) throws(KVMError) -> VCPUExit {
        if let deadline = preemptionDeadline {
            let now = DispatchTime.now().uptimeNanoseconds
            if now >= deadline {
                let regs = try l2.vcpu.registers()
                l2Registers = regs
                return .l2Exit(L2Exit(reason: .preemptionTimer, guestState: try l2.exitState(regs)))
            }
            // Kicked at the deadline, and every millisecond after it (a kick that arrives
            // outside KVM_RUN is lost; the next one is not).
            if kickTimer < 0 { kickTimer = ckvm_kick_timer_create() }
            if kickTimer >= 0 { _ = ckvm_kick_timer_arm(kickTimer, deadline - now, 1_000_000) }
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let exit = try l2.vcpu.run()
        l2Nanoseconds.add(DispatchTime.now().uptimeNanoseconds - start, ordering: .relaxed)
        func undone() throws(KVMError) -> kvm_regs {
            let regs = try l2.vcpu.registers()
            try l2.vcpu.flushPendingExit()
            try l2.vcpu.setRegisters(regs)
            l2Registers = regs
            return regs
        }
        func stopped() throws(KVMError) -> kvm_regs {
            let regs = try l2.vcpu.registers()
            l2Registers = regs
            return regs
        }
        switch exit {
        case .interrupted:
            let regs = try stopped()
            if let deadline = preemptionDeadline, DispatchTime.now().uptimeNanoseconds >= deadline {
                return .l2Exit(L2Exit(reason: .preemptionTimer, guestState: try l2.exitState(regs)))
            }
            return .l2Exit(L2Exit(reason: .externalInterrupt, interruptSource: .l0, guestState: try l2.exitState(regs)))
        case .ioOut(let port, let size, _), .ioIn(let port, let size):
            // KVM may report the exit with RIP at the instruction (it finishes it on the next
            // run) or already past it (its emulator finished an OUT): which one, the RIP
            // after finishing it says; L1 must see RIP at the instruction, as on hardware.
            var input = false
            if case .ioIn = exit { input = true }
            var regs = try l2.vcpu.registers()
            try l2.vcpu.flushPendingExit()
            let after = try l2.vcpu.registers().rip
            let decoded: (length: UInt32, immediate: Bool, string: Bool, repeated: Bool)?
            if after != regs.rip {
                decoded = l2.ioInstruction(at: regs.rip)
            } else if let found = l2.ioInstruction(endingAt: regs.rip, port: port, size: size) {
                regs.rip = found.start
                decoded = found.decoded
            } else {
                decoded = nil
            }
            try l2.vcpu.setRegisters(regs)
            l2Registers = regs
            guard let decoded else {
                return .internalError("L2: no I/O instruction found at RIP 0x\(String(regs.rip, radix: 16)) for its I/O exit")
            }
            let qualification = IOExitQualification(size: size, direction: input ? .input : .output, port: port,
                                                    isString: decoded.string, isRepeated: decoded.repeated,
                                                    operand: decoded.immediate ? .immediate : .dx)
            return .l2Exit(L2Exit(reason: .ioInstruction, qualification: qualification.rawValue, instructionLength: decoded.length,
                                  guestState: try l2.exitState(regs)))
        case .mmioRead(let address, _), .mmioWrite(let address, _, _):
            let regs = try undone()
            var write = false
            if case .mmioWrite = exit { write = true }
            let qualification = EPTViolationQualification(read: !write, write: write)
            return .l2Exit(L2Exit(reason: .eptViolation, qualification: qualification.rawValue, guestPhysicalAddress: address,
                                  guestState: try l2.exitState(regs)))
        case .shutdown, .hlt:
            // At CPL 3, HLT and CPUID (with CPUID faulting) raise #GP, which L2, without an
            // IDT, cannot take: L0 reads the instruction to tell them from a triple fault.
            let regs = try stopped()
            let bytes = l2.read(linear: regs.rip, count: 2) ?? []
            if bytes.first == 0xF4 {
                return .l2Exit(L2Exit(reason: .hlt, instructionLength: 1, guestState: try l2.exitState(regs)))
            }
            if bytes == [0x0F, 0xA2] {
                return .l2Exit(L2Exit(reason: .cpuid, instructionLength: 2, guestState: try l2.exitState(regs)))
            }
            return .l2Exit(L2Exit(reason: .tripleFault, guestState: try l2.exitState(regs)))
        case .internalError, .failEntry, .other:
            // An instruction fetch from L2-physical memory no slot maps: an EPT violation
            // (fetch) when L1's EPT does not map it either.
            let regs = try stopped()
            if let physical = try? l2.vcpu.translate(regs.rip), !l2.maps(physical) {
                let qualification = EPTViolationQualification(read: true, instructionFetch: true)
                return .l2Exit(L2Exit(reason: .eptViolation, qualification: qualification.rawValue, guestPhysicalAddress: physical,
                                      guestState: try l2.exitState(regs)))
            }
            return .internalError("L2: unexpected KVM exit \(exit) at RIP 0x\(String(regs.rip, radix: 16))")
        }
    }

    /// Writes L1's registers back after a gate instruction (RIP still at the out: KVM
    /// completes it on the next run) and shows L0's shadow VMCS to the microcode page.
    private func finishGate(_ regs: kvm_regs) throws(BackendError) {
        atGate = nil
        do { try vcpu.setRegisters(regs) } catch { throw .internalError("\(error)") }
        gate?.publish()
    }

    /// The value the guest's `in` reads.
    public func completeIn(_ value: UInt32, size: Int) { vcpu.completeIOIn(value, size: size) }
}
#endif
