/* Nestor's guest hypervisor (L1) for LPARs created with vmm on the KVM backend. It reaches
 * VMX through L0's VMX gate and VMX microcode page (vmx-abi.h), and takes its commands from
 * the management mailbox like lpar-os. */
#include "../lpar-os/abi.h"
#include "vmx.h"

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
static inline void idle_tick(void) { outl(PORT_IDLE, 0); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static volatile struct mailbox *const mb = (volatile struct mailbox *)ABI_MAILBOX;

/* L1's own memory: VMX regions from 5 MiB. */
#define VMXON_REGION   0x500000ull
#define VMCS_A         0x501000ull
#define VMCS_BAD       0x502000ull

static void puts(const char *s) { while (*s) outb(PORT_CONSOLE, (uint8_t)*s++); }

static void putu(uint64_t v) {
    char digits[21];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) outb(PORT_CONSOLE, (uint8_t)digits[--n]);
}

static void puthex(uint64_t v) {
    puts("0x");
    int shift = 60;
    while (shift > 0 && ((v >> shift) & 15) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) outb(PORT_CONSOLE, (uint8_t)"0123456789abcdef"[(v >> shift) & 15]);
}

static void zero_page(uint64_t address) {
    volatile uint64_t *p = (volatile uint64_t *)address;
    for (int i = 0; i < 512; i++) p[i] = 0;
}

static uint32_t revision(void) { return (uint32_t)(vmx_rdmsr(MSR_VMX_BASIC) & 0x7fffffffu); }

static int in_vmx;

static int ensure_vmxon(void) {
    if (in_vmx) return VMX_OK;
    zero_page(VMXON_REGION);
    *(volatile uint32_t *)VMXON_REGION = revision();
    int outcome = vmxon(VMXON_REGION);
    if (outcome == VMX_OK) in_vmx = 1;
    return outcome;
}

static uint64_t instruction_error(void) { return vmread_or(VM_INSTRUCTION_ERROR, ~0ull); }

/* One check: prints its name and result, and records it in the mailbox. */
static void check(int index, const char *name, int passed) {
    puts(passed ? "vmx check ok: " : "vmx check FAILED: ");
    puts(name);
    puts("\n");
    if (passed) mb->probe_value |= 1ull << index;
    else if (mb->probe_status == 0) mb->probe_status = (uint32_t)index + 1;
}

/* The SDM's VM-instruction errors, produced through the gate on real code. */
static void vmx_checks(void) {
    mb->probe_value = 0;
    mb->probe_status = 0;
    uint64_t basic = vmx_rdmsr(MSR_VMX_BASIC);
    check(0, "IA32_VMX_BASIC has a revision and 4 KiB regions", (basic & 0x7fffffff) != 0 && ((basic >> 32) & 0x1fff) == 4096);
    check(1, "VMXON with the right revision succeeds", ensure_vmxon() == VMX_OK);
    zero_page(VMCS_BAD);
    *(volatile uint32_t *)VMCS_BAD = revision() ^ 0x5a5a;
    check(2, "VMPTRLD of a VMCS with a wrong revision fails with error 11",
          vmptrld(VMCS_BAD) == VMX_FAIL_INVALID); /* no current VMCS yet: VMfailInvalid */
    zero_page(VMCS_A);
    *(volatile uint32_t *)VMCS_A = revision();
    check(3, "VMCLEAR and VMPTRLD of a good VMCS succeed", vmclear(VMCS_A) == VMX_OK && vmptrld(VMCS_A) == VMX_OK);
    check(4, "VMPTRLD of a wrong revision with a current VMCS: VMfailValid, error 11",
          vmptrld(VMCS_BAD) == VMX_FAIL_VALID && instruction_error() == 11);
    uint64_t value = 0;
    check(5, "VMREAD of a field that does not exist: error 12",
          vmread(0x6c1e, &value) == VMX_FAIL_VALID && instruction_error() == 12);
    int misc29 = (int)((vmx_rdmsr(MSR_VMX_MISC) >> 29) & 1);
    int outcome = vmwrite(VM_EXIT_REASON, 1);
    if (misc29) check(6, "VMWRITE to a read-only field with IA32_VMX_MISC bit 29: allowed", outcome == VMX_OK);
    else check(6, "VMWRITE to a read-only field without IA32_VMX_MISC bit 29: error 13",
               outcome == VMX_FAIL_VALID && instruction_error() == 13);
    check(7, "VMRESUME of a VMCS never launched: error 5",
          vmx_gate(VMX_OP_VMRESUME, 0, 0, 0) == VMX_FAIL_VALID && instruction_error() == 5);
    check(8, "VMWRITE then VMREAD of GUEST_RIP gives it back",
          vmwrite(GUEST_RIP, 0x123456) == VMX_OK && vmread(GUEST_RIP, &value) == VMX_OK && value == 0x123456);
    uint64_t current = 0;
    check(9, "VMPTRST names the current VMCS", vmptrst(&current) == VMX_OK && current == VMCS_A);
}

static void vmread_loop(uint64_t field, uint64_t count) {
    uint64_t value = 0, failures = 0;
    for (uint64_t i = 0; i < count; i++) if (vmread(field, &value) != VMX_OK) failures++;
    mb->probe_value = value;
    mb->probe_status = (uint32_t)failures;
}

static void run(uint32_t command, uint64_t argument) {
    switch (command) {
    case CMD_VMX_CHECKS:
        vmx_checks();
        break;
    case CMD_VMREAD_LOOP:
        vmread_loop(argument & 0xffffffffu, argument >> 32);
        break;
    case CMD_VMWRITE: {
        int outcome = vmwrite(argument & 0xffffffffu, argument >> 32);
        mb->probe_value = outcome == VMX_FAIL_VALID ? instruction_error() : 0;
        mb->probe_status = (uint32_t)outcome;
        break;
    }
    case CMD_CRASH:
        __asm__ volatile("ud2");
        break;
    default:
        break;
    }
}

void guest_ap_main(uint64_t index) {
    (void)index;
    for (;;) idle_tick();
}

void guest_main(void) {
    puts("nestor l1-vmm: long mode up, memory ");
    putu(mb->memory_bytes >> 20);
    puts(" MiB, VMX revision ");
    puthex(revision());
    puts("\n");
    mb->state = STATE_READY;
    for (;;) {
        while (mb->command_seq == mb->ack_seq) idle_tick();
        uint32_t seq = mb->command_seq;
        barrier();
        uint32_t command = mb->command;
        uint64_t argument = mb->argument;
        mb->state = STATE_RUNNING;   /* before the ack: ack and READY together mean done */
        barrier();
        mb->ack_seq = seq;
        barrier();
        run(command, argument);
        mb->state = STATE_READY;
    }
}
