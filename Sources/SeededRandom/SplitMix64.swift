/// SplitMix64: a small, fast, deterministic generator (same seed, same sequence, on every
/// platform). The placement benchmark, the simulated backend and the fault harness draw from
/// it, so that a synthetic cluster, a simulation run or a fault schedule replays from its seed.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// A uniform integer in 0..<bound (bound > 0).
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "below(_:) needs a positive bound")
        return Int(next() % UInt64(bound))
    }

    /// A derived generator for a sub-stream (a vCPU, a connection, a client), independent of
    /// the others and of what the parent draws afterwards.
    public func fork(_ stream: UInt64) -> SplitMix64 {
        var copy = SplitMix64(seed: state ^ (stream &* 0xD1B5_4A32_D192_ED03))
        _ = copy.next()
        return copy
    }
}
