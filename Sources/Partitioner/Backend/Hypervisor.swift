
/// The backends a blade can run its LPARs on.
public enum BackendKind: String, Sendable, CaseIterable, Codable {
    /// Deterministic simulation in virtual time (any host).
    case sim
    /// Real virtual machines on /dev/kvm.
    case kvm
}

/// What a backend can do on this host.
public struct HypervisorCapabilities: Equatable, Sendable, Codable {
    public var kind: BackendKind
    /// L0 can expose VMX to an LPAR so it runs a guest hypervisor.
    public var nestedVMX: Bool
    /// L0 can use VMCS shadowing for such an LPAR.
    public var vmcsShadowing: Bool
    public var maxVCPUsPerLPAR: Int
    public var summary: String

    public init(kind: BackendKind, nestedVMX: Bool, vmcsShadowing: Bool, maxVCPUsPerLPAR: Int, summary: String) {
        self.kind = kind
        self.nestedVMX = nestedVMX
        self.vmcsShadowing = vmcsShadowing
        self.maxVCPUsPerLPAR = maxVCPUsPerLPAR
        self.summary = summary
    }
}

/// Why a backend operation failed.
public enum BackendError: Error, Equatable, Sendable, CustomStringConvertible {
    case unavailable(backend: BackendKind, reason: String)
    case invalidConfiguration(String)
    case vcpuIndexOutOfRange(index: Int, count: Int)
    case guestFault(String)
    case internalError(String)

    public var description: String {
        switch self {
        case .unavailable(let backend, let reason): return "backend \(backend.rawValue) is not available: \(reason)"
        case .invalidConfiguration(let reason): return "invalid configuration: \(reason)"
        case .vcpuIndexOutOfRange(let index, let count): return "vCPU \(index) does not exist (the LPAR has \(count))"
        case .guestFault(let reason): return "guest fault: \(reason)"
        case .internalError(let reason): return "internal error: \(reason)"
        }
    }
}

/// A hypervisor backend: it creates virtual machines, one per LPAR (Cloud Hypervisor's
/// `Hypervisor` -> `Vm` -> `Vcpu` split).
public protocol Hypervisor: Sendable {
    var capabilities: HypervisorCapabilities { get }
    func createVM(_ spec: LPARSpec) throws(BackendError) -> any VirtualMachine
}

/// One LPAR's virtual machine.
public protocol VirtualMachine: AnyObject {
    var spec: LPARSpec { get }
    /// The LPAR's guest-physical memory.
    var memory: any GuestMemory { get }
    var vcpuCount: Int { get }
    func vcpu(_ index: Int) throws(BackendError) -> any VirtualCPU
}

/// One virtual CPU: `run` executes guest code until something L0 must handle, and `resume`
/// hands back L0's answer before the next `run`.
public protocol VirtualCPU: AnyObject {
    var index: Int { get }
    func run() throws(BackendError) -> VCPUExit
    func resume(_ response: L0Response) throws(BackendError)
}

/// Why a vCPU stopped, in backend-neutral terms.
public enum VCPUExit: Equatable, Sendable {
    case ioOut(port: UInt16, size: Int, value: UInt32)
    case ioIn(port: UInt16, size: Int)
    case mmioRead(address: UInt64, size: Int)
    case mmioWrite(address: UInt64, size: Int, value: UInt64)
    /// The guest (L1, or the LPAR's only level) halted until an interrupt.
    case hlt
    /// Triple fault: the guest shut itself down.
    case shutdown
    case failEntry(reason: UInt64)
    case internalError(String)
    /// The backend's run returned without anything happening in the guest, because L0 asked
    /// the vCPU's thread to look up (KVM_RUN interrupted by a signal).
    case interrupted
    /// L1 executed a VMX instruction that trapped to L0 (through the VMX gate or hardware).
    case vmxInstruction(VMXInstruction, context: L1InstructionContext)
    /// L1 read an MSR that L0 emulates (the VMX capability MSRs).
    case msrRead(index: UInt32)
    /// L2 exited to L0.
    case l2Exit(L2Exit)
}

/// L0's answer to an exit.
public enum L0Response: Equatable, Sendable {
    /// L1 continues after its VMX instruction with this outcome (RFLAGS, value, fault), or,
    /// for `.enteredL2`, the vCPU switches to L2.
    case completeVMX(VMXOutcome)
    /// L0 handled the L2 exit; L2 continues.
    case resumeL2(L0Handling)
    /// The L2 exit was reflected: L1 continues at this state, its vmcs12 holds the exit.
    case resumeL1(at: VMCSState)
    /// L1's RDMSR completes with this value.
    case completeMSRRead(UInt64)
    /// L0's own device model must handle this I/O for the LPAR.
    case emulateDevice
    /// The vCPU sleeps until an interrupt arrives for it.
    case haltUntilInterrupt
    /// The LPAR failed; only it stops.
    case failLPAR(reason: String)
    /// Nothing to do: the guest continues as it was.
    case resumeGuest
}
