import Sizes

/// The largest values the controller accepts from a request, a heartbeat or a registration.
///
/// Every count and size that comes in is checked against these before any arithmetic uses it,
/// so that a value near 2^64 is refused with a sentence instead of trapping in a sum.
public enum Bounds {
    /// Cores of a blade, of a partition, vCPUs of a VM: more than any x86 blade has (x2APIC
    /// addresses 2^32 CPUs, but no board carries more than a few hundred).
    public static let maxCores = 4096
    /// Bytes of memory or disk of any one object: `ByteSize.maximum` (4096 TiB).
    public static let maxBytes = ByteSize.maximum
    /// LUNs of one disk.
    public static let maxLUNs = 1 << 20

    /// `nil` when `value` is within `1...maxCores`, else why not, naming `what`.
    static func coreProblem(_ value: Int, _ what: String) -> String? {
        if value < 1 { return "\(what) must be at least 1" }
        if value > maxCores { return "\(what) \(value) is more than any blade has (at most \(maxCores))" }
        return nil
    }

    /// `nil` when `bytes` is at most `maxBytes`, else why not, naming `what`.
    static func sizeProblem(_ bytes: UInt64, _ what: String) -> String? {
        bytes > maxBytes ? "\(what) \(bytes) bytes is more than any blade has (at most \(ByteSize.format(maxBytes)))" : nil
    }
}

/// Sums that cannot trap.
extension Sequence where Element == UInt64 {
    /// The sum, or `nil` when it does not fit 64 bits.
    func checkedSum() -> UInt64? {
        var total: UInt64 = 0
        for value in self {
            let (sum, overflow) = total.addingReportingOverflow(value)
            if overflow { return nil }
            total = sum
        }
        return total
    }

    /// The sum, or `UInt64.max` when it does not fit (for counters that only inform).
    public func saturatingSum() -> UInt64 { checkedSum() ?? .max }
}

extension Sequence where Element == Int {
    /// The sum, or `nil` when it does not fit.
    func checkedSum() -> Int? {
        var total = 0
        for value in self {
            let (sum, overflow) = total.addingReportingOverflow(value)
            if overflow { return nil }
            total = sum
        }
        return total
    }
}
