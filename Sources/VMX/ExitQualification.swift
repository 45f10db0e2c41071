/// The exit qualification of an I/O-instruction exit (SDM Table 28-5).
public struct IOExitQualification: Equatable, Sendable {
    public enum Direction: Sendable, Equatable { case output, input }
    public enum Operand: Sendable, Equatable { case dx, immediate }

    public var size: Int
    public var direction: Direction
    public var isString: Bool
    public var isRepeated: Bool
    public var operand: Operand
    public var port: UInt16

    public init(size: Int, direction: Direction, port: UInt16, isString: Bool = false,
                isRepeated: Bool = false, operand: Operand = .dx) {
        self.size = size
        self.direction = direction
        self.port = port
        self.isString = isString
        self.isRepeated = isRepeated
        self.operand = operand
    }

    /// Decodes a raw qualification; nil when the size field is not 1, 2 or 4 bytes.
    public init?(rawValue: UInt64) {
        switch rawValue & 7 {
        case 0: size = 1
        case 1: size = 2
        case 3: size = 4
        default: return nil
        }
        direction = rawValue & (1 << 3) != 0 ? .input : .output
        isString = rawValue & (1 << 4) != 0
        isRepeated = rawValue & (1 << 5) != 0
        operand = rawValue & (1 << 6) != 0 ? .immediate : .dx
        port = UInt16(truncatingIfNeeded: rawValue >> 16)
    }

    public var rawValue: UInt64 {
        var value = UInt64(size == 4 ? 3 : size - 1)
        if direction == .input { value |= 1 << 3 }
        if isString { value |= 1 << 4 }
        if isRepeated { value |= 1 << 5 }
        if operand == .immediate { value |= 1 << 6 }
        return value | (UInt64(port) << 16)
    }
}

/// The exit qualification of a control-register access (SDM Table 28-3).
public struct CRAccessQualification: Equatable, Sendable {
    public enum AccessType: UInt8, Sendable, Equatable { case movToCR = 0, movFromCR = 1, clts = 2, lmsw = 3 }

    public var controlRegister: UInt8
    public var accessType: AccessType
    /// LMSW operand type: true when the operand was in memory.
    public var lmswMemoryOperand: Bool
    /// The general-purpose register of a MOV to/from CR (0 = RAX ... 15 = R15).
    public var generalRegister: UInt8
    /// The LMSW source data (bits 31:16).
    public var lmswSourceData: UInt16

    public init(controlRegister: UInt8, accessType: AccessType, generalRegister: UInt8 = 0,
                lmswMemoryOperand: Bool = false, lmswSourceData: UInt16 = 0) {
        self.controlRegister = controlRegister & 0xF
        self.accessType = accessType
        self.generalRegister = generalRegister & 0xF
        self.lmswMemoryOperand = lmswMemoryOperand
        self.lmswSourceData = lmswSourceData
    }

    public init(rawValue: UInt64) {
        controlRegister = UInt8(rawValue & 0xF)
        accessType = AccessType(rawValue: UInt8((rawValue >> 4) & 3))!
        lmswMemoryOperand = rawValue & (1 << 6) != 0
        generalRegister = UInt8((rawValue >> 8) & 0xF)
        lmswSourceData = UInt16(truncatingIfNeeded: rawValue >> 16)
    }

    public var rawValue: UInt64 {
        UInt64(controlRegister) | (UInt64(accessType.rawValue) << 4)
            | (lmswMemoryOperand ? 1 << 6 : 0) | (UInt64(generalRegister) << 8)
            | (UInt64(lmswSourceData) << 16)
    }
}

/// The exit qualification of an EPT violation (SDM Table 28-7).
public struct EPTViolationQualification: Equatable, Sendable {
    public var read: Bool
    public var write: Bool
    public var instructionFetch: Bool
    /// Bits 5:3: what the guest-physical address's EPT entries allowed (read, write, execute).
    public var entryReadable: Bool
    public var entryWritable: Bool
    public var entryExecutable: Bool
    /// Bit 7: the guest-linear-address field is valid.
    public var linearAddressValid: Bool
    /// Bit 8 (when bit 7 is set): the access was to the translated address, not a page walk.
    public var accessToTranslatedAddress: Bool
    /// Bit 12: NMI unblocking due to IRET.
    public var nmiUnblockingDueToIRET: Bool

