/* The workloads Nestor's guests run, shared by lpar-os (in an LPAR, on L0's block device)
 * and l2-os (in an L2 VM, on its guest hypervisor's virtual disk). */
#ifndef NESTOR_WORKLOADS_H
#define NESTOR_WORKLOADS_H
#include <stdint.h>

/* The counters a workload keeps; the guest reports them (mailbox or report page). */
struct workload_counters {
    uint64_t operations;   /* 4 KiB reads (iometer), transactions (sysbench-oltp) */
    uint64_t bytes;        /* bytes read */
    uint64_t passes;       /* full passes over the disk (iometer) */
    uint64_t checksum;     /* FNV-1a 64 of the last full pass (iometer) */
    uint64_t errors;       /* device errors */
};

/* Reads or writes `sectors` 512-byte sectors at `lba` to or from `buffer`; returns the
 * device's status (0 = ok). */
typedef uint32_t (*block_io_fn)(uint64_t lba, uint32_t sectors, uint32_t op, uint8_t *buffer);

struct workload_context {
    block_io_fn io;
    uint64_t disk_sectors;
    uint8_t *buffer;                 /* 4 KiB */
    volatile struct workload_counters *counters;
    uint64_t position;               /* iometer: next LBA; sysbench: transaction seed */
    uint64_t hash;                   /* iometer: FNV of the pass so far */
    uint64_t state;                  /* sysbench: the running value of its compute */
};

void workload_begin(struct workload_context *c);
/* One 4 KiB sequential read, queue depth 1 (IOmeter: 1 worker, 4 KiB, 100 % read, 0 % random). */
int iometer_step(struct workload_context *c);
/* One OLTP transaction in the shape of the simulated sysbench 0.4.12 OLTP complex: 14
 * statements of compute, 20 buffer-pool misses (4 KiB reads at pseudo-random offsets) and a
 * commit of 2 journal writes (4 KiB, to a ring in the disk's last 64 KiB). */
int sysbench_transaction(struct workload_context *c);
/* One round of the compute workload (4,096 xorshift steps). */
uint64_t compute_round(uint64_t x);

#endif
