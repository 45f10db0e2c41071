/* A small guest OS for Nestor LPARs: it reports on the console, then runs what the
 * management mailbox asks for: disk-read (4 KiB sequential reads over its disk, with a
 * checksum per full pass), compute, or idle; it can also crash on purpose. */
#include "abi.h"
#include "../common/port.h"
#include "../common/workloads.h"

void triple_fault(void);

static volatile struct mailbox *const mb = (volatile struct mailbox *)ABI_MAILBOX;
static uint8_t *const buffer = (uint8_t *)ABI_HEAP;

static void puthex(uint64_t v) { puthex_digits(v, 0); }

static uint32_t block_io(uint64_t lba, uint32_t sectors, uint32_t op, uint8_t *target) {
    return l0_block(lba, sectors, op, (uint64_t)target);
}

/* True when a new command has arrived. */
static int command_pending(void) { return mb->command_seq != mb->ack_seq; }

static struct workload_context context(void) {
    struct workload_context c = {
        .io = block_io, .disk_sectors = mb->disk_sectors, .buffer = buffer,
        .counters = (volatile struct workload_counters *)&mb->operations,
    };
    workload_begin(&c);
    return c;
}

/* disk-read: the IOmeter shape, 4 KiB sequential reads over the whole disk. */
static void disk_read(void) {
    struct workload_context c = context();
    while (!command_pending()) {
        uint64_t passes = mb->passes;
        if (iometer_step(&c) != 0) break;
        if (passes == 0 && mb->passes == 1) { puts("disk-read: pass 1 checksum "); puthex(mb->checksum); puts("\n"); }
    }
}

/* sysbench-oltp: OLTP transactions (compute, reads, journal writes) on the LPAR's disk. */
static void sysbench(void) {
    struct workload_context c = context();
    while (!command_pending()) if (sysbench_transaction(&c) != 0) break;
}

static void compute(void) {
    uint64_t x = 0x9e3779b97f4a7c15ull ^ mb->compute_state;
    while (!command_pending()) {
        x = compute_round(x);
        mb->compute_state = x;
        mb->operations++;
        mb->cpu_operations[0]++;
    }
}

static void idle(void) {
    while (!command_pending()) idle_tick();
}

static void run(uint32_t command, uint64_t argument) {
    switch (command) {
    case CMD_WORKLOAD:
        mb->workload = (uint32_t)argument;
        mb->state = STATE_RUNNING;
        if (argument == WORKLOAD_DISK_READ) { puts("workload: disk-read\n"); disk_read(); }
        else if (argument == WORKLOAD_COMPUTE) { puts("workload: compute\n"); compute(); }
        else if (argument == WORKLOAD_SYSBENCH) { puts("workload: sysbench-oltp\n"); sysbench(); }
        else { puts("workload: idle\n"); idle(); }
        break;
    case CMD_CRASH:
        puts("crashing on command\n");
        triple_fault();
        break;
    case CMD_READ_LBA:
        mb->probe_status = l0_block(argument, 1, BLOCK_READ, (uint64_t)buffer);
        break;
    case CMD_PEEK:
        mb->probe_value = *(volatile uint8_t *)argument;
        break;
    case CMD_EXIT_LOOP:
        for (uint64_t i = 0; i < argument; i++) outl(PORT_EXIT_PROBE, (uint32_t)i);
        mb->probe_value = argument;
        break;
    default:
        break;
    }
}

/* vCPUs other than 0: they join the compute workload while it runs, and idle otherwise. */
void guest_ap_main(uint64_t index) {
    uint64_t x = 0x2545f4914f6cdd1dull + index;
    for (;;) {
        if (index < ABI_MAX_VCPUS && mb->state == STATE_RUNNING && mb->workload == WORKLOAD_COMPUTE) {
            x = compute_round(x);
            mb->cpu_operations[index]++;
        } else {
            idle_tick();
        }
    }
}

void guest_main(void) {
    puts("nestor lpar-os: long mode up, memory ");
    putu(mb->memory_bytes >> 20);
    puts(" MiB, disk ");
    putu(mb->disk_sectors);
    puts(" sectors, ");
    putu(mb->vcpus);
    puts(" vCPUs\n");
    mb->state = STATE_READY;
    for (;;) {
        while (!command_pending()) idle_tick();
        uint32_t seq = mb->command_seq;
        barrier();
        uint32_t command = mb->command;
        uint64_t argument = mb->argument;
        mb->ack_seq = seq;
        barrier();
        run(command, argument);
        if (!command_pending()) mb->state = STATE_READY;
    }
}
