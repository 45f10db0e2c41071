import SeededRandom
import FaultHarness
import Testing

/// The pure half of the fault proxy: when each byte of a faulty link is delivered.
@Suite struct DeliveryPlanTests {
    @Test func aHealthyLinkDeliversEveryChunkWholeAtOnce() {
        var planner = DeliveryPlanner(random: SplitMix64(seed: 1))
        let plan = planner.plan(size: 1000, at: 5, faults: .healthy)
        #expect(plan.segments == [.init(offset: 0, length: 1000, time: 5)])
        #expect(!plan.closeAfter && plan.dropped == 0)
    }

    @Test func latencyDelaysAndOrderIsKeptWhateverTheJitter() {
        var planner = DeliveryPlanner(random: SplitMix64(seed: 7))
        let faults = DirectionFaults(latencyMillis: 50, jitterMillis: 40)
        var last = 0.0
        for index in 0..<1000 {
            let now = Double(index) * 0.001
            let plan = planner.plan(size: 10, at: now, faults: faults)
            let time = plan.segments[0].time
            #expect(time >= now + 0.010 - 1e-9, "never earlier than latency minus jitter")
            #expect(time >= last, "never before the chunk in front of it")
            #expect(time <= max(last, now + 0.090 + 1e-9))
            last = time
        }
    }

    @Test func theSameSeedGivesTheSameTimes() {
        func times(_ seed: UInt64) -> [Double] {
            var planner = DeliveryPlanner(random: SplitMix64(seed: seed))
            return (0..<50).map { planner.plan(size: 1, at: Double($0), faults: .init(latencyMillis: 10, jitterMillis: 10)).segments[0].time }
        }
        #expect(times(3) == times(3))
        #expect(times(3) != times(4))
    }

    @Test func theRateLimitPacesTheBytes() {
        var planner = DeliveryPlanner(random: SplitMix64(seed: 1))
        let faults = DirectionFaults(bytesPerSecond: 1000, sliceBytes: 100)
        let plan = planner.plan(size: 300, at: 0, faults: faults)
        #expect(plan.segments.map(\.length) == [100, 100, 100])
        #expect(zip(plan.segments.map(\.time), [0.1, 0.2, 0.3]).allSatisfy { abs($0 - $1) < 1e-9 })
        // A chunk that arrives while the link is busy waits for it.
        #expect(planner.plan(size: 100, at: 0.05, faults: faults).segments[0].time > 0.4 - 1e-9)
    }

    @Test func slicingCutsAChunkIntoSmallSegmentsWithPauses() {
        var planner = DeliveryPlanner(random: SplitMix64(seed: 1))
        let plan = planner.plan(size: 10, at: 1, faults: .init(sliceBytes: 3, sliceDelayMillis: 10))
        #expect(plan.segments.map(\.length) == [3, 3, 3, 1])
        #expect(plan.segments.map(\.offset) == [0, 3, 6, 9])
        #expect(zip(plan.segments, plan.segments.dropFirst()).allSatisfy { $1.time > $0.time })
    }

    @Test func closeAfterLetsThroughExactlyTheLimitAcrossChunks() {
        var planner = DeliveryPlanner(random: SplitMix64(seed: 1))
        let faults = DirectionFaults(closeAfterBytes: 25)
        let first = planner.plan(size: 20, at: 0, faults: faults)
        #expect(first.segments.map(\.length) == [20] && !first.closeAfter)
        let second = planner.plan(size: 20, at: 0, faults: faults)
        #expect(second.segments.map(\.length) == [5] && second.closeAfter && second.dropped == 15)
        let third = planner.plan(size: 20, at: 0, faults: faults)
        #expect(third.segments.isEmpty && third.closeAfter && third.dropped == 20)
    }

    @Test(arguments: [
        DirectionFaults(latencyMillis: -1), DirectionFaults(jitterMillis: .nan), DirectionFaults(bytesPerSecond: 0),
        DirectionFaults(sliceBytes: 0), DirectionFaults(sliceDelayMillis: 20_000),
    ])
    func impossibleFaultsAreNamed(_ faults: DirectionFaults) {
        #expect(faults.problem != nil)
    }

    @Test func faultsDescribeThemselves() {
        #expect(LinkFaults.healthy.description == "both ways healthy")
        let oneWay = LinkFaults(toServer: .init(blackholed: true))
        #expect(oneWay.description == "to server blackholed; to client healthy")
        #expect(DirectionFaults(latencyMillis: 50, bytesPerSecond: 125_000).description == "latency 50±0 ms, 1000 kbit/s")
    }
}
