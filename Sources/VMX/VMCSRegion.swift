/// The architectural header of a VMCS region in memory (SDM 25.2): the first dword holds the
/// VMCS revision identifier in bits 30:0 and the shadow-VMCS indicator in bit 31; the second
/// dword is the VMX-abort indicator. The rest of the 4 KiB region is implementation-specific.
public struct VMCSRegionHeader: Equatable, Sendable {
    public var revisionIdentifier: UInt32
    public var isShadow: Bool
    public var abortIndicator: UInt32

    public init(revisionIdentifier: UInt32, isShadow: Bool = false, abortIndicator: UInt32 = 0) {
        self.revisionIdentifier = revisionIdentifier & 0x7FFF_FFFF
        self.isShadow = isShadow
        self.abortIndicator = abortIndicator
    }

    /// Decodes the first dword of a region.
    public init(firstDword: UInt32, abortIndicator: UInt32 = 0) {
        self.init(
            revisionIdentifier: firstDword & 0x7FFF_FFFF, isShadow: firstDword & 0x8000_0000 != 0,
            abortIndicator: abortIndicator)
    }

    /// The first dword as stored in memory.
    public var firstDword: UInt32 { revisionIdentifier | (isShadow ? 0x8000_0000 : 0) }

    /// The size of every VMCS (and VMXON) region an L0 reports in IA32_VMX_BASIC.
    public static let regionSize = 4096
}

/// The launch state of a VMCS (SDM 25.1): VMCLEAR makes it clear, VMLAUNCH makes it launched.
public enum LaunchState: String, Sendable, Equatable, Codable {
    case clear, launched
}
