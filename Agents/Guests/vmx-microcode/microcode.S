/* Nestor's VMX microcode page (docs/vmx-gate.md). L0 maps it read-only at VMX_MICROCODE in
 * every LPAR created with vmm, beside its control page and its VMREAD/VMWRITE bitmaps (also
 * read-only) and the shadow VMCS page. L1 calls the same entry points whether shadowing is
 * on or off: a field the bitmaps let pass is read or written in the shadow VMCS page without
 * any exit; everything else traps to L0 through the VMX gate, as the instruction would.
 *
 * vmx_vmread   at +0x00: RDI = field encoding; RAX = value; RFLAGS as VMREAD sets them.
 * vmx_vmwrite  at +0x80: RDI = field encoding, RSI = value; RFLAGS as VMWRITE sets them.
 * Both clobber RCX and RDX; every other register is kept. */
#include "vmx-abi.h"

    .code64
    .text
    .globl _start
_start:
vmx_vmread:
    cmpl $0, VMX_CONTROL                 /* shadowing on and a VMCS current? */
    je 1f
    cmp $0x7fff, %rdi                    /* bits above 14:0 always trap */
    ja 1f
    bt %rdi, VMX_VMREAD_BITMAP
    jc 1f
    call find_slot
    jc 1f
    mov VMX_SHADOW(,%rcx,8), %rax
    lock incq VMX_SHADOW + SHADOW_READS_SERVED
    jmp succeed
1:  mov $VMX_OP_VMREAD, %eax
    mov $VMX_GATE_PORT, %dx
    outl %eax, (%dx)                     /* L0 sets RAX and RFLAGS */
    ret

    .balign 128
vmx_vmwrite:
    cmpl $0, VMX_CONTROL
    je 1f
    cmp $0x7fff, %rdi
    ja 1f
    bt %rdi, VMX_VMWRITE_BITMAP
    jc 1f
    call find_slot
    jc 1f
    mov %rsi, %rax
    mov %edi, %edx
    shr $13, %edx
    and $3, %edx                         /* width: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural */
    jnz 2f
    movzwl %ax, %eax
2:  cmp $2, %edx
    jne 3f
    mov %eax, %eax
3:  mov %rax, VMX_SHADOW(,%rcx,8)
    lock incq VMX_SHADOW + SHADOW_WRITES_SERVED
    jmp succeed
1:  mov $VMX_OP_VMWRITE, %eax
    mov $VMX_GATE_PORT, %dx
    outl %eax, (%dx)
    ret

/* RCX = the field's slot in the shadow page (CF clear), or CF set when it has none. */
find_slot:
    xor %ecx, %ecx
    mov VMX_CONTROL + CONTROL_FIELD_COUNT, %edx
4:  cmp %edx, %ecx
    jae 5f
    cmp VMX_CONTROL + CONTROL_FIELDS(,%rcx,4), %edi
    je 6f
    inc %ecx
    jmp 4b
5:  stc
    ret
6:  clc
    ret

/* VMsucceed: CF, PF, AF, ZF, SF and OF cleared; IF, IOPL and the rest kept. */
succeed:
    pushfq
    andq $~0x8d5, (%rsp)
    popfq
    ret
    .section .note.GNU-stack, "", @progbits