    public init(read: Bool = false, write: Bool = false, instructionFetch: Bool = false,
                entryReadable: Bool = false, entryWritable: Bool = false,
                entryExecutable: Bool = false, linearAddressValid: Bool = false,
                accessToTranslatedAddress: Bool = false, nmiUnblockingDueToIRET: Bool = false) {
        self.read = read
        self.write = write
        self.instructionFetch = instructionFetch
        self.entryReadable = entryReadable
        self.entryWritable = entryWritable
        self.entryExecutable = entryExecutable
        self.linearAddressValid = linearAddressValid
        self.accessToTranslatedAddress = accessToTranslatedAddress
        self.nmiUnblockingDueToIRET = nmiUnblockingDueToIRET
    }

    public init(rawValue: UInt64) {
        read = rawValue & (1 << 0) != 0
        write = rawValue & (1 << 1) != 0
        instructionFetch = rawValue & (1 << 2) != 0
        entryReadable = rawValue & (1 << 3) != 0
        entryWritable = rawValue & (1 << 4) != 0
        entryExecutable = rawValue & (1 << 5) != 0
        linearAddressValid = rawValue & (1 << 7) != 0
        accessToTranslatedAddress = rawValue & (1 << 8) != 0
        nmiUnblockingDueToIRET = rawValue & (1 << 12) != 0
    }

    public var rawValue: UInt64 {
        var v: UInt64 = 0
        if read { v |= 1 << 0 }
        if write { v |= 1 << 1 }
        if instructionFetch { v |= 1 << 2 }
        if entryReadable { v |= 1 << 3 }
        if entryWritable { v |= 1 << 4 }
        if entryExecutable { v |= 1 << 5 }
        if linearAddressValid { v |= 1 << 7 }
        if accessToTranslatedAddress { v |= 1 << 8 }
        if nmiUnblockingDueToIRET { v |= 1 << 12 }
        return v
    }
}

/// The interruption-information format shared by the VM-exit and VM-entry interruption fields
/// and the IDT-vectoring field (SDM 25.8.3, 25.9.2).
public struct InterruptionInfo: Equatable, Sendable {
    public enum Kind: UInt8, Sendable, Equatable {
        case externalInterrupt = 0, reserved = 1, nmi = 2, hardwareException = 3,
             softwareInterrupt = 4, privilegedSoftwareException = 5, softwareException = 6,
             otherEvent = 7
    }

    public var vector: UInt8
    public var kind: Kind
    public var deliversErrorCode: Bool
    public var nmiUnblocking: Bool
    public var isValid: Bool

    public init(vector: UInt8, kind: Kind, deliversErrorCode: Bool = false,
                nmiUnblocking: Bool = false, isValid: Bool = true) {
        self.vector = vector
        self.kind = kind
        self.deliversErrorCode = deliversErrorCode
        self.nmiUnblocking = nmiUnblocking
        self.isValid = isValid
    }

    public init(rawValue: UInt32) {
        vector = UInt8(rawValue & 0xFF)
        kind = Kind(rawValue: UInt8((rawValue >> 8) & 7))!
        deliversErrorCode = rawValue & (1 << 11) != 0
        nmiUnblocking = rawValue & (1 << 12) != 0
        isValid = rawValue & (1 << 31) != 0
    }

    public var rawValue: UInt32 {
        UInt32(vector) | (UInt32(kind.rawValue) << 8) | (deliversErrorCode ? 1 << 11 : 0)
            | (nmiUnblocking ? 1 << 12 : 0) | (isValid ? 1 << 31 : 0)
    }

    /// The "valid" bit alone (bit 31).
    public static let validBit: UInt32 = 1 << 31
}
