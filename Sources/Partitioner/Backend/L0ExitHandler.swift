import VMX

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

    public init(core: NestedVMXCore?) { self.core = core }

    public func handle(_ exit: VCPUExit) -> L0Response {
        switch exit {
        case .vmxInstruction(let instruction, let context):
            guard let core else { return .completeVMX(.exception(.invalidOpcode)) }
            return .completeVMX(core.vmx.execute(instruction, context: context, memory: core.memory))
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
        }
    }
}
