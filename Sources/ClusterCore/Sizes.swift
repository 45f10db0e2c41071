/// Sizes as people type them: a whole number and a binary unit (`512MiB`, `10GiB`, `1TiB`,
/// or plain bytes). Decimal units (`10GB`) and bare letters (`10G`) are refused with a hint,
/// so that nobody gets 7 % less memory than they meant.
public enum Sizes {
    static let units: [(String, UInt64)] = [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40), ("b", 1), ("", 1)]

    /// The bytes `text` means, or a message saying why it is not a size.
    public static func parse(_ text: String) -> Result<UInt64, SizeError> {
        let trimmed = text.filter { !$0.isWhitespace }
        guard !trimmed.isEmpty else { return .failure(SizeError(text: text, problem: "is empty")) }
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        guard !digits.isEmpty else {
            if trimmed.hasPrefix("-") { return .failure(SizeError(text: text, problem: "is negative; a size is a whole number of bytes with a binary unit, like 512MiB or 10GiB")) }
            return .failure(SizeError(text: text, problem: "is not a size; write a whole number with a binary unit, like 512MiB or 10GiB"))
        }
        if unit.contains(".") || unit.contains(",") {
            return .failure(SizeError(text: text, problem: "has a fraction; write a whole number of a smaller unit (1.5GiB is 1536MiB)"))
        }
        guard let multiplier = units.first(where: { $0.0 == unit })?.1 else {
            let decimal = ["k": "KiB", "kb": "KiB", "m": "MiB", "mb": "MiB", "g": "GiB", "gb": "GiB", "t": "TiB", "tb": "TiB"]
            if let binary = decimal[unit] {
                return .failure(SizeError(text: text, problem: "is ambiguous: write \(digits)\(binary) (sizes use binary units: KiB, MiB, GiB, TiB)"))
            }
            return .failure(SizeError(text: text, problem: "has an unknown unit '\(trimmed.dropFirst(digits.count))'; use B, KiB, MiB, GiB or TiB"))
        }
        guard let number = UInt64(digits) else { return .failure(SizeError(text: text, problem: "is too large")) }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        if overflow { return .failure(SizeError(text: text, problem: "is too large")) }
        return .success(bytes)
    }

    /// Bytes the short way: `10GiB`, `512MiB`, `1536KiB`, `100B`.
    public static func format(_ bytes: UInt64) -> String {
        for (name, size) in [("TiB", UInt64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= size && bytes % size == 0 {
            return "\(bytes / size)\(name)"
        }
        return "\(bytes)B"
    }
}

/// A text that is not a size.
public struct SizeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public var problem: String
    public var description: String { "'\(text)' \(problem)" }
}
