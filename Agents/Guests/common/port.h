/* What every Nestor guest image does with L0's ports (abi.h): console output, the
 * idle tick, and L0's block device. */
#ifndef NESTOR_PORT_H
#define NESTOR_PORT_H
#include "abi.h"

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void idle_tick(void) { outl(PORT_IDLE, 0); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static inline void puts(const char *s) { while (*s) outb(PORT_CONSOLE, (uint8_t)*s++); }

static inline void putu(uint64_t v) {
    char digits[21];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) outb(PORT_CONSOLE, (uint8_t)digits[--n]);
}

/* 0x and the hex digits of `v`: all 16, or without leading zeros when `trim`. */
static inline void puthex_digits(uint64_t v, int trim) {
    puts("0x");
    int shift = 60;
    while (trim && shift > 0 && ((v >> shift) & 15) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) outb(PORT_CONSOLE, (uint8_t)"0123456789abcdef"[(v >> shift) & 15]);
}

/* One request to L0's block device (one exit); its status. */
static inline uint32_t l0_block(uint64_t lba, uint32_t sectors, uint32_t op, uint64_t target) {
    static struct block_request request __attribute__((aligned(64)));
    request.lba = lba;
    request.sectors = sectors;
    request.op = op;
    request.buffer = target;
    request.status = 0xffffffffu;
    barrier();
    outl(PORT_BLOCK, (uint32_t)(uint64_t)&request);
    barrier();
    return request.status;
}

#endif
