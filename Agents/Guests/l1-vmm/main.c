/* Nestor's guest hypervisor (L1) for LPARs created with vmm on the KVM backend. It reaches
 * VMX through L0's VMX gate and VMX microcode page (vmx-abi.h), and takes its commands from
 * the management mailbox like lpar-os. */
#include "abi.h"
#include "../common/port.h"
#include "l2-abi.h"
#include "../common/workloads.h"
#include "vmx.h"

static volatile struct mailbox *const mb = (volatile struct mailbox *)ABI_MAILBOX;

/* L1's own memory: VMX regions from 5 MiB. */
#define VMXON_REGION   0x500000ull
#define VMCS_A         0x501000ull
#define VMCS_BAD       0x502000ull

static void puthex(uint64_t v) { puthex_digits(v, 1); }

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

/* ---- The guest hypervisor proper: L2 VMs on request, scheduled round-robin ------------ */

extern const uint8_t l2_os_image[], l2_os_image_end[];

#define TSC_OFFSET               0x2010
#define TPR_THRESHOLD            0x401c
#define IDT_VECTORING_INFO_FIELD 0x4408

/* Slot i: 4 MiB of L2 memory from 32 MiB + 4i MiB, its EPT tables and its VMCS. */
#define VM_MEMORY(i)   (0x2000000ull + (uint64_t)(i) * L2_MEMORY_SIZE)
#define VM_EPT(i)      (0x610000ull + (uint64_t)(i) * 0x3000)
#define VM_VMCS(i)     (0x510000ull + (uint64_t)(i) * 0x1000)

struct vm {
    struct l2_gprs gprs;
    int launched;
    int host_state_loaded;    /* KVM's vmx->host_state.loaded */
    int rip_cached, rip_dirty;
    uint64_t rip;
    char line[80];
    int line_length;
};

static struct vm vms[VM_SLOTS];
static volatile struct vm_report *const table = (volatile struct vm_report *)VM_TABLE;
static uint64_t current_vmcs;
static int next_slot;

static int vm_create(uint32_t slot, uint32_t workload) {
    if (slot >= VM_SLOTS) return 1;
    if (table[slot].state != VM_FREE) return 2;
    if (mb->memory_bytes < VM_MEMORY(VM_SLOTS)) return 3;
    if (ensure_vmxon() != VMX_OK) return 4;
    uint64_t slice = (mb->disk_sectors / VM_SLOTS) & ~7ull;
    if (workload != L2_WORKLOAD_IDLE && slice < 256) return 5;
    uint64_t base = VM_MEMORY(slot), ept = VM_EPT(slot), vmcs = VM_VMCS(slot);
    /* L2's memory: zeroed, its identity paging, a flat GDT, the l2-os image. */
    for (uint64_t page = 0; page < L2_MEMORY_SIZE; page += 4096) zero_page(base + page);
    put64(base + L2_PML4, 0x2000 | 7);
    put64(base + 0x2000, 0x3000 | 7);
    for (uint64_t i = 0; i < 512; i++) put64(base + 0x3000 + i * 8, (i << 21) | 0x87);
    put64(base + L2_GDT + 0x08, 0x00af9a000000ffffull);
    put64(base + L2_GDT + 0x10, 0x00cf92000000ffffull);
    put64(base + L2_GDT + 0x18, 0x00affa000000ffffull);
    put64(base + L2_GDT + 0x20, 0x00cff2000000ffffull);
    uint64_t size = (uint64_t)(l2_os_image_end - l2_os_image);
    if (size > L2_IMAGE_MAX) return 6;
    copy(base + L2_IMAGE, l2_os_image, size);
    /* L1's EPT for it: L2-physical 0..4 MiB -> its memory, 2 MiB pages. */
    zero_page(ept); zero_page(ept + 0x1000); zero_page(ept + 0x2000);
    put64(ept, (ept + 0x1000) | EPT_RWX);
    put64(ept + 0x1000, (ept + 0x2000) | EPT_RWX);
    for (uint64_t i = 0; i < L2_MEMORY_SIZE >> 21; i++) put64(ept + 0x2000 + i * 8, (base + (i << 21)) | EPT_RWX | EPT_LARGE | EPT_WB);
    zero_page(vmcs);
    *(volatile uint32_t *)vmcs = revision();
    if (vmclear(vmcs) != VMX_OK || vmptrld(vmcs) != VMX_OK) return 7;
    current_vmcs = vmcs;
    if (write_l2_vmcs() != 0) return 8;
    if (vmwrite(EPT_POINTER, ept | (3ull << 3) | 6) != VMX_OK) return 9;
    /* Time slices: the VMX-preemption timer ends an L2 run after about 10 ms of TSC ticks
     * (loaded from the VMCS at every entry), so a VM that never exits cannot keep the others,
     * or the mailbox, waiting. */
    if (vmwrite(PIN_BASED_VM_EXEC_CONTROL, adjust(MSR_VMX_TRUE_PINBASED_CTLS, 1u << 6)) != VMX_OK ||
        vmwrite(VMX_PREEMPTION_TIMER_VALUE, 0x2000000) != VMX_OK) return 10;
    struct vm *vm = &vms[slot];
    *vm = (struct vm){0};
    vm->gprs.rdi = workload;
    vm->gprs.rsi = workload == L2_WORKLOAD_IDLE ? 0 : slice;
    table[slot].workload = workload;
    table[slot].exits = 0;
    table[slot].disk_first = slice * slot;
    table[slot].disk_sectors = slice;
    table[slot].operations = table[slot].bytes = table[slot].passes = table[slot].checksum = table[slot].errors = 0;
    table[slot].failure = 0;
    barrier();
    table[slot].state = VM_RUNNING;
    puts("vm "); putu(slot); puts(": created\n");
    return 0;
}

