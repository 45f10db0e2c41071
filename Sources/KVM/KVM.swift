#if os(Linux)
public import CKVM
import Glibc

/// A failed KVM operation: which one, and the errno it gave.
public struct KVMError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// The current errno, for `operation`.
    static func last(_ operation: String) -> KVMError { KVMError(operation, errno: ckvm_errno()) }

    public var description: String {
        "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The KVM system: /dev/kvm, its API version, its extensions and the vCPU mmap size.
public final class KVM: @unchecked Sendable {
    public let fd: Int32
    public let apiVersion: Int32
    public let vcpuMmapSize: Int

    /// Opens /dev/kvm and checks the API version (12 is the only stable one).
    public init() throws(KVMError) {
        let fd = ckvm_open_kvm()
        guard fd >= 0 else { throw .last("open /dev/kvm") }
        let version = ckvm_ioctl(fd, CKVM_GET_API_VERSION, 0)
        guard version == 12 else {
            close(fd)
            throw KVMError("KVM_GET_API_VERSION (got \(version), need 12)", errno: version < 0 ? ckvm_errno() : EINVAL)
        }
        let size = ckvm_ioctl(fd, CKVM_GET_VCPU_MMAP_SIZE, 0)
        guard size > 0 else {
            close(fd)
            throw .last("KVM_GET_VCPU_MMAP_SIZE")
        }
        self.fd = fd
        self.apiVersion = version
        self.vcpuMmapSize = Int(size)
    }

    deinit { close(fd) }

    /// Whether /dev/kvm exists and can be opened, and why not.
    public static func availability() -> (available: Bool, reason: String) {
        guard access("/dev/kvm", F_OK) == 0 else { return (false, "/dev/kvm does not exist (no KVM in this kernel or machine)") }
        do {
            _ = try KVM()
            return (true, "/dev/kvm")
        } catch {
            return (false, error.description)
        }
    }

    /// KVM_CHECK_EXTENSION: 0 when absent, else the extension's value.
    public func checkExtension(_ capability: Int32) -> Int32 {
        max(0, ckvm_ioctl(fd, CKVM_CHECK_EXTENSION, UInt(capability)))
    }

    public func createVM() throws(KVMError) -> KVMVirtualMachine {
        let vmFD = ckvm_ioctl(fd, CKVM_CREATE_VM, 0)
        guard vmFD >= 0 else { throw .last("KVM_CREATE_VM") }
        return KVMVirtualMachine(fd: vmFD, kvm: self)
    }
}

/// One KVM virtual machine: memory slots and vCPUs.
public final class KVMVirtualMachine: @unchecked Sendable {
    public let fd: Int32
    public let kvm: KVM

    init(fd: Int32, kvm: KVM) {
        self.fd = fd
        self.kvm = kvm
    }

    deinit { close(fd) }

    /// Maps `size` bytes of host memory at `host` into the guest at `guestPhysical`.
    /// A read-only slot (KVM_CAP_READONLY_MEM): the guest's writes to it exit as MMIO.
    public func setUserMemoryRegion(slot: UInt32, guestPhysical: UInt64, size: UInt64, host: UnsafeMutableRawPointer,
                                    logDirtyPages: Bool = false, readOnly: Bool = false) throws(KVMError) {
        let flags = (logDirtyPages ? UInt32(KVM_MEM_LOG_DIRTY_PAGES) : 0) | (readOnly ? UInt32(KVM_MEM_READONLY) : 0)
        var region = kvm_userspace_memory_region(
            slot: slot, flags: flags, guest_phys_addr: guestPhysical,
            memory_size: size, userspace_addr: UInt64(UInt(bitPattern: host)))
        guard ckvm_ioctl_ptr(fd, CKVM_SET_USER_MEMORY_REGION, &region) == 0 else { throw .last("KVM_SET_USER_MEMORY_REGION") }
    }

    /// The pages of `slot` written since the last call, one bit per 4 KiB page.
    public func dirtyLog(slot: UInt32, pages: Int) throws(KVMError) -> [UInt64] {
        var bitmap = [UInt64](repeating: 0, count: (pages + 63) / 64)
        let result = bitmap.withUnsafeMutableBytes { bytes -> Int32 in
            var log = kvm_dirty_log()
            log.slot = slot
            log.dirty_bitmap = bytes.baseAddress
            return ckvm_ioctl_ptr(fd, CKVM_GET_DIRTY_LOG, &log)
        }
        guard result == 0 else { throw .last("KVM_GET_DIRTY_LOG") }
        return bitmap
    }

    /// KVM_SET_TSS_ADDR (needed on Intel hosts before the first run; harmless on AMD).
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        guard ckvm_ioctl(fd, CKVM_SET_TSS_ADDR, UInt(address)) == 0 else { throw .last("KVM_SET_TSS_ADDR") }
    }

    public func createVCPU(id: Int) throws(KVMError) -> KVMVCPU {
        let vcpuFD = ckvm_ioctl(fd, CKVM_CREATE_VCPU, UInt(id))
        guard vcpuFD >= 0 else { throw .last("KVM_CREATE_VCPU") }
        guard let mapped = mmap(nil, kvm.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFD, 0), mapped != MAP_FAILED else {
            let error = KVMError.last("mmap of the vCPU's kvm_run")
            close(vcpuFD)
            throw error
        }
        guard ckvm_set_supported_cpuid(kvm.fd, vcpuFD) == 0 else {
            let error = KVMError.last("KVM_SET_CPUID2")
            munmap(mapped, kvm.vcpuMmapSize)
            close(vcpuFD)
            throw error
        }
        return KVMVCPU(fd: vcpuFD, id: id, run: mapped, runSize: kvm.vcpuMmapSize)
    }
}

