/* VMX instructions for a guest hypervisor on Nestor's KVM backend: VMREAD and VMWRITE call
 * the VMX microcode page, the others go through the VMX gate (vmx-abi.h). Each returns the
 * VM-instruction outcome as the hardware's RFLAGS say it. */
#ifndef NESTOR_VMX_H
#define NESTOR_VMX_H
#include <stdint.h>
#include "vmx-abi.h"

#define VMX_OK           0
#define VMX_FAIL_INVALID 1   /* CF */
#define VMX_FAIL_VALID   2   /* ZF: the error number is in VM_INSTRUCTION_ERROR */

static inline int vmx_outcome(uint64_t rflags) {
    if (rflags & 1) return VMX_FAIL_INVALID;
    if (rflags & 0x40) return VMX_FAIL_VALID;
    return VMX_OK;
}

static inline int vmx_gate(uint32_t op, uint64_t a, uint64_t b, uint64_t *result) {
    uint64_t rax, rflags;
    __asm__ volatile("outl %%eax, %%dx\n\tpushfq\n\tpopq %1"
                     : "=a"(rax), "=r"(rflags)
                     : "a"(op), "d"(VMX_GATE_PORT), "D"(a), "S"(b)
                     : "memory", "cc");
    if (result) *result = rax;
    return vmx_outcome(rflags);
}

static inline int vmxon(uint64_t region) { return vmx_gate(VMX_OP_VMXON, region, 0, 0); }
static inline int vmxoff(void) { return vmx_gate(VMX_OP_VMXOFF, 0, 0, 0); }
static inline int vmclear(uint64_t region) { return vmx_gate(VMX_OP_VMCLEAR, region, 0, 0); }
static inline int vmptrld(uint64_t region) { return vmx_gate(VMX_OP_VMPTRLD, region, 0, 0); }
static inline int vmptrst(uint64_t *region) { return vmx_gate(VMX_OP_VMPTRST, 0, 0, region); }
static inline int invept(uint64_t type) { return vmx_gate(VMX_OP_INVEPT, type, 0, 0); }
static inline uint64_t vmx_rdmsr(uint32_t msr) { uint64_t v = 0; vmx_gate(VMX_OP_RDMSR, msr, 0, &v); return v; }

static inline int vmread(uint64_t field, uint64_t *value) {
    uint64_t rax, rflags;
    __asm__ volatile("call *%[entry]\n\tpushfq\n\tpopq %1"
                     : "=a"(rax), "=r"(rflags)
                     : [entry] "r"((uint64_t)VMX_ENTRY_VMREAD), "D"(field)
                     : "rcx", "rdx", "memory", "cc");
    *value = rax;
    return vmx_outcome(rflags);
}

static inline int vmwrite(uint64_t field, uint64_t value) {
    uint64_t rflags;
    __asm__ volatile("call *%[entry]\n\tpushfq\n\tpopq %0"
                     : "=r"(rflags)
                     : [entry] "r"((uint64_t)VMX_ENTRY_VMWRITE), "D"(field), "S"(value)
                     : "rax", "rcx", "rdx", "memory", "cc");
    return vmx_outcome(rflags);
}

static inline uint64_t vmread_or(uint64_t field, uint64_t fallback) {
    uint64_t v;
    return vmread(field, &v) == VMX_OK ? v : fallback;
}

