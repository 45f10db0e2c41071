import Testing
import Partitioner
@testable import SimBackend

@Suite struct TraceTests {
    /// Every kick the guest makes reaches L1's ioeventfd and starts exactly one request.
    @Test func everyKickStartsOneDeviceRequest() throws {
        let lpar = try SimLPAR(spec: ShadowBenchmarkConfiguration.whitepaperLPAR, costs: .xeonE52667v3,
                               workload: IOmeterWorkload(), seed: 1)
        var lines: [String] = []
        lpar.trace = { lines.append($0) }
        try lpar.run(until: 3_200_000)
        let kicks = lines.filter { $0.contains("L2 exit IO_INSTRUCTION") }.count
        let requests = lines.filter { $0.contains("kick request") }.count
        #expect(kicks > 10)
        #expect(requests == kicks || requests == kicks - 1)   // the last kick may still be in L1
        #expect(lines.allSatisfy { !$0.contains("internal") })
    }
}
