import Foundation
import Testing

/// Every refusal by authorization leaves a trace: the controller logs who sent what about
/// which object, and counts it in an admin-only `request.denied` event, also where the
/// caller is only told that the object does not exist.
extension EndToEnd { @Suite struct AuditTests {
    @Test func refusalsByAuthorizationAreLoggedAndCounted() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try cluster.startController()
        try cluster.startAgent("blade-1", chassis: "chassis-1")
        try await cluster.eventually("blade-1 ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.first?["state"] as? String == "ready"
        }
        for tenant in ["acme", "globex"] {
            #expect(try await cluster.ctl("admin/ops", ["tenant", "create", tenant, "--max-cores", "8", "--max-memory", "16GiB", "--max-disk", "1TiB"]).status == 0)
        }
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "web", "--cores", "1", "--memory", "1GiB"]).status == 0)

        // globex reaches for acme's partition: told it does not exist, exactly as for a name nobody has.
        let reached = try await cluster.ctl("tenant/globex", ["partition", "delete", "web"])
        let nobody = try await cluster.ctl("tenant/globex", ["partition", "delete", "nobody"])
        #expect(reached.status == 1 && reached.stderr == nobody.stderr.replacingOccurrences(of: "nobody", with: "web"), "\(reached.stderr)")
        // ... and a tenant asking for an admin's request, and for another tenant's partitions.
        #expect(try await cluster.ctl("tenant/globex", ["blade", "list"]).status == 1)
        #expect(try await cluster.ctl("tenant/globex", ["partition", "list", "--tenant", "acme"]).status == 1)
        // acme's partition is untouched.
        let show = try await cluster.ctl("tenant/acme", ["partition", "show", "web", "-o", "json"])
        #expect(show.status == 0)

        try await cluster.eventually("the refusals in the controller's log") {
            let log = cluster.controllerLog
            return log.contains("request refused by authorization")
                && log.contains("tenant globex asked to delete partition web of tenant acme")
                && log.contains("tenant globex cannot list the partitions of tenant acme")
                && log.contains("role tenant may not send ListBladesRequest")
        }
        #expect(cluster.controllerLog.contains("peer.identity=nestor://tenant/globex"))
        #expect(cluster.controllerLog.contains("request.type=PartitionActionRequest"))
        // Counted in an event only admins see.
        try await cluster.eventually("a request.denied event") {
            let events = (try? await cluster.ctl("admin/ops", ["events", "-o", "json"]).json as? [[String: Any]]) ?? []
            return events.contains { $0["kind"] as? String == "request.denied" && $0["subject"] as? String == "nestor://tenant/globex" }
        }
        let own = (try await cluster.ctl("tenant/globex", ["events", "-o", "json"]).json as? [[String: Any]]) ?? []
        #expect(!own.contains { $0["kind"] as? String == "request.denied" })
    }
} }
