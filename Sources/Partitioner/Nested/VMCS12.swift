public import VMX

/// Values of VMCS fields as VMREAD and VMWRITE see them: stored by full field, truncated to
/// the field's width, with a high-access encoding naming the upper 32 bits of its field.
public struct VMCSFieldStore: Equatable, Sendable {
    private(set) var values: [VMCSField: UInt64] = [:]

    public init() {}

    public func read(_ field: VMCSField) -> UInt64 {
        let full = values[field.fullField] ?? 0
        if field.accessType == .high { return full >> 32 }
        return full & field.valueMask
    }

    public mutating func write(_ field: VMCSField, _ value: UInt64) {
        let full = field.fullField
        if field.accessType == .high {
            values[full] = ((values[full] ?? 0) & 0xFFFF_FFFF) | ((value & 0xFFFF_FFFF) << 32)
        } else {
            values[full] = value & field.valueMask
        }
    }

    /// The raw 64-bit value of a full field.
    func raw(_ field: VMCSField) -> UInt64 { values[field] ?? 0 }
    mutating func setRaw(_ field: VMCSField, _ value: UInt64) { values[field] = value == 0 ? nil : value }
}

/// The VMCS L0 keeps for L1 (Linux calls it vmcs12): the VMCS that L1 builds with VMWRITE
/// to describe its guest (L2), held by L0 and written to L1's memory in Nestor's layout.
public struct VMCS12: Equatable, Sendable {
    public var revisionIdentifier: UInt32
    public var launchState: LaunchState
    /// The VMXON epoch in which the VMCS was launched (VMRESUME after VMXOFF fails with 6).
    public var launchEpoch: UInt32
    private var fields = VMCSFieldStore()

    public init(revisionIdentifier: UInt32) {
        self.revisionIdentifier = revisionIdentifier
        self.launchState = .clear
        self.launchEpoch = 0
        // A fresh VMCS has no link (SDM 25.4.2: software should set all ones if unused).
        fields.write(.vmcsLinkPointer, ~0)
    }

    /// Reads a field as VMREAD returns it: the full value truncated to the field's width,
    /// or the high 32 bits for a high-access encoding.
    public func read(_ field: VMCSField) -> UInt64 { fields.read(field) }

    /// Writes a field as VMWRITE does: truncated to its width; a high-access encoding
    /// replaces only the upper 32 bits.
    public mutating func write(_ field: VMCSField, _ value: UInt64) { fields.write(field, value) }

    /// Whether the encoding names a component this VMCS supports.
    public static func supports(_ encoding: UInt64) -> Bool {
        guard encoding <= UInt64(UInt32.max) else { return false }
        let field = VMCSField(UInt32(encoding))
        return field.isKnown && !field.hasReservedBitsSet
    }

    // MARK: Layout in L1 memory

    /// The full-width fields in their layout order.
    public static let layoutFields: [VMCSField] = VMCSField.all.filter { $0.accessType == .full }
    /// Byte offset of the launch-state dword.
    static let launchStateOffset: UInt64 = 8
    static let epochOffset: UInt64 = 12
    /// Byte offset of the first field value; each field takes 8 bytes in layout order.
    static let fieldsOffset: UInt64 = 64
    static let layoutIndex: [VMCSField: Int] = Dictionary(
        uniqueKeysWithValues: layoutFields.enumerated().map { ($0.element, $0.offset) })

    /// The region image L0 writes back to L1's memory on VMCLEAR and on a VMPTRLD switch.
    public func regionImage() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VMCSRegionHeader.regionSize)
        func put32(_ offset: UInt64, _ value: UInt32) {
            for i in 0..<4 { bytes[Int(offset) + i] = UInt8(truncatingIfNeeded: value >> UInt32(i * 8)) }
        }
        func put64(_ offset: UInt64, _ value: UInt64) {
            for i in 0..<8 { bytes[Int(offset) + i] = UInt8(truncatingIfNeeded: value >> UInt64(i * 8)) }
        }
        put32(0, VMCSRegionHeader(revisionIdentifier: revisionIdentifier).firstDword)
        put32(Self.launchStateOffset, launchState == .launched ? 1 : 0)
        put32(Self.epochOffset, launchEpoch)
        for (index, field) in Self.layoutFields.enumerated() {
            put64(Self.fieldsOffset + UInt64(index * 8), fields.raw(field))
        }
        return bytes
    }

    /// Loads a region image; the caller has already checked the revision identifier.
    public init(regionImage bytes: [UInt8]) {
        func get32(_ offset: UInt64) -> UInt32 {
            (0..<4).reduce(0) { $0 | (UInt32(bytes[Int(offset) + $1]) << UInt32($1 * 8)) }
        }
        func get64(_ offset: UInt64) -> UInt64 {
            (0..<8).reduce(0) { $0 | (UInt64(bytes[Int(offset) + $1]) << UInt64($1 * 8)) }
        }
        self.revisionIdentifier = VMCSRegionHeader(firstDword: get32(0)).revisionIdentifier
        self.launchState = get32(Self.launchStateOffset) & 1 == 1 ? .launched : .clear
        self.launchEpoch = get32(Self.epochOffset)
        for (index, field) in Self.layoutFields.enumerated() {
            fields.setRaw(field, get64(Self.fieldsOffset + UInt64(index * 8)))
        }
    }
}

/// The shadow VMCS L0 keeps for the current vmcs12: only the shadowed fields, which L1
/// reads and writes without a VM exit.
public struct ShadowVMCS: Equatable, Sendable {
    public let fieldSet: ShadowFieldSet
    private var fields = VMCSFieldStore()

    public init(fieldSet: ShadowFieldSet) { self.fieldSet = fieldSet }

    public func read(_ field: VMCSField) -> UInt64 { fields.read(field) }
    public mutating func write(_ field: VMCSField, _ value: UInt64) { fields.write(field, value) }

    /// vmcs12 -> shadow, every shadowed field (L0 does this when it reflects an exit and on
    /// VMPTRLD). Returns how many fields it copied.
    @discardableResult
    public mutating func load(from vmcs12: VMCS12) -> Int {
        for field in fieldSet.all { write(field, vmcs12.read(field)) }
        return fieldSet.all.count
    }

    /// shadow -> vmcs12, the read-write fields (L1 can change only those without an exit).
    /// Returns how many fields it copied.
    @discardableResult
    public func store(into vmcs12: inout VMCS12) -> Int {
        for field in fieldSet.readWrite { vmcs12.write(field, read(field)) }
        return fieldSet.readWrite.count
    }

    /// True when `field`'s full field is one of the shadowed ones.
    public func holds(_ field: VMCSField) -> Bool {
        fieldSet.all.contains(field.fullField) || fieldSet.all.contains(field)
    }
}
