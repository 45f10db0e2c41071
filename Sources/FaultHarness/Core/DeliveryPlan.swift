public import SeededRandom
/// When the bytes of one direction of a faulty link are delivered: the pure half of the fault
/// proxy. Each chunk that arrives is cut into segments, each given the time it leaves at:
/// after the chunk's latency (with jitter), after the previous segment (order is kept, as TCP
/// keeps it), and after the time the rate limit needs to send it.
public struct DeliveryPlanner: Sendable {
    /// One piece of a chunk: `length` bytes from `offset`, delivered at `time` (seconds).
    public struct Segment: Equatable, Sendable {
        public var offset: Int
        public var length: Int
        public var time: Double

        public init(offset: Int, length: Int, time: Double) {
            self.offset = offset
            self.length = length
            self.time = time
        }
    }

    public struct Plan: Equatable, Sendable {
        public var segments: [Segment]
        /// The limit of `closeAfterBytes` is reached: close the connection after the segments.
        public var closeAfter: Bool
        /// Bytes of the chunk beyond the limit, dropped.
        public var dropped: Int
    }

    /// When the last segment planned leaves.
    public private(set) var lastDelivery: Double = 0
    /// Bytes planned so far on this direction.
    public private(set) var passed: UInt64 = 0
    private var random: SplitMix64

    public init(random: SplitMix64) { self.random = random }

    /// The plan for a chunk of `size` bytes that arrived at `now` (seconds, any monotonic origin).
    public mutating func plan(size: Int, at now: Double, faults: DirectionFaults) -> Plan {
        var allowed = size
        var closeAfter = false
        if let limit = faults.closeAfterBytes {
            let left = limit > passed ? limit - passed : 0
            allowed = Int(min(UInt64(size), left))
            closeAfter = passed + UInt64(allowed) >= limit
        }
        var latency = faults.latencyMillis
        if faults.jitterMillis > 0 { latency += (random.unit() * 2 - 1) * faults.jitterMillis }
        let arrival = now + max(0, latency) / 1000
        let slice = faults.sliceBytes ?? max(allowed, 1)
        var segments: [Segment] = []
        var offset = 0
        while offset < allowed {
            let length = min(slice, allowed - offset)
            var start = max(lastDelivery, arrival + Double(segments.count) * faults.sliceDelayMillis / 1000)
            if let rate = faults.bytesPerSecond { start += Double(length) / rate }
            segments.append(Segment(offset: offset, length: length, time: start))
            lastDelivery = start
            offset += length
        }
        passed += UInt64(allowed)
        return Plan(segments: segments, closeAfter: closeAfter, dropped: size - allowed)
    }
}
