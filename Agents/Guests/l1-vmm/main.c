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

/* ---- L2 guests ---------------------------------------------------------------------- */

struct l2_gprs { uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15; };
uint64_t l2_run(struct l2_gprs *gprs, uint32_t op);
void l2_vm_exit(void);
extern const uint8_t l2_test_program[], l2_test_program_end[];

/* L2 #0: 4 MiB of L1's memory from 16 MiB is its L2-physical 0..4 MiB; its EPT tables and
 * VMCS are L1's; 2 MiB from 24 MiB stand ready for the page it touches later. */
#define L2_MEMORY      0x1000000ull
#define L2_SIZE        0x400000ull
#define L2_LATE_PAGE   0x1800000ull
#define EPT_PML4       0x600000ull
#define EPT_PDPT       0x601000ull
#define EPT_PD         0x602000ull
#define VMCS_L2        0x503000ull
#define L1_EXIT_STACK  0x3ff000ull
#define EPT_RWX        7ull
#define EPT_LARGE      (1ull << 7)
#define EPT_WB         (6ull << 3)

static void put64(uint64_t address, uint64_t value) { *(volatile uint64_t *)address = value; }

static void copy(uint64_t to, const uint8_t *from, uint64_t count) {
    volatile uint8_t *d = (volatile uint8_t *)to;
    for (uint64_t i = 0; i < count; i++) d[i] = from[i];
}

static uint32_t adjust(uint32_t msr, uint32_t wanted) {
    uint64_t allowed = vmx_rdmsr(msr);
    return (wanted | (uint32_t)allowed) & (uint32_t)(allowed >> 32);
}

/* L2's memory: its own identity paging (2 MiB user pages over 1 GiB), a flat GDT, and the
 * test program at 1 MiB. L1's EPT maps L2-physical 0..4 MiB to L2_MEMORY. */
static void build_l2(void) {
    for (uint64_t page = 0; page < 0x4000; page += 4096) zero_page(L2_MEMORY + page);
    put64(L2_MEMORY + 0x1000, 0x2000 | 7);
    put64(L2_MEMORY + 0x2000, 0x3000 | 7);
    for (uint64_t i = 0; i < 512; i++) put64(L2_MEMORY + 0x3000 + i * 8, (i << 21) | 0x87);
    put64(L2_MEMORY + 0x500, 0);
    put64(L2_MEMORY + 0x508, 0x00af9a000000ffffull);
    put64(L2_MEMORY + 0x510, 0x00cf92000000ffffull);
    put64(L2_MEMORY + 0x518, 0x00affa000000ffffull);
    put64(L2_MEMORY + 0x520, 0x00cff2000000ffffull);
    copy(L2_MEMORY + 0x100000, l2_test_program, (uint64_t)(l2_test_program_end - l2_test_program));
    zero_page(EPT_PML4);
    zero_page(EPT_PDPT);
    zero_page(EPT_PD);
    put64(EPT_PML4, EPT_PDPT | EPT_RWX);
    put64(EPT_PDPT, EPT_PD | EPT_RWX);
    for (uint64_t i = 0; i < L2_SIZE >> 21; i++) put64(EPT_PD + i * 8, (L2_MEMORY + (i << 21)) | EPT_RWX | EPT_LARGE | EPT_WB);
    put64(L2_LATE_PAGE, 0x1122334455667788ull);
}

static int write_l2_vmcs(void) {
    int failures = 0;
#define W(field, value) failures += vmwrite((field), (value)) != VMX_OK
    W(PIN_BASED_VM_EXEC_CONTROL, adjust(MSR_VMX_TRUE_PINBASED_CTLS, 0));
    W(CPU_BASED_VM_EXEC_CONTROL, adjust(MSR_VMX_TRUE_PROCBASED_CTLS, (1u << 7) | (1u << 24) | (1u << 31)));
    W(SECONDARY_VM_EXEC_CONTROL, adjust(MSR_VMX_PROCBASED_CTLS2, 1u << 1));
    W(VM_EXIT_CONTROLS, adjust(MSR_VMX_TRUE_EXIT_CTLS, 1u << 9));
    W(VM_ENTRY_CONTROLS, adjust(MSR_VMX_TRUE_ENTRY_CTLS, 1u << 9));
    W(EXCEPTION_BITMAP, 0);
    W(EPT_POINTER, EPT_PML4 | (3ull << 3) | 6);
    W(VMCS_LINK_POINTER, ~0ull);
    W(GUEST_CR0, 0x80000031);
    W(GUEST_CR3, 0x1000);
    W(GUEST_CR4, 0x2020);
    W(GUEST_DR7, 0x400);
    W(GUEST_RIP, 0x100000);
    W(GUEST_RSP, 0x300000);
    W(GUEST_RFLAGS, 0x3002);
    W(GUEST_IA32_EFER, 0x500);
    W(GUEST_CS_SELECTOR, 0x1b); W(GUEST_CS_BASE, 0); W(GUEST_CS_LIMIT, 0xffffffff); W(GUEST_CS_AR_BYTES, 0xa0fb);
    static const uint32_t sel[] = {GUEST_SS_SELECTOR, GUEST_DS_SELECTOR, GUEST_ES_SELECTOR, GUEST_FS_SELECTOR, GUEST_GS_SELECTOR};
    static const uint32_t lim[] = {GUEST_SS_LIMIT, GUEST_DS_LIMIT, GUEST_ES_LIMIT, GUEST_FS_LIMIT, GUEST_GS_LIMIT};
    static const uint32_t ar[] = {GUEST_SS_AR_BYTES, GUEST_DS_AR_BYTES, GUEST_ES_AR_BYTES, GUEST_FS_AR_BYTES, GUEST_GS_AR_BYTES};
    for (int i = 0; i < 5; i++) { W(sel[i], 0x23); W(lim[i], 0xffffffff); W(ar[i], 0xc0f3); }
    W(GUEST_SS_BASE, 0); W(GUEST_DS_BASE, 0); W(GUEST_ES_BASE, 0); W(GUEST_FS_BASE, 0); W(GUEST_GS_BASE, 0);
    W(GUEST_LDTR_SELECTOR, 0); W(GUEST_LDTR_AR_BYTES, 0x10000);
    W(GUEST_TR_SELECTOR, 0x28); W(GUEST_TR_BASE, 0); W(GUEST_TR_LIMIT, 0x67); W(GUEST_TR_AR_BYTES, 0x8b);
    W(GUEST_GDTR_BASE, 0x500); W(GUEST_GDTR_LIMIT, 0x27);
    W(GUEST_IDTR_BASE, 0); W(GUEST_IDTR_LIMIT, 0);
    W(GUEST_ACTIVITY_STATE, 0); W(GUEST_INTERRUPTIBILITY_INFO, 0);
    W(HOST_CR0, 0x80000031); W(HOST_CR3, 0x1000); W(HOST_CR4, 0x2020);
    W(HOST_CS_SELECTOR, 0x18); W(HOST_SS_SELECTOR, 0x20); W(HOST_DS_SELECTOR, 0x20); W(HOST_ES_SELECTOR, 0x20);
    W(HOST_FS_SELECTOR, 0); W(HOST_GS_SELECTOR, 0); W(HOST_TR_SELECTOR, 0x28);
    W(HOST_FS_BASE, 0); W(HOST_GS_BASE, 0); W(HOST_TR_BASE, 0); W(HOST_GDTR_BASE, 0x500); W(HOST_IDTR_BASE, 0);
    W(HOST_RIP, (uint64_t)l2_vm_exit);
    W(HOST_RSP, L1_EXIT_STACK);
#undef W
    return failures;
}

