/* The VMX gate and the VMX microcode page of Nestor's KVM backend (docs/vmx-gate.md): how a
 * guest hypervisor (L1) in an LPAR created with vmm executes VMX instructions. Shared by the
 * microcode page and the L1 image (C and assembly); L0 mirrors it in Swift (GuestABI.VMX). */
#ifndef NESTOR_VMX_ABI_H
#define NESTOR_VMX_ABI_H

/* The gate: out32 of the operation (EAX) to VMX_GATE_PORT; operands in RDI and RSI; results
 * in RAX and in RFLAGS (CF: VMfailInvalid, ZF: VMfailValid, both clear: VMsucceed). */
#define VMX_GATE_PORT      0x540
#define VMX_OP_VMXON       1   /* RDI = GPA of the VMXON region */
#define VMX_OP_VMXOFF      2
#define VMX_OP_VMCLEAR     3   /* RDI = GPA of the VMCS region */
#define VMX_OP_VMPTRLD     4   /* RDI = GPA of the VMCS region */
#define VMX_OP_VMPTRST     5   /* RAX = the current-VMCS pointer */
#define VMX_OP_VMREAD      6   /* RDI = field; RAX = value */
#define VMX_OP_VMWRITE     7   /* RDI = field, RSI = value */
#define VMX_OP_VMLAUNCH    8   /* L2's RAX and RDX from the spill slots of the shadow page */
#define VMX_OP_VMRESUME    9
#define VMX_OP_INVEPT      10  /* RDI = type */
#define VMX_OP_INVVPID     11  /* RDI = type, RSI = VPID */
#define VMX_OP_RDMSR       12  /* RDI = MSR index (a VMX capability MSR, 0x480-0x491); RAX = value */

/* Guest-physical layout (below the image, above the page directories). */
#define VMX_MICROCODE      0x70000  /* read-only: the entry points */
#define VMX_CONTROL        0x71000  /* read-only: written by L0 */
#define VMX_VMREAD_BITMAP  0x72000  /* read-only: bit set = VMREAD traps */
#define VMX_VMWRITE_BITMAP 0x73000  /* read-only: bit set = VMWRITE traps */
#define VMX_SHADOW         0x74000  /* read-write: the shadow VMCS, one u64 slot per field */

#define VMX_ENTRY_VMREAD   (VMX_MICROCODE + 0x00)
#define VMX_ENTRY_VMWRITE  (VMX_MICROCODE + 0x80)

/* Control page: u32 active (shadowing on and a VMCS current), u32 count, u32 fields[count]
 * (the encodings of the shadow page's slots, in order). */
#define CONTROL_ACTIVE       0
#define CONTROL_FIELD_COUNT  4
#define CONTROL_FIELDS       8
#define CONTROL_MAX_FIELDS   512

/* Shadow page: u64 slots from 0; counters and the gate's spill slots at the end. */
#define SHADOW_READS_SERVED  0xF00  /* VMREADs the microcode served without an exit */
#define SHADOW_WRITES_SERVED 0xF08  /* VMWRITEs the microcode served without an exit */
#define SHADOW_SPILL_RAX     0xF10  /* L2's RAX at VMLAUNCH/VMRESUME through the gate */
#define SHADOW_SPILL_RDX     0xF18  /* L2's RDX at VMLAUNCH/VMRESUME through the gate */

#endif
