/* The l2-os image, which l1-vmm copies into each L2 VM it creates. */
    .section .rodata
    .balign 16
    .globl l2_os_image, l2_os_image_end
l2_os_image:
    .incbin L2_OS_IMAGE
l2_os_image_end:
    .section .note.GNU-stack, "", @progbits
