/* The LPAR guest ABI of Nestor's KVM backend (docs/kvm-backend.md): memory layout, ports,
 * and the management mailbox. Shared by the guest images; the L0 side mirrors it in Swift. */
#ifndef NESTOR_ABI_H
#define NESTOR_ABI_H

#include <stdint.h>

/* The guest starts in 64-bit long mode at CPL 3 with IOPL 3 (port I/O allowed), paging on
 * (an identity map of its memory), no IDT (an exception is a triple fault).
 * Guest-physical layout set up by L0 before the first instruction. */
#define ABI_GDT            0x0500ull
#define ABI_PML4           0x1000ull
#define ABI_PDPT           0x2000ull
#define ABI_PD             0x20000ull  /* one page per GiB (at most 64): 2 MiB pages */
#define ABI_MAILBOX        0x8000ull
#define ABI_IMAGE          0x100000ull /* load address and entry point (1 MiB) */
#define ABI_IMAGE_MAX      0x100000ull /* an image may be at most 1 MiB */
#define ABI_AP_ENTRY       (ABI_IMAGE + 8) /* where vCPUs other than 0 start, RDI = vCPU index */
#define ABI_MAX_VCPUS      16
#define ABI_STACK_TOP      0x300000ull /* vCPU i's stack: 64 KiB below ABI_STACK_TOP - i * 64 KiB */
#define ABI_HEAP           0x400000ull /* free for the guest from 4 MiB */
#define ABI_MIN_MEMORY     0x800000ull /* an LPAR needs at least 8 MiB */

/* Ports. */
#define PORT_CONSOLE       0x3f8       /* out8: one byte of console output */
#define PORT_BLOCK         0x500       /* out32: GPA of a struct block_request; one exit per I/O */
#define PORT_TIMER         0x510       /* in32: milliseconds since the LPAR started */
#define PORT_EXIT_PROBE    0x520       /* out32: does nothing; the exit round-trip probe */
#define PORT_IDLE          0x530       /* out32: nothing to do until the next tick (about 1 ms) */

#define BLOCK_READ         1
#define BLOCK_WRITE        2
#define BLOCK_OK           0
#define BLOCK_OUT_OF_RANGE 1           /* outside the LPAR's disk (its LUN range) */
#define BLOCK_BAD_BUFFER   2           /* the buffer is not inside the LPAR's memory */
#define BLOCK_IO_ERROR     3
#define BLOCK_BAD_REQUEST  4
#define BLOCK_SECTOR       512

struct block_request {
    uint64_t lba;       /* in 512-byte sectors, from the start of the LPAR's disk */
    uint32_t sectors;
    uint32_t op;        /* BLOCK_READ or BLOCK_WRITE */
    uint64_t buffer;    /* guest-physical address */
    uint32_t status;    /* written by L0 */
    uint32_t reserved;
};

/* The management mailbox: L0 writes commands, the guest writes state and counters. */
#define MAILBOX_MAGIC      0x4d54534eu /* "NSTM" */
#define CMD_NONE           0
#define CMD_WORKLOAD       1           /* run the workload in `argument` */
#define CMD_CRASH          2           /* triple-fault on purpose */
#define CMD_READ_LBA       3           /* read one sector at LBA `argument`; status in probe_status */
#define CMD_PEEK           4           /* read the byte at guest-physical `argument` (outside memory: a wild access) */
#define CMD_EXIT_LOOP      5           /* `argument` times: out32 to PORT_EXIT_PROBE, then report */
/* Commands of the guest hypervisor image (l1-vmm). */
#define CMD_VMX_CHECKS     6           /* VMX instructions through the gate: bit i of probe_value = check i passed */
#define CMD_VMREAD_LOOP    7           /* argument = field | count << 32: VMREADs; probe_value = the value */
#define CMD_VMWRITE        8           /* argument = field | value << 32; probe_status = outcome, probe_value = error */
#define CMD_L2_TEST        9           /* run the L2 test program to its end; probe_value = exits handled */
#define CMD_VM_CREATE      10          /* argument = slot | workload << 8: an L2 VM; probe_status = 0 or why not */
#define CMD_VM_DELETE      11          /* argument = slot */
#define WORKLOAD_IDLE      0
#define WORKLOAD_DISK_READ 1
#define WORKLOAD_COMPUTE   2
#define WORKLOAD_SYSBENCH  3

#define STATE_BOOTING      0
#define STATE_READY        1
#define STATE_RUNNING      2

struct mailbox {
    uint32_t magic;            /* L0 */
    uint32_t command_seq;      /* L0: bumped for each new command */
    uint32_t command;          /* L0 */
    uint32_t reserved0;
    uint64_t argument;         /* L0 */
    uint64_t disk_sectors;     /* L0: size of the LPAR's disk */
    uint64_t memory_bytes;     /* L0: size of the LPAR's memory */
    uint32_t ack_seq;          /* guest: the last command it took */
    uint32_t state;            /* guest */
    uint32_t workload;         /* guest: the workload running */
    uint32_t probe_status;     /* guest: result of CMD_READ_LBA */
    uint64_t operations;       /* guest: 4 KiB reads (disk-read) or rounds (compute) */
    uint64_t bytes;            /* guest: bytes read */
    uint64_t passes;           /* guest: full passes over the disk */
    uint64_t checksum;         /* guest: FNV-1a 64 of the last full pass */
    uint64_t errors;           /* guest: device errors */
    uint64_t probe_value;      /* guest: result of CMD_PEEK or CMD_EXIT_LOOP's count */
    uint64_t compute_state;    /* guest: the compute workload's running value */
    uint32_t vcpus;            /* L0: how many vCPUs the LPAR has */
    uint32_t reserved1;
    uint64_t cpu_operations[ABI_MAX_VCPUS]; /* guest: compute rounds of each vCPU */
};

/* The guest hypervisor's L2 VMs, one report per slot at VM_TABLE (written by l1-vmm). */
#define VM_TABLE           (ABI_MAILBOX + 0x400)
#define VM_SLOTS           4
#define VM_FREE            0
#define VM_RUNNING         1
#define VM_HALTED          2
#define VM_FAILED          3

struct vm_report {
    uint32_t state;
    uint32_t workload;         /* L2_WORKLOAD_* of l2-abi.h */
    uint64_t exits;            /* VM exits L1 handled */
    uint64_t disk_first;       /* its slice of the LPAR's disk, in sectors */
    uint64_t disk_sectors;
    uint64_t operations;       /* the workload's counters (struct workload_counters) */
    uint64_t bytes;
    uint64_t passes;
    uint64_t checksum;
    uint64_t errors;
    uint64_t failure;          /* the exit reason that ended it, when failed */
};

#endif
