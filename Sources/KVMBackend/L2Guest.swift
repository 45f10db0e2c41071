#if os(Linux)
import CKVM
import Glibc
import KVM
import Partitioner
import VMX

/// One L2 guest as L0 runs it on KVM: a KVM virtual machine and vCPU of its own, whose
/// memory slots L0 builds from L1's EPT tables (shadow EPT). L2 runs at CPL 3 with L0's flat
/// segments (ring compression, as L1 does); its CR3, RIP, RSP, RFLAGS and general registers
/// are those of vmcs12 and of L1 at the VM entry.
final class L2Guest {
    let vm: KVMVirtualMachine
    let vcpu: KVMVCPU
    /// The LPAR's memory, which L1's EPT maps L2 into.
    let memory: UnsafeMutableRawPointer
    let memorySize: UInt64
    /// The EPT pointer and INVEPT generation the slots were built for.
    private(set) var builtFor: (eptp: UInt64, generation: UInt64)?
    /// The slots in use: L2-physical start, size, L1-physical start, read-only.
    private(set) var slots: [Mapping] = []
    /// The state vmcs12 gave L2 at the last entry; an exit saves into a copy of it.
    var entryState = VMCSState()

    struct Mapping: Equatable {
        var l2: UInt64
        var size: UInt64
        var l1: UInt64
        var writable: Bool
    }

    /// Whether KVM took CPUID faulting for L2's vCPU (MSR_PLATFORM_INFO bit 31, then
    /// MSR_MISC_FEATURES_ENABLES bit 0): a CPUID of L2 at CPL 3 then raises #GP, which L0
    /// reflects as a CPUID exit. Where KVM never sees L2's CPUID (kvm_pvm runs it natively in
    /// user mode), it has no effect.
    let cpuidFaulting: Bool

    init(kvm: KVM, memory: UnsafeMutableRawPointer, memorySize: UInt64) throws(KVMError) {
        vm = try kvm.createVM()
        try vm.setTSSAddress(0xfffb_d000)
        vcpu = try vm.createVCPU(id: 0)
        self.memory = memory
        self.memorySize = memorySize
        cpuidFaulting = (try? vcpu.setMSR(0xCE, 1 << 31)) != nil && (try? vcpu.setMSR(0x140, 1)) != nil
    }

    // MARK: Memory from L1's EPT

    /// Builds the memory slots from the EPT tables at `eptp` when they may have changed
    /// (another EPT pointer, or an INVEPT since they were built).
    func prepareMemory(eptp: UInt64, generation: UInt64, l1: any GuestMemory, force: Bool = false) throws(KVMError) {
        if !force, let builtFor, builtFor.eptp == eptp, builtFor.generation == generation { return }
        try removeSlots()
        for mapping in Self.mappings(eptp: eptp, memory: l1, memorySize: memorySize) {
            try add(mapping)
        }
        builtFor = (eptp, generation)
    }

    /// Without EPT, L2-physical is L1-physical: the LPAR's memory, less its VMX area.
    func prepareIdentity() throws(KVMError) {
        if builtFor?.eptp == ~0 { return }
        try removeSlots()
        let hole = GuestABI.VMX.microcode, after = hole + GuestABI.VMX.readOnlySize
        try add(Mapping(l2: 0, size: hole, l1: 0, writable: true))
        try add(Mapping(l2: after, size: memorySize - after, l1: after, writable: true))
        builtFor = (~0, 0)
    }

    /// The EPT pointer the slots were built from.
    var builtEPTP: UInt64? { builtFor.flatMap { $0.eptp == ~0 ? nil : $0.eptp } }

    /// True when a slot maps L2-physical `address`.
    func maps(_ address: UInt64) -> Bool { slots.contains { address >= $0.l2 && address < $0.l2 + $0.size } }

    private func removeSlots() throws(KVMError) {
        for index in slots.indices {
            try vm.setUserMemoryRegion(slot: UInt32(index), guestPhysical: slots[index].l2, size: 0, host: memory)
        }
        slots = []
        builtFor = nil
    }

    /// Maps one more range (a mapping L1 made without INVEPT, found at a fault).
    func add(_ mapping: Mapping) throws(KVMError) {
        guard !slots.contains(where: { $0.l2 < mapping.l2 + mapping.size && mapping.l2 < $0.l2 + $0.size }) else { return }
        try vm.setUserMemoryRegion(slot: UInt32(slots.count), guestPhysical: mapping.l2, size: mapping.size,
                                   host: memory + Int(mapping.l1), readOnly: !mapping.writable)
        slots.append(mapping)
    }

    /// Every present leaf of L1's EPT that lands in the LPAR's memory (and not in its VMX
    /// area), as ranges contiguous in both address spaces.
    static func mappings(eptp: UInt64, memory: any GuestMemory, memorySize: UInt64) -> [Mapping] {
        let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
        var leaves: [Mapping] = []
        func walk(_ table: UInt64, level: Int, base: UInt64, permissions: UInt64) {
            for index in 0..<512 {
                guard leaves.count < 4096, let entry = try? memory.read64(table + UInt64(index) * 8) else { return }
                let rwx = entry & 7 & permissions
                guard entry & 7 != 0, rwx & 1 != 0 else { continue }   // not present, or not readable
                let shift = UInt64(12 + 9 * (level - 1))
                let address = base | (UInt64(index) << shift)
                if level == 1 || (entry & (1 << 7) != 0 && level <= 3) {
                    let size: UInt64 = 1 << shift
                    let target = entry & addressMask & ~(size - 1)
                    leaves.append(Mapping(l2: address, size: size, l1: target, writable: rwx & 2 != 0))
                } else {
                    walk(entry & addressMask, level: level - 1, base: address, permissions: rwx)
                }
            }
        }
        walk(eptp & addressMask, level: 4, base: 0, permissions: 7)
        // Only L1's own memory, never the read-only VMX area or anything past the LPAR.
        let hole = GuestABI.VMX.microcode..<(GuestABI.VMX.microcode + GuestABI.VMX.readOnlySize)
        var usable: [Mapping] = []
        for leaf in leaves where leaf.l1 + leaf.size <= memorySize {
            if hole.overlaps(leaf.l1..<(leaf.l1 + leaf.size)) { continue }
            usable.append(leaf)
        }
        usable.sort { $0.l2 < $1.l2 }
        var merged: [Mapping] = []
        for leaf in usable {
            if var last = merged.last, last.l2 + last.size == leaf.l2, last.l1 + last.size == leaf.l1, last.writable == leaf.writable {
                last.size += leaf.size
                merged[merged.count - 1] = last
            } else {
                merged.append(leaf)
            }
        }
        return merged
    }

