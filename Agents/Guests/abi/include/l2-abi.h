/* What a guest hypervisor (l1-vmm) and its L2 guests (l2-os) agree on. */
#ifndef NESTOR_L2_ABI_H
#define NESTOR_L2_ABI_H
#include <stdint.h>

/* L2-physical layout: GDT at 0x500, identity page tables from 0x1000 (built by L1), the
 * report page, the image at 1 MiB, the stack below 3 MiB, a 4 KiB buffer at 3.5 MiB.
 * An L2 VM has 4 MiB of memory. */
#define L2_GDT         0x500ull
#define L2_PML4        0x1000ull
#define L2_REPORT      0x9000ull
#define L2_REQUEST     0x9100ull
#define L2_IMAGE       0x100000ull
#define L2_IMAGE_MAX   0x10000ull
#define L2_STACK_TOP   0x300000ull
#define L2_BUFFER      0x380000ull
#define L2_MEMORY_SIZE 0x400000ull

/* At its first instruction: RDI = workload, RSI = sectors of its virtual disk. */
#define L2_WORKLOAD_IDLE     0
#define L2_WORKLOAD_IOMETER  1
#define L2_WORKLOAD_SYSBENCH 2
#define L2_WORKLOAD_SPIN     3   /* compute rounds, never an exit */

/* The virtual block device L1 emulates: out32 of the L2-physical address of a
 * struct block_request (abi.h); one exit per request. */
#define L2_PORT_BLOCK  0x600
#define L2_PORT_CONSOLE 0x3f8

#endif
