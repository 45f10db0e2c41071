#ifdef __linux__
#define _GNU_SOURCE
#include "ckvm.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <signal.h>

static void ckvm_kick(int signal) { (void)signal; }

int ckvm_install_kick_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = ckvm_kick;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGUSR1, &action, NULL);
}

int ckvm_unblock_kick(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int ckvm_kick_thread(unsigned long thread) { return pthread_kill((pthread_t)thread, SIGUSR1); }
unsigned long ckvm_current_thread(void) { return (unsigned long)pthread_self(); }
int ckvm_name_current_thread(const char *name) { return pthread_setname_np(pthread_self(), name); }

long ckvm_kick_timer_create(void) {
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGUSR1;
    event._sigev_un._tid = gettid();
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) return -1;
    return (long)timer;
}

int ckvm_kick_timer_arm(long timer, unsigned long long first_ns, unsigned long long interval_ns) {
    struct itimerspec spec;
    spec.it_value.tv_sec = (time_t)(first_ns / 1000000000ull);
    spec.it_value.tv_nsec = (long)(first_ns % 1000000000ull);
    spec.it_interval.tv_sec = (time_t)(interval_ns / 1000000000ull);
    spec.it_interval.tv_nsec = (long)(interval_ns % 1000000000ull);
    return timer_settime((timer_t)timer, 0, &spec, NULL);
}

int ckvm_kick_timer_delete(long timer) { return timer_delete((timer_t)timer); }

int ckvm_ioctl(int fd, unsigned long request, unsigned long argument) { return ioctl(fd, request, argument); }
int ckvm_ioctl_ptr(int fd, unsigned long request, void *argument) { return ioctl(fd, request, argument); }
int ckvm_errno(void) { return errno; }

int ckvm_open_kvm(void) { return open("/dev/kvm", O_RDWR | O_CLOEXEC); }
int ckvm_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

void *ckvm_mmap_shared(int fd, size_t length) {
    void *address = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    return address == MAP_FAILED ? NULL : address;
}

int ckvm_munmap(void *address, size_t length) { return munmap(address, length); }

int ckvm_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

int ckvm_pin_current_thread_set(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

int ckvm_pin_thread_set(unsigned long thread, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    int error = pthread_setaffinity_np((pthread_t)thread, sizeof(set), &set);
    if (error != 0) { errno = error; return -1; }
    return 0;
}

int ckvm_host_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

int ckvm_current_cpu(void) { return sched_getcpu(); }

uint32_t ckvm_run_exit_reason(const struct kvm_run *run) { return run->exit_reason; }

void ckvm_run_io(const struct kvm_run *run, uint8_t *direction, uint8_t *size, uint16_t *port, uint32_t *count,
                 uint64_t *data_offset) {
    *direction = run->io.direction;
    *size = run->io.size;
    *port = run->io.port;
    *count = run->io.count;
    *data_offset = run->io.data_offset;
}

void ckvm_run_mmio(const struct kvm_run *run, uint64_t *address, uint8_t *data, uint32_t *length, uint8_t *is_write) {
    *address = run->mmio.phys_addr;
    memcpy(data, run->mmio.data, 8);
    *length = run->mmio.len;
    *is_write = run->mmio.is_write;
}

void ckvm_run_mmio_set_data(struct kvm_run *run, const uint8_t *data, uint32_t length) {
    memcpy(run->mmio.data, data, length > 8 ? 8 : length);
}

uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run) { return run->fail_entry.hardware_entry_failure_reason; }
uint32_t ckvm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
void ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value) { run->immediate_exit = value; }

int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value) {
    struct { struct kvm_msrs header; struct kvm_msr_entry entry; } msrs;
    memset(&msrs, 0, sizeof(msrs));
    msrs.header.nmsrs = 1;
    msrs.entry.index = index;
    int done = ioctl(vcpu_fd, KVM_GET_MSRS, &msrs);
    if (done != 1) return done < 0 ? -1 : (errno = EINVAL, -1);
    *value = msrs.entry.data;
    return 0;
}

int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value) {
    struct { struct kvm_msrs header; struct kvm_msr_entry entry; } msrs;
    memset(&msrs, 0, sizeof(msrs));
    msrs.header.nmsrs = 1;
    msrs.entry.index = index;
    msrs.entry.data = value;
    int done = ioctl(vcpu_fd, KVM_SET_MSRS, &msrs);
    if (done != 1) return done < 0 ? -1 : (errno = EINVAL, -1);
    return 0;
}

int ckvm_set_supported_cpuid(int kvm_fd, int vcpu_fd) {
    int entries = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + entries * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) { errno = ENOMEM; return -1; }
    cpuid->nent = entries;
    int result = ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid);
    if (result == 0) result = ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid);
    int saved = errno;
    free(cpuid);
    errno = saved;
    return result;
}
#endif
