import Foundation
import NIOCore
import Protos
import Testing
import Wire
import WireCodec

/// Lists come a page at a time and clusterctl follows the pages: with a page of 3, every
/// list still shows every item once; a bad page size or token is an input error.
extension EndToEnd { @Suite struct ListPagingTests {
    @Test func everyListPagesAndClusterctlFollowsThePages() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try cluster.startController()
        for index in 1...4 { try cluster.startAgent("blade-\(index)", chassis: "chassis-1", cores: 8) }
        try await cluster.eventually("4 blades ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.count == 4 && blades.allSatisfy { $0["state"] as? String == "ready" }
        }
        for index in 0..<8 {
            #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "t\(index)", "--max-cores", "8", "--max-memory", "16GiB", "--max-disk", "1TiB"]).status == 0)
        }
        try cluster.issue("tenant/t0")
        for index in 0..<7 {
            #expect(try await cluster.ctl("tenant/t0", ["partition", "create", "p\(index)", "--cores", "1", "--memory", "256MiB"]).status == 0)
        }
        func names(_ identity: String, _ arguments: [String], key: String = "name") async throws -> [String] {
            let result = try await cluster.ctl(identity, arguments + ["-o", "json", "--page-size", "3"])
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            return ((result.json as? [[String: Any]]) ?? []).compactMap { $0[key] as? String }
        }
        #expect(try await names("admin/ops", ["tenant", "list"]) == (0..<8).map { "t\($0)" })
        #expect(try await names("admin/ops", ["partition", "list"]) == (0..<7).map { "p\($0)" })
        #expect(try await names("admin/ops", ["blade", "list"], key: "id") == (1...4).map { "blade-\($0)" })
        // Events: more than one page of the window asked for, oldest first, none twice.
        let events = try await cluster.ctl("admin/ops", ["events", "--limit", "15", "--page-size", "3", "-o", "json"])
        let sequences = ((events.json as? [[String: Any]]) ?? []).compactMap { $0["sequence"] as? Int }
        #expect(sequences.count == 15 && sequences == sequences.sorted() && Set(sequences).count == 15, "\(sequences)")
        let all = ((try await cluster.ctl("admin/ops", ["events", "--limit", "10000", "-o", "json"]).json as? [[String: Any]]) ?? []).count
        // 4 registrations, 8 tenants, 7 placements (and any blade turning suspect on a busy
        // machine): the window above was 15 consecutive ones.
        #expect(all >= 19 && sequences.last.map { $0 - sequences[0] } == 14, "\(all) \(sequences)")

        // The controller refuses a page size outside 1...5000 and a token it did not give.
        let connection = try await WireClient.connect(host: "127.0.0.1", port: cluster.port,
                                                      tls: try cluster.tls(PeerIdentity(role: .admin, name: "ops")), server: .role(.controller))
        defer { Task { await connection.close() } }
        let zero = await #expect(throws: WireFailure.self) {
            try await connection.call(ListTenantsRequest(pageSize: 0), expecting: TenantListResponse.self)
        }
        #expect(zero?.code == .invalidArgument && zero?.field == "pageSize")
        let forged = await #expect(throws: WireFailure.self) {
            try await connection.call(ListBladesRequest(pageToken: "\u{1B}[2J"), expecting: BladeListResponse.self)
        }
        #expect(forged?.code == .invalidArgument && forged?.field == "pageToken")
        let flag = try await cluster.ctl("admin/ops", ["tenant", "list", "--page-size", "0"])
        #expect(flag.status == 2 && flag.stderr == "clusterctl: --page-size 0 is not between 1 and 5000\n")
    }
} }
