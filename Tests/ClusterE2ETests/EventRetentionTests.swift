import Foundation
import Protos
import Testing
import Wire
import WireCodec

/// The event log stays bounded by what writes to it: with a retention of 100 events compacted
/// every 10 written, 130 tenant creations leave at most 109 events, the newest ones, and a
/// restart compacts down to exactly 100; sequence numbers go on from where they were.
extension EndToEnd { @Suite struct EventRetentionTests {
    @Test func eventsAreCompactedAfterEveryBatchWrittenAndAtStart() async throws {
        let cluster = try ClusterHarness(admission: "none", extra: ["--event-retention-count", "100", "--event-compact-every", "10"])
        defer { cluster.stop() }
        try cluster.startController()

        func createTenants(_ names: some Sequence<Int>) async throws {
            let connection = try await WireClient.connect(host: "127.0.0.1", port: cluster.port,
                                                          tls: try cluster.tls(PeerIdentity(role: .admin, name: "ops")), server: .role(.controller))
            defer { Task { await connection.close() } }
            for index in names {
                _ = try await connection.call(CreateTenantRequest(name: "t\(index)", quota: TenantQuota(maxCores: 1, maxMemoryBytes: 1 << 30, maxDiskBytes: 1 << 30)),
                                              expecting: TenantResponse.self)
            }
        }
        func events() async throws -> [(sequence: Int, subject: String)] {
            let result = try await cluster.ctl("admin/ops", ["events", "--limit", "10000", "-o", "json"])
            #expect(result.status == 0, "\(result.stderr)")
            return ((result.json as? [[String: Any]]) ?? []).compactMap { event in
                guard let sequence = event["sequence"] as? Int, let subject = event["subject"] as? String else { return nil }
                return (sequence, subject)
            }
        }

        try await createTenants(0..<130)
        var kept = try await events()
        // Without compaction all 130 would be there.
        #expect((100...109).contains(kept.count), "\(kept.count) events kept")
        #expect(kept.last?.subject == "t129" && kept.map(\.sequence) == kept.map(\.sequence).sorted(), "\(kept.suffix(3))")
        #expect(kept.first.map { $0.sequence > 21 } == true, "the oldest kept is \(String(describing: kept.first))")
        let newest = kept.last?.sequence ?? 0

        try await createTenants(130..<135)
        cluster.killController()
        try cluster.startController()
        kept = try await events()
        #expect(kept.count == 100, "\(kept.count) events kept after a restart")
        #expect(kept.last?.subject == "t134" && kept.last?.sequence == newest + 5, "\(kept.suffix(3))")

        // Sequence numbers are not reused after compaction.
        try await createTenants(135..<136)
        #expect(try await events().last.map { $0.sequence == newest + 6 && $0.subject == "t135" } == true)

        let bad = try ClusterHarness.runToEnd(ClusterHarness.executable("cluster-controller"),
                                              ["run", "--data-dir", cluster.directory + "/other", "--pki-dir", cluster.pki.path, "--event-compact-every", "9"])
        #expect(bad.status == 2 && bad.stderr.contains("event-compact-every '9' is not a whole number between 10 and 1000000"), "\(bad.stderr)")
    }
} }
