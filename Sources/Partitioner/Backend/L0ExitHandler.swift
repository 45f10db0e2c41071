import VMX
public import Logging

/// The nested-VMX state of one vCPU, shared by L0's exit handler and the backend's side of
/// VMCS shadowing (the processor, or Nestor's VMX microcode page), as a VMCS is shared by
/// software and hardware.
public final class NestedVMXCore {
    public var vmx: NestedVMX
    public let memory: any GuestMemory

    public init(vmx: NestedVMX, memory: any GuestMemory) {
        self.vmx = vmx
        self.memory = memory
    }
}

/// L0's handling of every exit of one vCPU, the same for every backend.
///
/// VMX instructions go to the nested-VMX core; L2 exits are routed (kept or reflected);
/// a triple fault or an internal error fails the LPAR and nothing else.
public struct L0ExitHandler {
    /// nil for an LPAR without `vmm`: VMX instructions then raise #UD.
    public let core: NestedVMXCore?
    public let lpar: String
    public let vcpu: Int
    private let logger: Logger

    public init(core: NestedVMXCore?, lpar: String = "", vcpu: Int = 0,
                logger: Logger = Logger(label: "nestor.partitioner.l0", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.core = core
        self.lpar = lpar
        self.vcpu = vcpu
        self.logger = logger
    }

    public func handle(_ exit: VCPUExit) -> L0Response {
        let response = decide(exit)
        switch response {
        case .failLPAR(let reason):
            logger.warning("LPAR failed", metadata: [
                "lpar.name": "\(lpar)", "lpar.vcpu": "\(vcpu)", "lpar.failure": "\(reason)",
            ])
        case .completeVMX(.failValid(let error)):
            if let core, let why = core.vmx.lastEntryFailure,
               error == .entryInvalidControlFields || error == .entryInvalidHostStateFields {
                logger.debug("L1's VM entry refused", metadata: [
                    "lpar.name": "\(lpar)", "lpar.vcpu": "\(vcpu)", "vmx.error": "\(error.rawValue)", "vmx.reason": "\(why)",
                ])
            }
        default:
            break
        }
        return response
    }

    private func decide(_ exit: VCPUExit) -> L0Response {
        switch exit {
        case .vmxInstruction(let instruction, let context):
            guard let core else { return .completeVMX(.exception(.invalidOpcode)) }
            return .completeVMX(core.vmx.execute(instruction, context: context, memory: core.memory))
        case .msrRead(let index):
            guard let core, let msr = VMXCapabilityMSR(rawValue: index) else {
                return .failLPAR(reason: "RDMSR of MSR \(hex(UInt64(index))) raised #GP (L0 emulates the VMX capability MSRs only)")
            }
            return .completeMSRRead(core.vmx.capabilities.read(msr))
        case .l2Exit(let exit):
            guard let core else { return .failLPAR(reason: "an L2 exit on an LPAR without vmm") }
            if exit.reason == .tripleFault, !core.vmx.inL2 {
                return .failLPAR(reason: "triple fault")
            }
            switch core.vmx.route(exit, memory: core.memory) {
            case .handledByL0(let handling): return .resumeL2(handling)
            case .reflected(let state): return .resumeL1(at: state)
            }
        case .hlt:
            return .haltUntilInterrupt
        case .shutdown:
            return .failLPAR(reason: "triple fault (shutdown)")
        case .failEntry(let reason):
            return .failLPAR(reason: "VM entry failed (hardware reason \(hex(reason)))")
        case .internalError(let reason):
            return .failLPAR(reason: "internal error: \(reason)")
        case .ioOut, .ioIn, .mmioRead, .mmioWrite:
            return .emulateDevice
        case .interrupted:
            return .resumeGuest
        }
    }
}