/* Field encodings (SDM Vol. 3D, appendix B; Linux asm/vmx.h). */
#define VIRTUAL_PROCESSOR_ID        0x0000
#define GUEST_ES_SELECTOR           0x0800
#define GUEST_CS_SELECTOR           0x0802
#define GUEST_SS_SELECTOR           0x0804
#define GUEST_DS_SELECTOR           0x0806
#define GUEST_FS_SELECTOR           0x0808
#define GUEST_GS_SELECTOR           0x080a
#define GUEST_LDTR_SELECTOR         0x080c
#define GUEST_TR_SELECTOR           0x080e
#define HOST_ES_SELECTOR            0x0c00
#define HOST_CS_SELECTOR            0x0c02
#define HOST_SS_SELECTOR            0x0c04
#define HOST_DS_SELECTOR            0x0c06
#define HOST_FS_SELECTOR            0x0c08
#define HOST_GS_SELECTOR            0x0c0a
#define HOST_TR_SELECTOR            0x0c0c
#define EPT_POINTER                 0x201a
#define GUEST_PHYSICAL_ADDRESS      0x2400
#define VMCS_LINK_POINTER           0x2800
#define GUEST_IA32_EFER             0x2806
#define HOST_IA32_EFER              0x2c02
#define PIN_BASED_VM_EXEC_CONTROL   0x4000
#define CPU_BASED_VM_EXEC_CONTROL   0x4002
#define EXCEPTION_BITMAP            0x4004
#define VM_EXIT_CONTROLS            0x400c
#define VM_ENTRY_CONTROLS           0x4012
#define VM_ENTRY_INTR_INFO_FIELD    0x4016
#define SECONDARY_VM_EXEC_CONTROL   0x401e
#define VM_INSTRUCTION_ERROR        0x4400
#define VM_EXIT_REASON              0x4402
#define VM_EXIT_INTR_INFO           0x4404
#define VM_EXIT_INSTRUCTION_LEN     0x440c
#define GUEST_ES_LIMIT              0x4800
#define GUEST_CS_LIMIT              0x4802
#define GUEST_SS_LIMIT              0x4804
#define GUEST_DS_LIMIT              0x4806
#define GUEST_FS_LIMIT              0x4808
#define GUEST_GS_LIMIT              0x480a
#define GUEST_LDTR_LIMIT            0x480c
#define GUEST_TR_LIMIT              0x480e
#define GUEST_GDTR_LIMIT            0x4810
#define GUEST_IDTR_LIMIT            0x4812
#define GUEST_ES_AR_BYTES           0x4814
#define GUEST_CS_AR_BYTES           0x4816
#define GUEST_SS_AR_BYTES           0x4818
#define GUEST_DS_AR_BYTES           0x481a
#define GUEST_FS_AR_BYTES           0x481c
#define GUEST_GS_AR_BYTES           0x481e
#define GUEST_LDTR_AR_BYTES         0x4820
#define GUEST_TR_AR_BYTES           0x4822
#define GUEST_INTERRUPTIBILITY_INFO 0x4824
#define GUEST_ACTIVITY_STATE        0x4826
#define VMX_PREEMPTION_TIMER_VALUE  0x482e
#define EXIT_QUALIFICATION          0x6400
#define GUEST_LINEAR_ADDRESS        0x640a
#define GUEST_CR0                   0x6800
#define GUEST_CR3                   0x6802
#define GUEST_CR4                   0x6804
#define GUEST_ES_BASE               0x6806
#define GUEST_CS_BASE               0x6808
#define GUEST_SS_BASE               0x680a
#define GUEST_DS_BASE               0x680c
#define GUEST_FS_BASE               0x680e
#define GUEST_GS_BASE               0x6810
#define GUEST_LDTR_BASE             0x6812
#define GUEST_TR_BASE               0x6814
#define GUEST_GDTR_BASE             0x6816
#define GUEST_IDTR_BASE             0x6818
#define GUEST_DR7                   0x681a
#define GUEST_RSP                   0x681c
#define GUEST_RIP                   0x681e
#define GUEST_RFLAGS                0x6820
#define HOST_CR0                    0x6c00
#define HOST_CR3                    0x6c02
#define HOST_CR4                    0x6c04
#define HOST_FS_BASE                0x6c06
#define HOST_GS_BASE                0x6c08
#define HOST_TR_BASE                0x6c0a
#define HOST_GDTR_BASE              0x6c0c
#define HOST_IDTR_BASE              0x6c0e
#define HOST_RSP                    0x6c14
#define HOST_RIP                    0x6c16

/* Capability MSRs. */
#define MSR_VMX_BASIC               0x480
#define MSR_VMX_PINBASED_CTLS       0x481
#define MSR_VMX_PROCBASED_CTLS      0x482
#define MSR_VMX_EXIT_CTLS           0x483
#define MSR_VMX_ENTRY_CTLS          0x484
#define MSR_VMX_MISC                0x485
#define MSR_VMX_PROCBASED_CTLS2     0x48b
#define MSR_VMX_TRUE_PINBASED_CTLS  0x48d
#define MSR_VMX_TRUE_PROCBASED_CTLS 0x48e
#define MSR_VMX_TRUE_EXIT_CTLS      0x48f
#define MSR_VMX_TRUE_ENTRY_CTLS     0x490

#endif