static void vm_delete(uint32_t slot) {
    if (slot >= VM_SLOTS || table[slot].state == VM_FREE) return;
    vmclear(VM_VMCS(slot));
    if (current_vmcs == VM_VMCS(slot)) current_vmcs = 0;
    table[slot].state = VM_FREE;
    puts("vm "); putu(slot); puts(": deleted\n");
}

static void vm_fail(uint32_t slot, uint64_t reason) {
    table[slot].failure = reason;
    table[slot].state = VM_FAILED;
    puts("vm "); putu(slot); puts(": failed, exit reason "); putu(reason); puts("\n");
}

/* kvm_cache_regs.h: GUEST_RIP read once per exit. */
static uint64_t rip_read(struct vm *vm) {
    if (!vm->rip_cached) { vm->rip = vmread_or(GUEST_RIP, 0); vm->rip_cached = 1; }
    return vm->rip;
}

/* skip_emulated_instruction: RIP += VM_EXIT_INSTRUCTION_LEN, then the interrupt shadow. */
static void skip_emulated_instruction(struct vm *vm) {
    uint64_t rip = rip_read(vm);
    vm->rip = rip + vmread_or(VM_EXIT_INSTRUCTION_LEN, 0);
    vm->rip_dirty = 1;
    uint64_t blocking = vmread_or(GUEST_INTERRUPTIBILITY_INFO, 0);
    if (blocking & 3) vmwrite(GUEST_INTERRUPTIBILITY_INFO, blocking & ~3ull);
}

/* The virtual block device: a request in L2's memory, served from the VM's slice of the
 * LPAR's disk through L0's block device, straight into L2's buffer. */
static void virtual_block(uint32_t slot, uint64_t request_gpa) {
    uint64_t base = VM_MEMORY(slot);
    if (request_gpa + sizeof(struct block_request) > L2_MEMORY_SIZE) return;
    volatile struct block_request *r = (volatile struct block_request *)(base + request_gpa);
    uint64_t bytes = (uint64_t)r->sectors * BLOCK_SECTOR;
    if (r->sectors == 0 || r->sectors > 2048 || (r->op != BLOCK_READ && r->op != BLOCK_WRITE)) { r->status = BLOCK_BAD_REQUEST; return; }
    if (r->buffer > L2_MEMORY_SIZE || bytes > L2_MEMORY_SIZE - r->buffer) { r->status = BLOCK_BAD_BUFFER; return; }
    if (r->lba > table[slot].disk_sectors || r->sectors > table[slot].disk_sectors - r->lba) { r->status = BLOCK_OUT_OF_RANGE; return; }
    r->status = l0_block(table[slot].disk_first + r->lba, r->sectors, r->op, base + r->buffer);
}

static void l2_console(uint32_t slot, uint8_t c) {
    struct vm *vm = &vms[slot];
    if (c != '\n' && vm->line_length < (int)sizeof vm->line - 1) { vm->line[vm->line_length++] = (char)c; return; }
    vm->line[vm->line_length] = 0;
    puts("vm "); putu(slot); puts(": "); puts(vm->line); puts("\n");
    vm->line_length = 0;
}

/* handle_io: the qualification, the device, then skip the instruction. */
static void handle_io(uint32_t slot, struct vm *vm) {
    uint64_t q = vmread_or(EXIT_QUALIFICATION, 0);
    uint16_t port = (uint16_t)(q >> 16);
    int input = (q & 8) != 0;
    if (!input && port == L2_PORT_BLOCK) virtual_block(slot, vm->gprs.rax & 0xffffffffu);
    else if (!input && port == L2_PORT_CONSOLE) l2_console(slot, (uint8_t)vm->gprs.rax);
    else if (input) vm->gprs.rax |= 0xffffffffu;
    skip_emulated_instruction(vm);
}

