public import VMX

/// A guest's architectural state in VMCS terms: the values of the guest-state fields
/// (or, for L1 resuming at its host state, of the host-state fields).
public struct VMCSState: Equatable, Sendable {
    public private(set) var values: [VMCSField: UInt64]

    public init(_ values: [VMCSField: UInt64] = [:]) { self.values = values }

    public subscript(field: VMCSField) -> UInt64 {
        get { values[field] ?? 0 }
        set { values[field] = newValue }
    }

    public var rip: UInt64 { self[.guestRIP] }
    public var rsp: UInt64 { self[.guestRSP] }
    public var rflags: UInt64 { self[.guestRFLAGS] }

    /// The guest-state area fields (type 2, full access) that a VM exit saves and a VM
    /// entry loads.
    public static let guestStateFields: [VMCSField] = VMCSField.all.filter {
        $0.type == .guestState && $0.accessType == .full
    }

    /// The host-state area fields (type 3, full access) a VM exit loads.
    public static let hostStateFields: [VMCSField] = VMCSField.all.filter {
        $0.type == .hostState && $0.accessType == .full
    }

    /// The VM-exit information fields a VM exit writes.
    public static let exitInformationFields: [VMCSField] = [
        .vmExitReason, .exitQualification, .vmExitIntrInfo, .vmExitIntrErrorCode,
        .idtVectoringInfoField, .idtVectoringErrorCode, .vmExitInstructionLen,
        .vmxInstructionInfo, .guestLinearAddress, .guestPhysicalAddress,
    ]

    /// A flat 64-bit guest at `rip` with paging on (CR0.PE|PG, CR4.PAE, EFER.LME|LMA).
    public static func longMode(rip: UInt64, rsp: UInt64 = 0, cr3: UInt64 = 0x1000) -> VMCSState {
        var state = VMCSState()
        state[.guestRIP] = rip
        state[.guestRSP] = rsp
        state[.guestRFLAGS] = 0x202
        state[.guestCR0] = 0x8000_0031   // PG | NE | ET | PE
        state[.guestCR3] = cr3
        state[.guestCR4] = 0x2020        // VMXE | PAE
        state[.guestIA32EFER] = 0x500    // LMA | LME
        state[.guestCSSelector] = 0x10
        state[.guestCSARBytes] = 0xA09B  // present, code, L=1, G=1
        state[.guestCSLimit] = 0xFFFF_FFFF
        for (sel, ar, limit) in [(VMCSField.guestSSSelector, VMCSField.guestSSARBytes, VMCSField.guestSSLimit),
                                 (.guestDSSelector, .guestDSARBytes, .guestDSLimit),
                                 (.guestESSelector, .guestESARBytes, .guestESLimit)] {
            state[sel] = 0x18
            state[ar] = 0xC093
            state[limit] = 0xFFFF_FFFF
        }
        state[.guestFSARBytes] = 0x1_0000   // unusable
        state[.guestGSARBytes] = 0x1_0000
        state[.guestLDTRARBytes] = 0x1_0000
        state[.guestTRSelector] = 0x28
        state[.guestTRARBytes] = 0x8B
        state[.guestTRLimit] = 0x67
        state[.guestActivityState] = 0
        state[.guestInterruptibilityInfo] = 0
        state[.vmcsLinkPointer] = ~0
        return state
    }
}
