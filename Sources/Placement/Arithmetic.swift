/// Arithmetic that cannot trap on values from requests, registrations or the store.
extension UInt64 {
    /// `self - other`, or 0 when `other` is larger (a blade that reports less than is claimed
    /// on it has no room, rather than a negative amount).
    func clampedMinus(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }

    /// `self + other`, or `UInt64.max` when the sum does not fit (more than any blade has).
    func clampedPlus(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}

extension Int64 {
    /// `value` as a signed amount, `Int64.max` when it is larger.
    init(clampingBytes value: UInt64) { self = value > UInt64(Int64.max) ? .max : Int64(value) }
}
