/* VM entry and VM exit of the guest hypervisor (L1), as a hypervisor's own run loop does
 * them (Linux KVM's __vmx_vcpu_run): L1's callee-saved registers are kept on its stack, L2's
 * general registers are loaded from a struct l2_gprs before VMLAUNCH/VMRESUME through the
 * gate and stored back into it at the VM exit (HOST_RIP = l2_vm_exit). */
#include "vmx-abi.h"

/* struct l2_gprs: rax rbx rcx rdx rsi rdi rbp r8 r9 r10 r11 r12 r13 r14 r15 (8 bytes each) */
#define G_RAX 0
#define G_RBX 8
#define G_RCX 16
#define G_RDX 24
#define G_RSI 32
#define G_RDI 40
#define G_RBP 48
#define G_R8  56
#define G_R9  64
#define G_R10 72
#define G_R11 80
#define G_R12 88
#define G_R13 96
#define G_R14 104
#define G_R15 112

    .code64
    .text
/* uint64_t l2_run(struct l2_gprs *gprs, uint32_t op): 0 after a VM exit (gprs holds L2's
 * registers), or RFLAGS with CF or ZF set when the entry failed. */
    .globl l2_run
l2_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, l1_saved_rsp(%rip)
    mov %rdi, l2_gprs(%rip)
    mov G_RAX(%rdi), %rax
    mov %rax, VMX_SHADOW + SHADOW_SPILL_RAX
    mov G_RDX(%rdi), %rax
    mov %rax, VMX_SHADOW + SHADOW_SPILL_RDX
    mov %esi, %eax
    mov G_RBX(%rdi), %rbx
    mov G_RCX(%rdi), %rcx
    mov G_RSI(%rdi), %rsi
    mov G_RBP(%rdi), %rbp
    mov G_R8(%rdi), %r8
    mov G_R9(%rdi), %r9
    mov G_R10(%rdi), %r10
    mov G_R11(%rdi), %r11
    mov G_R12(%rdi), %r12
    mov G_R13(%rdi), %r13
    mov G_R14(%rdi), %r14
    mov G_R15(%rdi), %r15
    mov G_RDI(%rdi), %rdi
    mov $VMX_GATE_PORT, %dx
    outl %eax, (%dx)
    /* Only a failed entry comes back here. */
    pushfq
    pop %rax
    mov l1_saved_rsp(%rip), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* HOST_RIP: RSP = HOST_RSP, every general register L2's. */
    .globl l2_vm_exit
l2_vm_exit:
    push %rdi
    mov l2_gprs(%rip), %rdi
    mov %rax, G_RAX(%rdi)
    mov %rbx, G_RBX(%rdi)
    mov %rcx, G_RCX(%rdi)
    mov %rdx, G_RDX(%rdi)
    mov %rsi, G_RSI(%rdi)
    mov %rbp, G_RBP(%rdi)
    mov %r8, G_R8(%rdi)
    mov %r9, G_R9(%rdi)
    mov %r10, G_R10(%rdi)
    mov %r11, G_R11(%rdi)
    mov %r12, G_R12(%rdi)
    mov %r13, G_R13(%rdi)
    mov %r14, G_R14(%rdi)
    mov %r15, G_R15(%rdi)
    pop %rax
    mov %rax, G_RDI(%rdi)
    mov l1_saved_rsp(%rip), %rsp
    xor %eax, %eax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* The L2 test program, copied into L2's memory at 1 MiB (position-independent). */
    .globl l2_test_program, l2_test_program_end
l2_test_program:
    mov $0x80, %dx
    mov $0x41, %al
    outb %al, (%dx)             /* I/O exit: out, 1 byte, port in DX */
    outb %al, $0x81             /* I/O exit: out, immediate port */
    inb $0x82, %al              /* I/O exit: in; L1 answers 0x5a in AL */
    movzbl %al, %ebx
    hlt                         /* HLT exit */
    mov 0x1000000, %rcx         /* L2-physical 16 MiB, not in L1's EPT yet: EPT violation */
    outb %al, $0x83             /* reports RBX and RCX to L1 */
    ud2                         /* a triple fault, reflected to L1 */
l2_test_program_end:

    .bss
    .balign 8
l1_saved_rsp: .quad 0
l2_gprs: .quad 0
    .section .note.GNU-stack, "", @progbits
