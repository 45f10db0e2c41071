/* Entry point: L0 starts the vCPU here in 64-bit long mode at CPL 3 (IOPL 3), with paging
 * on and the stack set. */
    .section .text.entry, "ax"
    .global _start
_start:
    cld
    call guest_main
    mov $0x530, %dx
1:  outl %eax, (%dx)
    jmp 1b

/* A triple fault on purpose: with no IDT, any exception is one. */
    .global triple_fault
triple_fault:
    ud2
    .section .note.GNU-stack, "", @progbits
