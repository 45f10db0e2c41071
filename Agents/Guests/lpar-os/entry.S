/* Entry points: L0 starts vCPU 0 at the image's first byte and the others at its ninth, in
 * 64-bit long mode at CPL 3 (IOPL 3), with paging on and each vCPU's stack set. */
    .section .text.entry, "ax"
    .global _start
_start:
    jmp bsp_start
    .balign 8
    jmp ap_start            /* image + 8: where L0 starts the other vCPUs, RDI = vCPU index */
bsp_start:
    cld
    call guest_main
    mov $0x530, %dx
1:  outl %eax, (%dx)
    jmp 1b
ap_start:
    cld
    call guest_ap_main
    mov $0x530, %dx
2:  outl %eax, (%dx)
    jmp 2b

/* A triple fault on purpose: with no IDT, any exception is one. */
    .global triple_fault
triple_fault:
    ud2
    .section .note.GNU-stack, "", @progbits
