#if os(Linux)
import CKVM
import Glibc
import KVM
public import Partitioner
import VMX

/// What L0 gives an LPAR created with vmm on this backend: the VMX microcode page (the built
/// `vmx-microcode.bin`) and the capabilities it reports.
public struct KVMVMXSupport: Sendable {
    public var microcode: [UInt8]
    /// IA32_VMX_MISC bit 29: VMWRITE may write the VM-exit information fields.
    public var vmwriteToReadOnlyFields: Bool

    public init(microcode: [UInt8], vmwriteToReadOnlyFields: Bool = true) {
        self.microcode = microcode
        self.vmwriteToReadOnlyFields = vmwriteToReadOnlyFields
    }
}

/// The VMX gate and microcode page of one LPAR's vCPU 0 (docs/vmx-gate.md): the read-only
/// area (microcode, control page, bitmaps) L0 fills, the shadow VMCS page in the LPAR's
/// memory, and the nested-VMX core both sides share.
final class VMXGate {
    let core: NestedVMXCore
    let kvm: KVM
    /// The LPAR's memory (L1-physical 0) and its size.
    let memory: UnsafeMutableRawPointer
    let memorySize: UInt64
    /// The L2 guests, by the address of their VMCS region in L1's memory.
    var guests: [UInt64: L2Guest] = [:]
    /// Bumped by every INVEPT: L2's slots are rebuilt from L1's EPT at the next entry.
    var eptGeneration: UInt64 = 0
    /// The read-only area, mapped at `GuestABI.VMX.microcode`.
    let area: UnsafeMutableRawPointer
    /// The shadow VMCS page in the LPAR's memory.
    let shadow: UnsafeMutableRawPointer
    let slotCount: Int

    init(core: NestedVMXCore, kvm: KVM, microcode: [UInt8], area: UnsafeMutableRawPointer, memory: UnsafeMutableRawPointer,
         memorySize: UInt64) throws(BackendError) {
        guard !microcode.isEmpty, microcode.count <= 0x1000 else {
            throw .invalidConfiguration("the VMX microcode image is \(microcode.count) bytes; it must fit one 4 KiB page")
        }
        self.core = core
        self.kvm = kvm
        self.memory = memory
        self.memorySize = memorySize
        self.area = area
        self.shadow = memory + Int(GuestABI.VMX.shadow)
        let fields = core.vmx.shadowFields?.all ?? []
        guard fields.count <= GuestABI.VMX.maxFields else { throw .invalidConfiguration("too many shadowed fields") }
        slotCount = fields.count
        area.initializeMemory(as: UInt8.self, repeating: 0, count: Int(GuestABI.VMX.readOnlySize))
        microcode.withUnsafeBytes { area.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let control = area + Int(GuestABI.VMX.control - GuestABI.VMX.microcode)
        control.storeBytes(of: UInt32(fields.count), toByteOffset: GuestABI.VMX.controlFieldCount, as: UInt32.self)
        for (index, field) in fields.enumerated() {
            control.storeBytes(of: field.rawValue, toByteOffset: GuestABI.VMX.controlFields + index * 4, as: UInt32.self)
        }
        let read = core.vmx.vmreadBitmap.page, write = core.vmx.vmwriteBitmap.page
        read.withUnsafeBytes { (area + Int(GuestABI.VMX.vmreadBitmap - GuestABI.VMX.microcode)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        write.withUnsafeBytes { (area + Int(GuestABI.VMX.vmwriteBitmap - GuestABI.VMX.microcode)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        shadow.initializeMemory(as: UInt8.self, repeating: 0, count: 0x1000)
    }

    private var control: UnsafeMutableRawPointer { area + Int(GuestABI.VMX.control - GuestABI.VMX.microcode) }

    /// L1 may have written shadowed fields through the microcode page: L0 takes them before
    /// it emulates anything.
    func absorb() {
        guard control.load(fromByteOffset: GuestABI.VMX.controlActive, as: UInt32.self) != 0 else { return }
        let slots = (0..<slotCount).map { shadow.load(fromByteOffset: $0 * 8, as: UInt64.self) }
        core.vmx.absorbShadowSlots(slots)
    }

    /// After L0 changed the shadow VMCS (or linked or unlinked one): the page and the control
    /// page's active flag say so.
    func publish() {
        if let slots = core.vmx.shadowSlots {
            for (index, value) in slots.enumerated() { shadow.storeBytes(of: value, toByteOffset: index * 8, as: UInt64.self) }
            control.storeBytes(of: 1, toByteOffset: GuestABI.VMX.controlActive, as: UInt32.self)
        } else {
            control.storeBytes(of: 0, toByteOffset: GuestABI.VMX.controlActive, as: UInt32.self)
        }
    }

    /// L2's RAX and RDX at VMLAUNCH/VMRESUME (the gate itself uses those registers).
    var spilled: (rax: UInt64, rdx: UInt64) {
        (shadow.load(fromByteOffset: GuestABI.VMX.spillRAX, as: UInt64.self),
         shadow.load(fromByteOffset: GuestABI.VMX.spillRDX, as: UInt64.self))
    }

    /// The L2 guest of the current VMCS, made on its first entry.
    func guest(for region: UInt64) throws(KVMError) -> L2Guest {
        if let guest = guests[region] { return guest }
        // A bounded number of L2 VMs: the one least recently made goes first.
        if guests.count >= 64, let oldest = guests.keys.min() { guests[oldest] = nil }
        let guest = try L2Guest(kvm: kvm, memory: memory, memorySize: memorySize)
        guests[region] = guest
        return guest
    }

    /// VMREADs and VMWRITEs the microcode served without an exit.
    var served: (reads: UInt64, writes: UInt64) {
        (shadow.load(fromByteOffset: GuestABI.VMX.readsServed, as: UInt64.self),
         shadow.load(fromByteOffset: GuestABI.VMX.writesServed, as: UInt64.self))
    }

    /// The instruction L1 asked the gate for, from its registers.
    static func decode(_ operation: UInt32, _ regs: kvm_regs) -> VCPUExit {
        // L1's ring 0 runs at CPL 3 on this backend (ring compression): L0 checks VMX
        // instructions as coming from L1's kernel, with CR4.VMXE set by L0.
        let context = L1InstructionContext.kernel
        guard let op = GuestABI.VMX.Operation(rawValue: operation) else {
            return .internalError("the VMX gate has no operation \(operation)")
        }
        switch op {
        case .vmxon: return .vmxInstruction(.vmxon(region: regs.rdi), context: context)
        case .vmxoff: return .vmxInstruction(.vmxoff, context: context)
        case .vmclear: return .vmxInstruction(.vmclear(region: regs.rdi), context: context)
        case .vmptrld: return .vmxInstruction(.vmptrld(region: regs.rdi), context: context)
        case .vmptrst: return .vmxInstruction(.vmptrst, context: context)
        case .vmread: return .vmxInstruction(.vmread(encoding: regs.rdi), context: context)
        case .vmwrite: return .vmxInstruction(.vmwrite(encoding: regs.rdi, value: regs.rsi), context: context)
        case .vmlaunch: return .vmxInstruction(.vmlaunch, context: context)
        case .vmresume: return .vmxInstruction(.vmresume, context: context)
        case .invept: return .vmxInstruction(.invept(type: regs.rdi), context: context)
        case .invvpid: return .vmxInstruction(.invvpid(type: regs.rdi, vpid: UInt16(truncatingIfNeeded: regs.rsi)), context: context)
        case .rdmsr: return .msrRead(index: UInt32(truncatingIfNeeded: regs.rdi))
        }
    }
}
#endif