/// Why KVM_RUN returned.
public enum KVMExit: Equatable, Sendable {
    case ioOut(port: UInt16, size: Int, value: UInt32)
    case ioIn(port: UInt16, size: Int)
    case mmioRead(address: UInt64, size: Int)
    case mmioWrite(address: UInt64, size: Int, value: UInt64)
    case hlt
    case shutdown
    case failEntry(reason: UInt64)
    case internalError(suberror: UInt32)
    /// KVM_RUN was interrupted by a signal (EINTR) or `immediate_exit`.
    case interrupted
    case other(reason: UInt32)
}

/// One vCPU of a KVM virtual machine.
public final class KVMVCPU: @unchecked Sendable {
    public let fd: Int32
    public let id: Int
    private let runArea: UnsafeMutableRawPointer
    private let runSize: Int
    private var kvmRun: UnsafeMutablePointer<kvm_run> { runArea.assumingMemoryBound(to: kvm_run.self) }

    init(fd: Int32, id: Int, run: UnsafeMutableRawPointer, runSize: Int) {
        self.fd = fd
        self.id = id
        self.runArea = run
        self.runSize = runSize
    }

    deinit {
        munmap(runArea, runSize)
        close(fd)
    }

    /// Runs the guest until an exit. String I/O (`rep outs`) with a count above 1 is
    /// reported as its first element; the guests Nestor runs use single I/O instructions.
    public func run() throws(KVMError) -> KVMExit {
        if ckvm_ioctl(fd, CKVM_RUN, 0) != 0 {
            let error = ckvm_errno()
            if error == EINTR || error == EAGAIN { return .interrupted }
            throw KVMError("KVM_RUN", errno: error)
        }
        let reason = ckvm_run_exit_reason(kvmRun)
        switch Int32(reason) {
        case KVM_EXIT_IO:
            var direction: UInt8 = 0, size: UInt8 = 0, port: UInt16 = 0, count: UInt32 = 0, offset: UInt64 = 0
            ckvm_run_io(kvmRun, &direction, &size, &port, &count, &offset)
            if Int32(direction) == KVM_EXIT_IO_OUT {
                var value: UInt32 = 0
                withUnsafeMutableBytes(of: &value) { target in
                    target.copyMemory(from: UnsafeRawBufferPointer(start: runArea + Int(offset), count: Int(min(size, 4))))
                }
                return .ioOut(port: port, size: Int(size), value: value)
            }
            return .ioIn(port: port, size: Int(size))
        case KVM_EXIT_MMIO:
            var address: UInt64 = 0, length: UInt32 = 0, isWrite: UInt8 = 0
            var data = [UInt8](repeating: 0, count: 8)
            ckvm_run_mmio(kvmRun, &address, &data, &length, &isWrite)
            if isWrite != 0 {
                var value: UInt64 = 0
                for index in 0..<Int(min(length, 8)) { value |= UInt64(data[index]) << (8 * index) }
                return .mmioWrite(address: address, size: Int(length), value: value)
            }
            return .mmioRead(address: address, size: Int(length))
        case KVM_EXIT_HLT: return .hlt
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_FAIL_ENTRY: return .failEntry(reason: ckvm_run_fail_entry_reason(kvmRun))
        case KVM_EXIT_INTERNAL_ERROR: return .internalError(suberror: ckvm_run_internal_suberror(kvmRun))
        case KVM_EXIT_INTR: return .interrupted
        default: return .other(reason: reason)
        }
    }

    /// The guest-physical address of a linear address in the vCPU's current paging mode;
    /// nil when it is not mapped.
    public func translate(_ linear: UInt64) throws(KVMError) -> UInt64? {
        var translation = kvm_translation()
        translation.linear_address = linear
        guard ckvm_ioctl_ptr(fd, CKVM_TRANSLATE, &translation) == 0 else { throw .last("KVM_TRANSLATE") }
        return translation.valid != 0 ? translation.physical_address : nil
    }

