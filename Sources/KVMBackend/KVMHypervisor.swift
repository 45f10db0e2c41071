#if os(Linux)
import CKVM
import Glibc
public import KVM
public import Partitioner

/// The partitioner's backend on /dev/kvm: each LPAR a KVM virtual machine whose memory is
/// one memfd of the LPAR's size, mapped at guest-physical 0.
public struct KVMHypervisor: Hypervisor {
    public let kvm: KVM
    public let capabilities: HypervisorCapabilities

    public init(kvm: KVM) {
        self.kvm = kvm
        let module = KVMProbe.module() ?? "kvm"
        capabilities = HypervisorCapabilities(
            kind: .kvm, nestedVMX: false, vmcsShadowing: false,
            maxVCPUsPerLPAR: Int(max(1, kvm.checkExtension(KVM_CAP_MAX_VCPUS))),
            summary: "/dev/kvm (API \(kvm.apiVersion), \(module)): plain LPARs; guest hypervisors not yet")
    }

    public func createVM(_ spec: LPARSpec) throws(BackendError) -> any VirtualMachine {
        try KVMLPAR(spec: spec, kvm: kvm)
    }
}

/// An LPAR's guest-physical memory: the host mapping of its memfd.
public final class MappedGuestMemory: GuestMemory {
    public let base: UnsafeMutableRawPointer
    public let size: UInt64

    init(base: UnsafeMutableRawPointer, size: UInt64) {
        self.base = base
        self.size = size
    }

    public func read(_ address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        guard count >= 0, address <= size, UInt64(count) <= size - address else {
            throw .outOfRange(address: address, count: count, size: size)
        }
        return Array(UnsafeRawBufferPointer(start: base + Int(address), count: count))
    }

    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(GuestMemoryError) {
        guard address <= size, UInt64(bytes.count) <= size - address else {
            throw .outOfRange(address: address, count: bytes.count, size: size)
        }
        bytes.withUnsafeBytes { (base + Int(address)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
}

/// One LPAR as a KVM virtual machine: one vCPU per logical CPU of its spec (at most 16).
public final class KVMLPAR: VirtualMachine {
    public let spec: LPARSpec
    public let memory: any GuestMemory
    let mapped: MappedGuestMemory
    let vm: KVMVirtualMachine
    let cpus: [KVMLPARCPU]
    private let memoryFD: Int32

    init(spec: LPARSpec, kvm: KVM) throws(BackendError) {
        let size = spec.memory.size
        let fd = ckvm_memfd("nestor-lpar-\(spec.name)")
        guard fd >= 0, ftruncate(fd, off_t(size)) == 0, let base = ckvm_mmap_shared(fd, Int(size)) else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw .unavailable(backend: .kvm, reason: "cannot allocate \(size >> 20) MiB for LPAR \(spec.name): \(reason)")
        }
        do {
            let vm = try kvm.createVM()
            try vm.setTSSAddress(0xfffb_d000)
            try vm.setUserMemoryRegion(slot: 0, guestPhysical: 0, size: size, host: base)
            let count = max(1, min(spec.cpu.logicalCPUCount, GuestABI.maxVCPUs))
            var cpus: [KVMLPARCPU] = []
            for index in 0..<count { cpus.append(KVMLPARCPU(index: index, vcpu: try vm.createVCPU(id: index))) }
            self.cpus = cpus
            self.vm = vm
        } catch {
            ckvm_munmap(base, Int(size))
            close(fd)
            throw .unavailable(backend: .kvm, reason: "LPAR \(spec.name): \(error)")
        }
        self.spec = spec
        self.memoryFD = fd
        self.mapped = MappedGuestMemory(base: base, size: size)
        self.memory = mapped
    }

    deinit {
        ckvm_munmap(mapped.base, Int(mapped.size))
        close(memoryFD)
    }

    public var vcpuCount: Int { cpus.count }

    public func vcpu(_ index: Int) throws(BackendError) -> any VirtualCPU {
        guard cpus.indices.contains(index) else { throw .vcpuIndexOutOfRange(index: index, count: cpus.count) }
        return cpus[index]
    }
}

/// A KVM vCPU behind the backend protocol: KVM's exits in neutral terms.
public final class KVMLPARCPU: VirtualCPU {
    public let index: Int
    let vcpu: KVMVCPU

    init(index: Int, vcpu: KVMVCPU) {
        self.index = index
        self.vcpu = vcpu
    }

    public func run() throws(BackendError) -> VCPUExit {
        let exit: KVMExit
        do { exit = try vcpu.run() } catch { throw .internalError("\(error)") }
        switch exit {
        case .ioOut(let port, let size, let value): return .ioOut(port: port, size: size, value: value)
        case .ioIn(let port, let size): return .ioIn(port: port, size: size)
        case .mmioRead(let address, let size): return .mmioRead(address: address, size: size)
        case .mmioWrite(let address, let size, let value): return .mmioWrite(address: address, size: size, value: value)
        case .hlt: return .hlt
        case .shutdown: return .shutdown
        case .failEntry(let reason): return .failEntry(reason: reason)
        case .internalError(let suberror): return .internalError("KVM internal error, suberror \(suberror)")
        case .interrupted: return .interrupted
        case .other(let reason): return .internalError("unexpected KVM exit \(reason)")
        }
    }

    /// L0's answer. Device emulation writes its result with `completeIn` before the next run.
    public func resume(_ response: L0Response) throws(BackendError) {
        switch response {
        case .emulateDevice, .resumeGuest: return
        case .haltUntilInterrupt: usleep(1_000)   // no interrupt controller: the next tick
        case .failLPAR(let reason): throw .guestFault(reason)
        case .completeVMX, .resumeL2, .resumeL1:
            throw .invalidConfiguration("the kvm backend does not run guest hypervisors yet")
        }
    }

    /// The value the guest's `in` reads.
    public func completeIn(_ value: UInt32, size: Int) { vcpu.completeIOIn(value, size: size) }
}
#endif
