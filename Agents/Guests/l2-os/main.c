/* The guest of an L2 VM: runs the workload its guest hypervisor started it with, on the
 * virtual disk its guest hypervisor emulates, and keeps its counters in the report page. */
#include "abi.h"
#include "../common/workloads.h"
#include "l2-abi.h"

static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }

static volatile struct block_request *const request = (volatile struct block_request *)L2_REQUEST;

static uint32_t virtual_disk(uint64_t lba, uint32_t sectors, uint32_t op, uint8_t *buffer) {
    request->lba = lba;
    request->sectors = sectors;
    request->op = op;
    request->buffer = (uint64_t)buffer;
    request->status = 0xffffffffu;
    __asm__ volatile("" ::: "memory");
    outl(L2_PORT_BLOCK, (uint32_t)L2_REQUEST);
    __asm__ volatile("" ::: "memory");
    return request->status;
}

void l2_main(uint64_t workload, uint64_t disk_sectors) {
    struct workload_context c = {
        .io = virtual_disk, .disk_sectors = disk_sectors, .buffer = (uint8_t *)L2_BUFFER,
        .counters = (volatile struct workload_counters *)L2_REPORT,
    };
    workload_begin(&c);
    for (;;) {
        if (workload == L2_WORKLOAD_IOMETER) { if (iometer_step(&c) != 0) break; }
        else if (workload == L2_WORKLOAD_SYSBENCH) { if (sysbench_transaction(&c) != 0) break; }
        else if (workload == L2_WORKLOAD_SPIN) { c.state = compute_round(c.state + 1); c.counters->operations++; }
        else __asm__ volatile("hlt");
    }
    for (;;) __asm__ volatile("hlt");   /* a device error: L2 stops working, L1 sees HLTs */
}
