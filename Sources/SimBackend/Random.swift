public import SeededRandom

extension SplitMix64 {
    /// A value around `mean` with +/- `spread` relative uniform jitter, at least 1.
    public mutating func jitter(_ mean: Cycles, spread: Double) -> Cycles {
        guard spread > 0, mean > 0 else { return mean }
        let factor = 1 + spread * (2 * unit() - 1)
        return max(1, Cycles((Double(mean) * factor).rounded()))
    }
}
