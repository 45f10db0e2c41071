/// A VMREAD or VMWRITE bitmap (SDM 25.6.15): 4 KiB, one bit per encoding value in bits 14:0.
///
/// In VMX non-root operation with "VMCS shadowing" on, a VMREAD/VMWRITE whose encoding has a
/// clear bit here reads or writes the shadow VMCS without a VM exit; a set bit, or any
/// encoding with a bit above 14 set, causes a VM exit to L0.
public struct VMXAccessBitmap: Equatable, Sendable {
    /// Bytes in a bitmap page.
    public static let byteCount = 4096
    /// Bits in a bitmap page, one per encoding 0x0000...0x7FFF.
    public static let bitCount = byteCount * 8

    private var words: [UInt64]

    /// A bitmap with every bit set: every access traps.
    public static var trapAll: VMXAccessBitmap { VMXAccessBitmap(words: Array(repeating: ~0, count: bitCount / 64)) }

    init(words: [UInt64]) { self.words = words }

    /// Builds a bitmap from its 4 KiB page image (little-endian, bit n of byte k is encoding 8k+n).
    public init?(page: [UInt8]) {
        guard page.count == VMXAccessBitmap.byteCount else { return nil }
        var words = [UInt64](repeating: 0, count: VMXAccessBitmap.bitCount / 64)
        for (index, byte) in page.enumerated() {
            words[index / 8] |= UInt64(byte) << UInt64((index % 8) * 8)
        }
        self.words = words
    }

    /// The 4 KiB page image L0 maps (read-only) for the hardware or the microcode page.
    public var page: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VMXAccessBitmap.byteCount)
        for index in 0..<bytes.count {
            bytes[index] = UInt8(truncatingIfNeeded: words[index / 8] >> UInt64((index % 8) * 8))
        }
        return bytes
    }

    /// True when an access to `encoding` causes a VM exit.
    public func traps(_ encoding: UInt64) -> Bool {
        guard encoding <= 0x7FFF else { return true }
        let bit = Int(encoding)
        return words[bit / 64] & (1 << UInt64(bit % 64)) != 0
    }

    /// True when an access to `field` causes a VM exit.
    public func traps(_ field: VMCSField) -> Bool { traps(UInt64(field.rawValue)) }

    /// Clears the bit of `field` so its access no longer traps.
    public mutating func pass(_ field: VMCSField) {
        guard let bit = field.bitmapIndex else { return }
        words[bit / 64] &= ~(1 << UInt64(bit % 64))
    }

    /// Sets the bit of `field` so its access traps.
    public mutating func trap(_ field: VMCSField) {
        guard let bit = field.bitmapIndex else { return }
        words[bit / 64] |= 1 << UInt64(bit % 64)
    }

    /// How many encodings pass without a trap.
    public var passCount: Int { words.reduce(0) { $0 + (64 - $1.nonzeroBitCount) } }
}

/// The set of VMCS fields L0 shadows: read-only fields L1 may VMREAD without an exit, and
/// read-write fields L1 may VMREAD and VMWRITE without an exit.
public struct ShadowFieldSet: Equatable, Sendable {
    public var name: String
    public var readOnly: [VMCSField]
    public var readWrite: [VMCSField]

    public init(name: String, readOnly: [VMCSField], readWrite: [VMCSField]) {
        self.name = name
        var seen = Set<VMCSField>()
        self.readOnly = readOnly.filter { seen.insert($0).inserted }
        self.readWrite = readWrite.filter { seen.insert($0).inserted }
    }

    /// Every shadowed field: read-only first, then read-write, each in the given order.
    public var all: [VMCSField] { readOnly + readWrite }

    /// The VMREAD bitmap: read-only and read-write fields pass, everything else traps.
    public var vmreadBitmap: VMXAccessBitmap {
        var bitmap = VMXAccessBitmap.trapAll
        for field in all { bitmap.pass(field) }
        return bitmap
    }

