/* A thin C layer over <linux/kvm.h> for Swift: ioctl request numbers as constants (the
 * function-like macros that build them do not reach Swift), the variadic ioctl(2) as plain
 * functions, and accessors for the unions of struct kvm_run. Linux only; empty elsewhere. */
#ifndef CKVM_H
#define CKVM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __linux__
#include <linux/kvm.h>

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_TRANSLATE = KVM_TRANSLATE;
static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;

/* ioctl(2) with no argument, an integer argument, or a pointer; -1 and errno on failure. */
int ckvm_ioctl(int fd, unsigned long request, unsigned long argument);
int ckvm_ioctl_ptr(int fd, unsigned long request, void *argument);
int ckvm_errno(void);

/* Files and threads. */
int ckvm_open_kvm(void);                              /* /dev/kvm, O_RDWR | O_CLOEXEC */
int ckvm_memfd(const char *name);                     /* memfd_create(name, MFD_CLOEXEC) */
void *ckvm_mmap_shared(int fd, size_t length);        /* MAP_SHARED, read-write; NULL on failure */
int ckvm_munmap(void *address, size_t length);
int ckvm_pin_current_thread(int cpu);                 /* sched_setaffinity(0, {cpu}) */
int ckvm_pin_current_thread_set(const int *cpus, int count); /* sched_setaffinity(0, cpus) */
int ckvm_pin_thread_set(unsigned long thread, const int *cpus, int count); /* pthread_setaffinity_np; -1 and errno */
int ckvm_host_cpus(void);                             /* CPUs this process may run on */
int ckvm_current_cpu(void);

/* Kicking a vCPU thread out of KVM_RUN: a no-op SIGUSR1 handler, then pthread_kill. */
int ckvm_install_kick_handler(void);
int ckvm_unblock_kick(void);                           /* in the vCPU thread: let SIGUSR1 in */
int ckvm_kick_thread(unsigned long thread);
unsigned long ckvm_current_thread(void);
int ckvm_name_current_thread(const char *name);   /* pthread_setname_np, at most 15 bytes */
/* A POSIX timer that sends the kick signal (SIGUSR1) to the calling thread; -1 and errno. */
long ckvm_kick_timer_create(void);
/* Arms it: first expiry after `first_ns`, then every `interval_ns` (0: once); 0 and 0 disarm. */
int ckvm_kick_timer_arm(long timer, unsigned long long first_ns, unsigned long long interval_ns);
int ckvm_kick_timer_delete(long timer);

/* struct kvm_run, by exit reason. */
uint32_t ckvm_run_exit_reason(const struct kvm_run *run);
void ckvm_run_io(const struct kvm_run *run, uint8_t *direction, uint8_t *size, uint16_t *port, uint32_t *count,
                 uint64_t *data_offset);
void ckvm_run_mmio(const struct kvm_run *run, uint64_t *address, uint8_t *data, uint32_t *length, uint8_t *is_write);
void ckvm_run_mmio_set_data(struct kvm_run *run, const uint8_t *data, uint32_t length);
uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run);
uint32_t ckvm_run_internal_suberror(const struct kvm_run *run);
void ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value);

/* One MSR at a time. */
int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value);
int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value);

/* The CPUID the host's KVM supports, handed to a vCPU as is. */
int ckvm_set_supported_cpuid(int kvm_fd, int vcpu_fd);

#endif /* __linux__ */
#endif /* CKVM_H */
