import ClusterCore
import Testing

@Suite struct AuditTrailTests {
    @Test func oneEventPerPeerPerIntervalAndNoRefusalUncounted() {
        var trail = AuditTrail(intervalMillis: 1000)
        let first = trail.refused(peer: "nestor://tenant/x", request: "PartitionActionRequest", what: "p of tenant y", atMillis: 0, wallMillis: 5)
        #expect(first?.message == "1 request refused by authorization; last: PartitionActionRequest: p of tenant y")
        #expect(first?.kind == "request.denied" && first?.tenant == nil)
        for step in 1...5 {
            #expect(trail.refused(peer: "nestor://tenant/x", request: "CreateVMRequest", what: "q", atMillis: UInt64(step * 100), wallMillis: 5) == nil)
        }
        // Another peer is reported on its own.
        #expect(trail.refused(peer: "nestor://agent/b", request: "RegisterBladeRequest", what: "c", atMillis: 600, wallMillis: 5) != nil)
        #expect(trail.flush(atMillis: 900, wallMillis: 5).isEmpty)
        let later = trail.flush(atMillis: 1000, wallMillis: 5)
        #expect(later.map(\.message) == ["5 requests refused by authorization; last: CreateVMRequest: q"])
        #expect(trail.flush(atMillis: 5000, wallMillis: 5).isEmpty)
    }
}