    /// The VMWRITE bitmap: only read-write fields pass.
    public var vmwriteBitmap: VMXAccessBitmap {
        var bitmap = VMXAccessBitmap.trapAll
        for field in readWrite { bitmap.pass(field) }
        return bitmap
    }

    /// Why a custom set is unusable, or nil when it is fine.
    ///
    /// A shadowed field must exist, and VM_INSTRUCTION_ERROR (which L0 writes while emulating
    /// a failing VMX instruction) must never be shadowed, as Linux KVM's rule says.
    public func problem() -> String? {
        for field in all where !field.isKnown {
            return "field \(field) is not a VMCS field"
        }
        if all.contains(.vmInstructionError) {
            return "VM_INSTRUCTION_ERROR must not be shadowed: L0 writes it when it emulates a failing VMX instruction"
        }
        for field in readWrite where field.isReadOnly {
            return "\(field) is a VM-exit information field and can only be shadowed read-only"
        }
        return nil
    }

    /// Linux KVM's default shadow set (arch/x86/kvm/vmx/vmcs_shadow_fields.h, v5.10):
    /// 12 read-only and 24 read-write fields.
    public static let linuxKVM = ShadowFieldSet(
        name: "linux-kvm",
        readOnly: [
            .vmExitReason, .vmExitIntrInfo, .vmExitInstructionLen, .idtVectoringInfoField,
            .idtVectoringErrorCode, .vmExitIntrErrorCode, .guestCSARBytes, .guestSSARBytes,
            .exitQualification, .guestLinearAddress, .guestPhysicalAddress,
            .guestPhysicalAddressHigh,
        ],
        readWrite: [
            .guestIntrStatus, .guestPMLIndex, .hostFSSelector, .hostGSSelector,
            .cpuBasedVMExecControl, .pinBasedVMExecControl, .exceptionBitmap,
            .vmEntryExceptionErrorCode, .vmEntryIntrInfoField, .vmEntryInstructionLen,
            .tprThreshold, .guestInterruptibilityInfo, .vmxPreemptionTimerValue,
            .guestRIP, .guestRSP, .guestCR0, .guestCR3, .guestCR4, .guestRFLAGS,
            .cr0GuestHostMask, .cr0ReadShadow, .cr4ReadShadow, .hostFSBase, .hostGSBase,
        ])

    /// The set of Linux KVM v3.10, when VMCS shadowing first landed (9 read-only, 25
    /// read-write fields, chosen for the KVM of that time and its instruction emulator).
    public static let linuxKVM310 = ShadowFieldSet(
        name: "linux-kvm-3.10",
        readOnly: [
            .vmExitReason, .vmExitIntrInfo, .vmExitInstructionLen, .idtVectoringInfoField,
            .idtVectoringErrorCode, .vmExitIntrErrorCode, .exitQualification,
            .guestLinearAddress, .guestPhysicalAddress,
        ],
        readWrite: [
            .guestRIP, .guestRSP, .guestCR0, .guestCR3, .guestCR4, .guestInterruptibilityInfo,
            .guestRFLAGS, .guestCSSelector, .guestCSARBytes, .guestCSLimit, .guestCSBase,
            .guestESBase, .cr0GuestHostMask, .cr0ReadShadow, .cr4ReadShadow, .tscOffset,
            .exceptionBitmap, .cpuBasedVMExecControl, .vmEntryExceptionErrorCode,
            .vmEntryIntrInfoField, .vmEntryInstructionLen, .hostFSBase, .hostGSBase,
            .hostFSSelector, .hostGSSelector,
        ])

    /// No field shadowed: shadowing on, but every VMREAD/VMWRITE still traps.
    public static let empty = ShadowFieldSet(name: "none", readOnly: [], readWrite: [])

    /// The sets that have names on the command line.
    public static let named: [ShadowFieldSet] = [.linuxKVM, .linuxKVM310, .empty]

    /// Finds a named set.
    public static func named(_ name: String) -> ShadowFieldSet? {
        named.first { $0.name == name }
    }
}
