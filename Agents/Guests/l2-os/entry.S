/* L2's entry: L1 starts it at 1 MiB in 64-bit mode at CPL 3, with its workload in RDI and
 * its disk's size in RSI. */
    .section .text.entry, "ax"
    .global _start
_start:
    cld
    call l2_main
1:  hlt
    jmp 1b
    .section .note.GNU-stack, "", @progbits