    // MARK: State

    /// Loads the vCPU for a VM entry: vmcs12's guest state and L1's general registers.
    func enter(_ entry: L2Entry, registers: kvm_regs, spilledRAX: UInt64, spilledRDX: UInt64) throws(KVMError) {
        entryState = entry.guestState
        let state = entry.guestState
        var sregs = try vcpu.specialRegisters()
        var code = kvm_segment()
        code.base = 0; code.limit = 0xffff_ffff; code.selector = 0x1b; code.type = 11; code.present = 1
        code.dpl = 3; code.db = 0; code.s = 1; code.l = 1; code.g = 1
        var data = kvm_segment()
        data.base = 0; data.limit = 0xffff_ffff; data.selector = 0x23; data.type = 3; data.present = 1
        data.dpl = 3; data.db = 1; data.s = 1; data.l = 0; data.g = 1
        sregs.cs = code
        sregs.ds = data; sregs.es = data; sregs.ss = data
        sregs.fs = data; sregs.gs = data
        sregs.fs.base = state[.guestFSBase]
        sregs.gs.base = state[.guestGSBase]
        sregs.gdt.base = state[.guestGDTRBase]
        sregs.gdt.limit = UInt16(truncatingIfNeeded: state[.guestGDTRLimit])
        sregs.cr3 = state[.guestCR3]
        sregs.cr4 = 1 << 5                                        // PAE
        sregs.cr0 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 31)    // PE, ET, NE, PG
        sregs.efer = (1 << 8) | (1 << 10)                        // LME, LMA
        try vcpu.setSpecialRegisters(sregs)
        var regs = registers
        regs.rax = spilledRAX
        regs.rdx = spilledRDX
        regs.rip = state.rip
        regs.rsp = state.rsp
        regs.rflags = state.rflags | 0x2
        try vcpu.setRegisters(regs)
    }

    /// L2's state at an exit, in vmcs12's terms: the entry state with what L2 can change.
    func exitState(_ regs: kvm_regs) throws(KVMError) -> VMCSState {
        var state = entryState
        let sregs = try vcpu.specialRegisters()
        state[.guestRIP] = regs.rip
        state[.guestRSP] = regs.rsp
        state[.guestRFLAGS] = regs.rflags
        state[.guestCR3] = sregs.cr3
        return state
    }

    /// Bytes at L2's linear address `linear` (through L2's paging and L1's EPT), or nil.
    func read(linear: UInt64, count: Int) -> [UInt8]? {
        guard let physical = try? vcpu.translate(linear) else { return nil }
        guard let slot = slots.first(where: { physical >= $0.l2 && physical + UInt64(count) <= $0.l2 + $0.size }) else { return nil }
        let l1 = slot.l1 + (physical - slot.l2)
        return Array(UnsafeRawBufferPointer(start: memory + Int(l1), count: count))
    }

    /// The I/O instruction that ends at `end` (KVM's RIP after it) and matches the exit's
    /// port and size: the longest such decoding, so that its prefixes belong to it.
    func ioInstruction(endingAt end: UInt64, port: UInt16, size: Int)
        -> (start: UInt64, decoded: (length: UInt32, immediate: Bool, string: Bool, repeated: Bool))? {
        for back in stride(from: 4, through: 1, by: -1) where end >= UInt64(back) {
            let start = end - UInt64(back)
            guard let decoded = ioInstruction(at: start), decoded.length == UInt32(back),
                  let bytes = read(linear: start, count: back) else { continue }
            let opcode = bytes[back - (decoded.immediate ? 2 : 1)]
            let operandSize = opcode & 1 == 0 ? 1 : (bytes.prefix(back - 1).contains(0x66) ? 2 : 4)
            if decoded.immediate && UInt16(bytes[back - 1]) != port { continue }
            if operandSize != size { continue }
            return (start, decoded)
        }
        return nil
    }

    /// The length of the I/O instruction at `rip` and whether its port is an immediate
    /// (prefixes 0x66, 0xF2, 0xF3; opcodes E4-E7 with an imm8, EC-EF and 6C-6F without).
    func ioInstruction(at rip: UInt64) -> (length: UInt32, immediate: Bool, string: Bool, repeated: Bool)? {
        guard let bytes = read(linear: rip, count: 8) else { return nil }
        var index = 0
        var repeated = false
        while index < 4, [0x66, 0xF2, 0xF3].contains(bytes[index]) {
            if bytes[index] != 0x66 { repeated = true }
            index += 1
        }
        switch bytes[index] {
        case 0xE4...0xE7: return (UInt32(index + 2), true, false, false)
        case 0xEC...0xEF: return (UInt32(index + 1), false, false, false)
        case 0x6C...0x6F: return (UInt32(index + 1), false, true, repeated)
        default: return nil
        }
    }
}
#endif