static void report_exit(uint64_t count, uint64_t reason, uint64_t qualification, uint64_t length, uint64_t rip) {
    puts("l2 exit "); putu(count); puts(": reason "); putu(reason);
    puts(" qualification "); puthex(qualification); puts(" length "); putu(length);
    puts(" rip "); puthex(rip); puts("\n");
}

/* Runs the L2 test program from its first instruction to its triple fault, handling each
 * exit as a hypervisor does, then checks that a second VMLAUNCH is refused. */
static void l2_test(void) {
    mb->probe_value = 0;
    mb->probe_status = 0;
    if (ensure_vmxon() != VMX_OK) { mb->probe_status = 1; return; }
    build_l2();
    zero_page(VMCS_L2);
    *(volatile uint32_t *)VMCS_L2 = revision();
    if (vmclear(VMCS_L2) != VMX_OK || vmptrld(VMCS_L2) != VMX_OK) { mb->probe_status = 2; return; }
    if (write_l2_vmcs() != 0) { mb->probe_status = 3; return; }
    struct l2_gprs gprs = {0};
    uint32_t op = VMX_OP_VMLAUNCH;
    uint64_t exits = 0;
    for (;;) {
        uint64_t failed = l2_run(&gprs, op);
        if (failed) {
            puts("l2 entry failed: error "); putu(instruction_error()); puts("\n");
            mb->probe_status = 4;
            return;
        }
        op = VMX_OP_VMRESUME;
        exits++;
        uint64_t reason = vmread_or(VM_EXIT_REASON, ~0ull) & 0xffff;
        uint64_t qualification = vmread_or(EXIT_QUALIFICATION, 0);
        uint64_t length = vmread_or(VM_EXIT_INSTRUCTION_LEN, 0);
        uint64_t rip = vmread_or(GUEST_RIP, 0);
        report_exit(exits, reason, qualification, length, rip);
        if (reason == 30) {                        /* I/O instruction */
            uint16_t port = (uint16_t)(qualification >> 16);
            if (qualification & 8) gprs.rax = (gprs.rax & ~0xffull) | 0x5a;   /* in: L1's device answers */
            if (port == 0x83) {
                puts("l2 reports rbx "); puthex(gprs.rbx); puts(" rcx "); puthex(gprs.rcx); puts("\n");
                mb->probe_value = gprs.rcx;
            }
            vmwrite(GUEST_RIP, rip + length);
        } else if (reason == 12 || reason == 10) { /* HLT, CPUID */
            vmwrite(GUEST_RIP, rip + length);
        } else if (reason == 48) {                 /* EPT violation: map the page (no INVEPT needed) */
            uint64_t gpa = vmread_or(GUEST_PHYSICAL_ADDRESS, 0);
            puts("l2 ept violation at "); puthex(gpa); puts("\n");
            if (gpa >= 0x1000000 && gpa < 0x1200000) put64(EPT_PD + 8 * 8, L2_LATE_PAGE | EPT_RWX | EPT_LARGE | EPT_WB);
            else break;
        } else {
            break;                                  /* triple fault (2), or anything else: L2 is over */
        }
        if (exits > 64) break;
    }
    mb->errors = exits;
    /* The VMCS is launched: another VMLAUNCH is error 4. */
    uint64_t flags = l2_run(&gprs, VMX_OP_VMLAUNCH);
    puts("second vmlaunch: error "); putu(instruction_error()); puts("\n");
    if (!(flags & 0x40) || instruction_error() != 4) mb->probe_status = 5;
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
    case CMD_L2_TEST:
        l2_test();
        break;
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
