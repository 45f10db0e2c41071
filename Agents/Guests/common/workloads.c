#include "workloads.h"

#define READ 1
#define WRITE 2
#define SECTORS_4K 8

uint64_t compute_round(uint64_t x) {
    for (int i = 0; i < 4096; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; }
    return x;
}

void workload_begin(struct workload_context *c) {
    c->position = 0;
    c->hash = 0xcbf29ce484222325ull;
    c->state = 0;
}

int iometer_step(struct workload_context *c) {
    uint64_t left = c->disk_sectors - c->position;
    uint32_t sectors = (uint32_t)(left < SECTORS_4K ? left : SECTORS_4K);
    if (sectors == 0) return -1;
    if (c->io(c->position, sectors, READ, c->buffer) != 0) { c->counters->errors++; return -1; }
    for (uint64_t i = 0; i < (uint64_t)sectors * 512; i++) {
        c->hash ^= c->buffer[i];
        c->hash *= 0x100000001b3ull;
    }
    c->counters->operations++;
    c->counters->bytes += (uint64_t)sectors * 512;
    c->position += sectors;
    if (c->position >= c->disk_sectors) {
        c->counters->checksum = c->hash;
        __asm__ volatile("" ::: "memory");
        c->counters->passes++;
        c->hash = 0xcbf29ce484222325ull;
        c->position = 0;
    }
    return 0;
}

int sysbench_transaction(struct workload_context *c) {
    /* The data: all of the disk but the journal ring (its last 64 KiB). */
    if (c->disk_sectors < 256) return -1;
    uint64_t data_pages = (c->disk_sectors - 128) / SECTORS_4K;
    uint64_t x = c->state ^ 0x9e3779b97f4a7c15ull ^ c->position;
    /* Statement CPU of the model: 35+90+70+110+130+80+60+60+70+15+40 us of server time
     * and 10 us of client time per statement, about 1 ms: 14 statements of 12 rounds. */
    for (int statement = 0; statement < 14; statement++) {
        for (int r = 0; r < 12; r++) x = compute_round(x);
        if (statement < 10) {   /* the selects and updates miss the buffer pool twice each */
            for (int miss = 0; miss < 2; miss++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                uint64_t page = x % data_pages;
                if (c->io(page * SECTORS_4K, SECTORS_4K, READ, c->buffer) != 0) { c->counters->errors++; return -1; }
                c->counters->bytes += 4096;
                x ^= c->buffer[(x >> 3) & 4095];
            }
        }
    }
    /* Commit: two journal blocks. */
    for (int j = 0; j < 2; j++) {
        uint64_t slot = (c->position * 2 + (uint64_t)j) % 16;
        for (int i = 0; i < 4096; i += 8) *(uint64_t *)(c->buffer + i) = x + (uint64_t)i;
        if (c->io(c->disk_sectors - 128 + slot * SECTORS_4K, SECTORS_4K, WRITE, c->buffer) != 0) { c->counters->errors++; return -1; }
    }
    c->state = x;
    c->position++;
    c->counters->operations++;
    return 0;
}
