import InputText

/// Sizes as people type them, in flags, config files and spec files alike: a whole number and
/// a binary unit (`512MiB`, `10GiB`, `1TiB`, or the one-letter form `512M`, `10G`, `1T`, as
/// QEMU's `-m` reads it), or plain bytes. Two-letter decimal-looking units (`10GB`) are refused
/// with a hint, so that nobody gets 7 % less or more memory than they meant.
public enum ByteSize {
    public static let kib: UInt64 = 1 << 10
    public static let mib: UInt64 = 1 << 20
    public static let gib: UInt64 = 1 << 30
    public static let tib: UInt64 = 1 << 40

    /// The largest size anything in Nestor may have: 4096 TiB (2^52 bytes), the most physical
    /// memory an x86-64 machine can address (MAXPHYADDR is at most 52 bits, Intel SDM Vol. 3A
    /// 4.1.4), and the bound for disks too. No blade has more; below it every sum of the sizes
    /// of up to 4096 objects is exact in 64 bits.
    public static let maximum: UInt64 = 1 << 52

    static let units: [String: UInt64] = [
        "": 1, "b": 1,
        "k": kib, "kib": kib, "m": mib, "mib": mib, "g": gib, "gib": gib, "t": tib, "tib": tib,
    ]
    static let ambiguous: [String: String] = ["kb": "KiB", "mb": "MiB", "gb": "GiB", "tb": "TiB"]

    /// The bytes `text` means, or a message saying why it is not a size.
    public static func parse(_ text: String) -> Result<UInt64, SizeError> {
        let trimmed = text.filter { !$0.isWhitespace }
        guard !trimmed.isEmpty else { return .failure(SizeError(text: text, problem: "is empty")) }
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        guard !digits.isEmpty else {
            if trimmed.hasPrefix("-") {
                return .failure(SizeError(text: text, problem: "is negative; a size is a whole number of bytes with a binary unit, like 512MiB or 10GiB"))
            }
            return .failure(SizeError(text: text, problem: "is not a size; write a whole number with a binary unit, like 512MiB or 10GiB"))
        }
        if unit.contains(".") || unit.contains(",") {
            return .failure(SizeError(text: text, problem: "has a fraction; write a whole number of a smaller unit (1.5GiB is 1536MiB)"))
        }
        guard let multiplier = units[unit] else {
            if let binary = ambiguous[unit] {
                return .failure(SizeError(text: text, problem: "is ambiguous: write \(digits)\(binary) (sizes use binary units: KiB, MiB, GiB, TiB)"))
            }
            return .failure(SizeError(text: text, problem: "has an unknown unit '\(trimmed.dropFirst(digits.count))'; use B, KiB, MiB, GiB or TiB"))
        }
        guard let number = UInt64(digits) else {
            return .failure(SizeError(text: text, problem: "is too large: sizes go up to \(format(maximum)), more than any blade has"))
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        if overflow || bytes > maximum {
            return .failure(SizeError(text: text, problem: "is too large: sizes go up to \(format(maximum)), more than any blade has"))
        }
        return .success(bytes)
    }

    /// Bytes the short way, in the grammar `parse` reads back: `10GiB`, `512MiB`, `1536KiB`, `100B`.
    /// A figure for people: "12.3MiB", "1.0GiB", "512B" (one decimal, the largest unit that
    /// keeps it at least 1).
    public static func approximate(_ bytes: UInt64) -> String {
        for (name, size) in [("TiB", tib), ("GiB", gib), ("MiB", mib), ("KiB", kib)] where bytes >= size {
            let tenths = (Double(bytes) / Double(size) * 10).rounded()
            return "\(Int(tenths) / 10).\(Int(tenths) % 10)\(name)"
        }
        return "\(bytes)B"
    }

    public static func format(_ bytes: UInt64) -> String {
        for (name, size) in [("TiB", tib), ("GiB", gib), ("MiB", mib), ("KiB", kib)] where bytes >= size && bytes % size == 0 {
            return "\(bytes / size)\(name)"
        }
        return "\(bytes)B"
    }
}

/// A text that is not a size.
public struct SizeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public var problem: String
    public var description: String { "'\(InputText.shown(text))' \(problem)" }
}
