/// Formats a value as `0x` followed by upper-case hex digits, zero-padded to `digits`.
public func hex<T: BinaryInteger>(_ value: T, digits: Int = 0) -> String {
    let text = String(value, radix: 16, uppercase: true)
    let padding = max(0, digits - text.count)
    return "0x" + String(repeating: "0", count: padding) + text
}