/* vmx_vcpu_run's exit path and vmx_handle_exit, with RHEL 6.4 KVM's VMCS accesses. */
static void handle_exit(uint32_t slot, struct vm *vm) {
    uint64_t value;
    vm->rip_cached = 0;
    vm->rip_dirty = 0;
    vmread(IDT_VECTORING_INFO_FIELD, &value);
    vmread(VM_EXIT_INTR_INFO, &value);
    uint64_t reason = vmread_or(VM_EXIT_REASON, ~0ull);
    vmread(TSC_OFFSET, &value);
    rip_read(vm);
    vmread(GUEST_CR3, &value);
    table[slot].exits++;
    if (reason & (1ull << 31)) { vm_fail(slot, reason); return; }
    switch (reason & 0xffff) {
    case 30:                                   /* I/O instruction */
        handle_io(slot, vm);
        break;
    case 12:                                   /* HLT: kvm_vcpu_block until the next tick */
        skip_emulated_instruction(vm);
        vm->host_state_loaded = 0;
        table[slot].state = VM_HALTED;
        break;
    case 1:                                    /* external interrupt: L1's own */
    case 52:                                   /* VMX-preemption timer: the VM's slice is over */
        break;
    case 48:                                   /* EPT violation: no MMIO device here */
        vmread(EXIT_QUALIFICATION, &value);
        vmread(GUEST_PHYSICAL_ADDRESS, &value);
        vm_fail(slot, reason);
        break;
    default:                                   /* a triple fault, or an exit it has no handler for */
        vm_fail(slot, reason);
        break;
    }
    /* L2's counters, from its report page. */
    volatile struct workload_counters *counters = (volatile struct workload_counters *)(VM_MEMORY(slot) + L2_REPORT);
    table[slot].operations = counters->operations;
    table[slot].bytes = counters->bytes;
    table[slot].passes = counters->passes;
    table[slot].checksum = counters->checksum;
    table[slot].errors = counters->errors;
}

/* vcpu_enter_guest and vmx_vcpu_run up to VMRESUME. */
static void enter_guest(struct vm *vm) {
    if (!vm->host_state_loaded) {
        vmwrite(HOST_FS_SELECTOR, 0);
        vmwrite(HOST_GS_SELECTOR, 0);
        vmwrite(HOST_FS_BASE, 0x7f0000000000ull);
        vmwrite(HOST_GS_BASE, 0xffff880000000000ull);
        vm->host_state_loaded = 1;
    }
    vmwrite(TPR_THRESHOLD, 0);
    vmwrite(GUEST_CR3, L2_PML4);
    if (vm->rip_dirty) vmwrite(GUEST_RIP, vm->rip);
    vmwrite(HOST_CR0, 0x80050033);
}

/* Runs the next runnable VM until its next exit; 0 when none is runnable. */
static int schedule(void) {
    for (int tried = 0; tried < VM_SLOTS; tried++) {
        uint32_t slot = (uint32_t)((next_slot + tried) % VM_SLOTS);
        if (table[slot].state != VM_RUNNING) continue;
        next_slot = (int)(slot + 1) % VM_SLOTS;
        struct vm *vm = &vms[slot];
        if (current_vmcs != VM_VMCS(slot)) {
            if (vmptrld(VM_VMCS(slot)) != VMX_OK) { vm_fail(slot, ~0ull); return 1; }
            current_vmcs = VM_VMCS(slot);
            vm->host_state_loaded = 0;
        }
        enter_guest(vm);
        if (l2_run(&vm->gprs, vm->launched ? VMX_OP_VMRESUME : VMX_OP_VMLAUNCH)) {
            puts("vm "); putu(slot); puts(": entry failed, error "); putu(instruction_error()); puts("\n");
            vm_fail(slot, instruction_error() | (1ull << 32));
            return 1;
        }
        vm->launched = 1;
        handle_exit(slot, vm);
        return 1;
    }
    return 0;
}

static void wake_halted(void) {
    for (uint32_t slot = 0; slot < VM_SLOTS; slot++) if (table[slot].state == VM_HALTED) table[slot].state = VM_RUNNING;
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
    case CMD_VM_CREATE:
        mb->probe_status = (uint32_t)vm_create((uint32_t)(argument & 0xff), (uint32_t)((argument >> 8) & 0xff));
        break;
    case CMD_VM_DELETE:
        vm_delete((uint32_t)(argument & 0xff));
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
        /* L2 VMs run between commands; with none runnable, L1 idles a tick. */
        while (mb->command_seq == mb->ack_seq) {
            if (!schedule()) { idle_tick(); wake_halted(); }
        }
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