    /// The guest's TSC frequency in kHz (KVM_GET_TSC_KHZ); nil where KVM does not say.
    public func tscKilohertz() -> UInt64? {
        let value = ckvm_ioctl(fd, CKVM_GET_TSC_KHZ, 0)
        return value > 0 ? UInt64(value) : nil
    }

    /// Completes whatever the last exit left pending (an I/O or MMIO instruction KVM
    /// finishes on the next KVM_RUN) without running the guest.
    public func flushPendingExit() throws(KVMError) {
        requestImmediateExit(true)
        defer { requestImmediateExit(false) }
        if ckvm_ioctl(fd, CKVM_RUN, 0) != 0 {
            let error = ckvm_errno()
            if error == EINTR || error == EAGAIN { return }
            throw KVMError("KVM_RUN", errno: error)
        }
    }

    /// The value an `in` instruction reads, written before the next `run`.
    public func completeIOIn(_ value: UInt32, size: Int) {
        var direction: UInt8 = 0, width: UInt8 = 0, port: UInt16 = 0, count: UInt32 = 0, offset: UInt64 = 0
        ckvm_run_io(kvmRun, &direction, &width, &port, &count, &offset)
        var copy = value
        withUnsafeBytes(of: &copy) { source in
            UnsafeMutableRawBufferPointer(start: runArea + Int(offset), count: min(size, 4)).copyMemory(from: UnsafeRawBufferPointer(rebasing: source[0..<min(size, 4)]))
        }
    }

    /// The data an MMIO read returns, written before the next `run`.
    public func completeMMIORead(_ value: UInt64, size: Int) {
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        ckvm_run_mmio_set_data(kvmRun, &bytes, UInt32(min(size, 8)))
    }

    /// Makes the next (or the current) KVM_RUN return at once.
    public func requestImmediateExit(_ on: Bool) { ckvm_run_set_immediate_exit(kvmRun, on ? 1 : 0) }

    public func registers() throws(KVMError) -> kvm_regs {
        var regs = kvm_regs()
        guard ckvm_ioctl_ptr(fd, CKVM_GET_REGS, &regs) == 0 else { throw .last("KVM_GET_REGS") }
        return regs
    }

    public func setRegisters(_ regs: kvm_regs) throws(KVMError) {
        var copy = regs
        guard ckvm_ioctl_ptr(fd, CKVM_SET_REGS, &copy) == 0 else { throw .last("KVM_SET_REGS") }
    }

    public func specialRegisters() throws(KVMError) -> kvm_sregs {
        var sregs = kvm_sregs()
        guard ckvm_ioctl_ptr(fd, CKVM_GET_SREGS, &sregs) == 0 else { throw .last("KVM_GET_SREGS") }
        return sregs
    }

    public func setSpecialRegisters(_ sregs: kvm_sregs) throws(KVMError) {
        var copy = sregs
        guard ckvm_ioctl_ptr(fd, CKVM_SET_SREGS, &copy) == 0 else { throw .last("KVM_SET_SREGS") }
    }

    public func fpu() throws(KVMError) -> kvm_fpu {
        var state = kvm_fpu()
        guard ckvm_ioctl_ptr(fd, CKVM_GET_FPU, &state) == 0 else { throw .last("KVM_GET_FPU") }
        return state
    }

    public func setFPU(_ state: kvm_fpu) throws(KVMError) {
        var copy = state
        guard ckvm_ioctl_ptr(fd, CKVM_SET_FPU, &copy) == 0 else { throw .last("KVM_SET_FPU") }
    }

    public func msr(_ index: UInt32) throws(KVMError) -> UInt64 {
        var value: UInt64 = 0
        guard ckvm_get_msr(fd, index, &value) == 0 else { throw .last("KVM_GET_MSRS \(index)") }
        return value
    }

    public func setMSR(_ index: UInt32, _ value: UInt64) throws(KVMError) {
        guard ckvm_set_msr(fd, index, value) == 0 else { throw .last("KVM_SET_MSRS \(index)") }
    }

    public func events() throws(KVMError) -> kvm_vcpu_events {
        var state = kvm_vcpu_events()
        guard ckvm_ioctl_ptr(fd, CKVM_GET_VCPU_EVENTS, &state) == 0 else { throw .last("KVM_GET_VCPU_EVENTS") }
        return state
    }

    public func setEvents(_ state: kvm_vcpu_events) throws(KVMError) {
        var copy = state
        guard ckvm_ioctl_ptr(fd, CKVM_SET_VCPU_EVENTS, &copy) == 0 else { throw .last("KVM_SET_VCPU_EVENTS") }
    }
}
#endif
