import Foundation
import Testing

/// `clusterctl blade inspect`: the LPARs a blade actually holds, from its agent, through the
/// controller or straight from the agent's own listener (which answers while the controller
/// is down), admins only.
extension EndToEnd { @Suite struct InspectTests {
    /// The cores a partition's `bladeCores` names ("0-3" or "0,2,5").
    static func cores(_ text: String) -> [Int] {
        if let dash = text.firstIndex(of: "-"), let low = Int(text[..<dash]), let high = Int(text[text.index(after: dash)...]) {
            return Array(low...high)
        }
        return text.split(separator: ",").compactMap { Int($0) }
    }

    @Test func theAgentsOwnViewAgreesWithTheClaimsAndOutlivesTheController() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try cluster.startController()
        try cluster.startAgent("blade-1", chassis: "chassis-1", listen: true)
        let agentPort = try #require(cluster.agentPorts["blade-1"])
        try await cluster.eventually("blade-1 ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.first?["state"] as? String == "ready"
        }
        for tenant in ["acme", "globex"] {
            #expect(try await cluster.ctl("admin/ops", ["tenant", "create", tenant, "--max-cores", "8", "--max-memory", "16GiB", "--max-disk", "100GiB"]).status == 0)
        }
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "p1", "--cores", "2", "--memory", "2GiB"]).status == 0)
        #expect(try await cluster.ctl("tenant/globex", ["partition", "create", "p2", "--cores", "3", "--memory", "1GiB"]).status == 0)
        try await cluster.eventually("both partitions running") {
            let list = (try await cluster.ctl("admin/ops", ["partition", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return list.count == 2 && list.allSatisfy { $0["state"] as? String == "running" }
        }
        let partitions = (try await cluster.ctl("admin/ops", ["partition", "list", "-o", "json"]).json as? [[String: Any]]) ?? []

        let viaController = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-1", "-o", "json"])
        try #require(viaController.status == 0, "\(viaController.stderr)")
        let inspected = try #require(viaController.json as? [String: Any])
        let lpars = try #require(inspected["lpars"] as? [[String: Any]])
        #expect(lpars.map { $0["name"] as? String } == ["p1", "p2"])
        #expect(lpars.map { $0["tenant"] as? String } == ["acme", "globex"])
        #expect(lpars.allSatisfy { $0["state"] as? String == "running" })
        #expect(inspected["controllerLinkUp"] as? Bool == true)
        let reserved = try #require(inspected["l0ReservedBytes"] as? UInt64)
        // What the agent holds is what the controller claimed: the same cores, the memory at
        // the claim's base above L0's reserve.
        for lpar in lpars {
            let claim = try #require(partitions.first { $0["name"] as? String == lpar["name"] as? String })
            #expect(lpar["dedicatedCores"] as? [Int] == Self.cores(claim["bladeCores"] as? String ?? ""))
            #expect(lpar["memoryStart"] as? UInt64 == (claim["memoryBase"] as? UInt64).map { $0 + reserved })
        }
        let table = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-1"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("p1") && table.stdout.contains("acme") && table.stdout.contains("running"))

        // Straight from the agent: the same LPARs.
        let direct = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-1", "--agent", "127.0.0.1:\(agentPort)", "-o", "json"])
        try #require(direct.status == 0, "\(direct.stderr)")
        #expect((direct.json as? [String: Any])?["lpars"] as? NSArray == lpars as NSArray)

        // Only admins: a tenant is refused by the controller and by the agent.
        let tenant = try await cluster.ctl("tenant/acme", ["blade", "inspect", "blade-1"])
        #expect(tenant.status == 1)
        #expect(tenant.stderr.contains("may not send InspectBladeRequest") || tenant.stderr.contains("only an admin"), "\(tenant.stderr)")
        let tenantDirect = try await cluster.ctl("tenant/acme", ["blade", "inspect", "blade-1", "--agent", "127.0.0.1:\(agentPort)"])
        #expect(tenantDirect.status == 1)
        #expect(tenantDirect.stderr.contains("may not send InspectBladeRequest"), "\(tenantDirect.stderr)")

        // Clear errors: a blade that does not exist, the wrong agent at an address, a bad name.
        let unknown = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-9"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("blade blade-9 does not exist"), "\(unknown.stderr)")
        let wrongAgent = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-2", "--agent", "127.0.0.1:\(agentPort)"])
        #expect(wrongAgent.status == 1)
        #expect(wrongAgent.stderr.contains("nestor://agent/blade-1"), "\(wrongAgent.stderr)")
        let badName = try await cluster.ctl("admin/ops", ["blade", "inspect", "Blade One"])
        #expect(badName.status == 2)

        // The controller dies: the agent still answers, with its link to the controller down.
        cluster.killController()
        try await cluster.eventually("the agent says its controller link is down") {
            let answer = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-1", "--agent", "127.0.0.1:\(agentPort)", "-o", "json"])
            let object = answer.json as? [String: Any]
            return object?["controllerLinkUp"] as? Bool == false && (object?["lpars"] as? [[String: Any]])?.count == 2
        }
        let down = try await cluster.ctl("admin/ops", ["blade", "inspect", "blade-1"])
        #expect(down.status == 1)
        #expect(down.stderr.contains("cannot reach the controller"), "\(down.stderr)")
    }
} }
