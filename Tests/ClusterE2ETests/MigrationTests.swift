import Foundation
import Testing

/// Live migration through `clusterctl` on sim blades: real agents stream the partition to
/// each other over mutual TLS, the controller moves the claim only at the decision.
@Suite(.serialized) struct MigrationTests {
    func partition(_ cluster: ClusterHarness, _ name: String) async throws -> [String: Any] {
        let list = try await cluster.ctl("admin/ops", ["partition", "show", name, "-o", "json"])
        return try #require(list.json as? [String: Any], "partition show: \(list.stderr)")
    }

    func operations(_ cluster: ClusterHarness, _ name: String) async throws -> Int {
        (try await partition(cluster, name)["l2Operations"] as? Int) ?? 0
    }

    /// Four blades (two chassis) whose agents listen for migrations and whose guests write
    /// 64 MiB/s; a VMM partition with two running L2 VMs on one of them.
    func cluster() async throws -> ClusterHarness {
        // Leases as in production (a heartbeat a second, suspect after 3): a migration needs a
        // ready source, and 200 ms heartbeats on a loaded machine turn a blade suspect for a moment.
        let cluster = try ClusterHarness(heartbeatMs: 1000)
        try cluster.startController()
        for index in 1...4 {
            try cluster.startAgent("blade-\(index)", chassis: "chassis-\((index + 1) / 2)", extra: ["--sim-dirty-rate", "64MiB"], listen: true)
        }
        try await cluster.eventually("4 blades ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.count == 4 && blades.allSatisfy { $0["state"] as? String == "ready" }
        }
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "32", "--max-memory", "64GiB", "--max-disk", "1TiB"]).status == 0)
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "globex", "--max-cores", "8", "--max-memory", "8GiB", "--max-disk", "1TiB"]).status == 0)
        let created = try await cluster.ctl("tenant/acme", ["partition", "create", "erp", "--cores", "4", "--memory", "2GiB", "--vmm"])
        #expect(created.status == 0, "\(created.stderr)")
        for (vm, workload) in [("db", "sysbench-oltp"), ("files", "iometer")] {
            let made = try await cluster.ctl("tenant/acme", ["vm", "create", vm, "--partition", "erp", "--vcpus", "2", "--memory", "512MiB", "--workload", workload])
            #expect(made.status == 0, "\(made.stderr)")
        }
        try await cluster.eventually("erp running with its VMs working") {
            let shown = try await self.partition(cluster, "erp")
            return shown["state"] as? String == "running" && (shown["l2Operations"] as? Int ?? 0) > 0
        }
        return cluster
    }

    @Test func aVMMPartitionWithRunningL2VMsMovesAndKeepsRunning() async throws {
        let cluster = try await cluster()
        defer { cluster.stop() }
        let source = try #require(try await partition(cluster, "erp")["blade"] as? String)
        let target = source == "blade-3" ? "blade-4" : "blade-3"
        let before = try await operations(cluster, "erp")
        let moved = try await cluster.ctl("admin/ops", ["partition", "migrate", "erp", "--to", target, "--wait", "-o", "json"])
        #expect(moved.status == 0, "\(moved.stderr) \(moved.stdout)\nsource log: \(cluster.agentLog(source).suffix(3000))\ntarget log: \(cluster.agentLog(target).suffix(3000))")
        let migration = try #require(moved.json as? [String: Any], "\(moved.stdout)")
        #expect(migration["phase"] as? String == "succeeded")
        #expect(migration["source"] as? String == source && migration["target"] as? String == target)
        #expect((migration["round"] as? Int ?? 0) >= 2, "a guest writing 64 MiB/s needs more than one round")
        #expect(migration["downtimeMillis"] != nil)
        let shown = try await partition(cluster, "erp")
        #expect(shown["blade"] as? String == target)
        #expect((shown["placementReason"] as? String ?? "").contains("migrated from \(source)"))
        try await cluster.eventually("erp running on \(target) with its VMs counting on") {
            let now = try await self.partition(cluster, "erp")
            return now["state"] as? String == "running" && (now["l2Operations"] as? Int ?? 0) > before
        }
        let vms = try await cluster.ctl("tenant/acme", ["vm", "list", "--partition", "erp", "-o", "json"]).json as? [[String: Any]] ?? []
        #expect(Set(vms.compactMap { $0["name"] as? String }) == ["db", "files"])
        // Nothing is left on the source, and every phase is an event.
        try await cluster.eventually("the source blade holds no LPAR") {
            let inspected = try await cluster.ctl("admin/ops", ["blade", "inspect", source, "-o", "json"]).json as? [String: Any]
            return (inspected?["lpars"] as? [Any])?.isEmpty == true
        }
        let events = try await cluster.ctl("admin/ops", ["events", "-o", "json"]).json as? [[String: Any]] ?? []
        let kinds = events.compactMap { $0["kind"] as? String }.filter { $0.hasPrefix("migration.") }
        for kind in ["migration.requested", "migration.target-prepared", "migration.pre-copy", "migration.switchover",
                     "migration.resumed-on-target", "migration.source-released", "migration.succeeded"] {
            #expect(kinds.contains(kind), "no \(kind) in \(kinds)")
        }
        let listed = try await cluster.ctl("admin/ops", ["migration", "list", "-o", "json"]).json as? [[String: Any]] ?? []
        #expect(listed.count == 1 && listed.first?["phase"] as? String == "succeeded")
        // Placement's choice, back across: any blade but the one it is on.
        let again = try await cluster.ctl("admin/ops", ["partition", "migrate", "erp", "--wait", "-o", "json"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try await partition(cluster, "erp")["blade"] as? String != target)
    }

    @Test func badMigrationRequestsAreRefusedInOneLineAndChangeNothing() async throws {
        let cluster = try await cluster()
        defer { cluster.stop() }
        let source = try #require(try await partition(cluster, "erp")["blade"] as? String)
        let other = source == "blade-1" ? "blade-2" : "blade-1"
        #expect(try await cluster.ctl("admin/ops", ["blade", "cordon", other]).status == 0)
        let cases: [(String, [String], String)] = [
            ("admin/ops", ["partition", "migrate", "erp", "--to", "blade-9"], "blade blade-9 is not registered"),
            ("admin/ops", ["partition", "migrate", "erp", "--to", source], "already runs on blade \(source)"),
            ("admin/ops", ["partition", "migrate", "erp", "--to", other], "blade \(other) is cordoned"),
            ("admin/ops", ["partition", "migrate", "nope"], "partition nope does not exist"),
            ("tenant/globex", ["partition", "migrate", "erp"], "partition erp does not exist"),
            ("tenant/acme", ["partition", "migrate", "erp", "--to", other], "cannot choose a blade"),
            ("admin/ops", ["partition", "migrate", "erp", "--max-downtime", "0ms"], "--max-downtime"),
            ("admin/ops", ["partition", "migrate", "erp", "--max-downtime", "soon"], "is not a duration"),
            ("admin/ops", ["migration", "show", "m999"], "migration m999 does not exist"),
            ("admin/ops", ["migration", "cancel", "m999"], "migration m999 does not exist"),
        ]
        for (identity, arguments, message) in cases {
            let result = try await cluster.ctl(identity, arguments)
            #expect(result.status != 0, "\(arguments) succeeded")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        #expect(try await cluster.ctl("tenant/acme", ["partition", "stop", "erp"]).status == 0)
        let stopped = try await cluster.ctl("admin/ops", ["partition", "migrate", "erp"])
        #expect(stopped.status != 0 && stopped.stderr.contains("is stopped"), "\(stopped.stderr)")
        let listed = try await cluster.ctl("admin/ops", ["migration", "list", "-o", "json"]).json as? [Any]
        #expect(listed?.isEmpty == true)
        #expect(try await partition(cluster, "erp")["blade"] as? String == source)
    }

    @Test func drainingABladeMovesItsFourPartitionsKeepingHardChassisAntiAffinity() async throws {
        // No N+1 admission: the set-up pins partitions to blades by cordoning all the others.
        let cluster = try ClusterHarness(heartbeatMs: 1000, admission: "none")
        defer { cluster.stop() }
        try cluster.startController()
        // Three chassis of two blades.
        for index in 1...6 {
            try cluster.startAgent("blade-\(index)", chassis: "chassis-\((index + 1) / 2)", cores: 8, memory: "16GiB",
                                   extra: ["--sim-dirty-rate", "32MiB"], listen: true)
        }
        try await cluster.eventually("6 blades ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.count == 6 && blades.allSatisfy { $0["state"] as? String == "ready" }
        }
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "40", "--max-memory", "64GiB", "--max-disk", "1TiB"]).status == 0)
        func create(_ name: String, group: String?, on blade: String) async throws {
            // Every other blade cordoned, so that placement has one choice.
            for index in 1...6 where "blade-\(index)" != blade { try await cluster.ctl("admin/ops", ["blade", "cordon", "blade-\(index)"]) }
            var arguments = ["partition", "create", name, "--tenant", "acme", "--cores", "2", "--memory", "1GiB", "--vmm"]
            if let group { arguments += ["--group", group, "--spread", "chassis", "--hard"] }
            let made = try await cluster.ctl("admin/ops", arguments)
            #expect(made.status == 0, "\(made.stderr)")
            for index in 1...6 { try await cluster.ctl("admin/ops", ["blade", "uncordon", "blade-\(index)"]) }
        }
        for (name, group) in [("web-a", "web"), ("db-a", "db"), ("app-1", nil), ("app-2", nil)] as [(String, String?)] {
            try await create(name, group: group, on: "blade-1")
        }
        try await create("web-b", group: "web", on: "blade-3")
        try await create("web-c", group: "web", on: "blade-5")
        try await create("db-b", group: "db", on: "blade-4")
        let made = try await cluster.ctl("tenant/acme", ["vm", "create", "v", "--partition", "app-1", "--vcpus", "1", "--memory", "256MiB", "--workload", "iometer"])
        #expect(made.status == 0, "\(made.stderr)")
        try await cluster.eventually("every partition running") {
            let list = try await cluster.ctl("admin/ops", ["partition", "list", "-o", "json"]).json as? [[String: Any]] ?? []
            return list.count == 7 && list.allSatisfy { $0["state"] as? String == "running" }
        }
        let drained = try await cluster.ctl("admin/ops", ["blade", "drain", "blade-1", "--wait"])
        #expect(drained.status == 0, "\(drained.stderr)\n\(drained.stdout)")
        #expect(drained.stdout.contains("4 of 4 migrations succeeded"), "\(drained.stdout)")
        let list = try await cluster.ctl("admin/ops", ["partition", "list", "-o", "json"]).json as? [[String: Any]] ?? []
        var bladeOf: [String: String] = [:]
        for partition in list { bladeOf[partition["name"] as? String ?? ""] = partition["blade"] as? String }
        #expect(!bladeOf.values.contains("blade-1"), "\(bladeOf)")
        func chassis(_ blade: String?) -> Int { Int((blade ?? "blade-0").dropFirst(6)).map { ($0 + 1) / 2 } ?? 0 }
        #expect(Set(["web-a", "web-b", "web-c"].map { chassis(bladeOf[$0]) }).count == 3, "web members share a chassis: \(bladeOf)")
        #expect(chassis(bladeOf["db-a"]) != chassis(bladeOf["db-b"]), "db members share a chassis: \(bladeOf)")
        #expect(bladeOf["web-a"] == "blade-2", "web-a's only room within the rule is its own chassis")
        try await cluster.eventually("everything running again, the VM counting") {
            let now = try await cluster.ctl("admin/ops", ["partition", "list", "-o", "json"]).json as? [[String: Any]] ?? []
            return now.count == 7 && now.allSatisfy { $0["state"] as? String == "running" }
        }
        let blades = try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]] ?? []
        #expect(blades.first { $0["id"] as? String == "blade-1" }?["cordoned"] as? Bool == true)
        // Draining it again moves nothing and says so.
        let again = try await cluster.ctl("admin/ops", ["blade", "drain", "blade-1"])
        #expect(again.status == 0 && again.stdout.contains("nothing to move"), "\(again.stdout) \(again.stderr)")
    }
}
