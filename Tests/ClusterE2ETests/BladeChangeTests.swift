import Foundation
import Testing

/// A blade whose agent comes back with fewer cores than are claimed on it: the claims that
/// no longer fit are released and their partitions stopped with the reason; the blade never
/// shows more claimed than it has; starting such a partition places it again.
extension EndToEnd { @Suite struct BladeChangeTests {
    @Test func aBladeThatComesBackSmallerStopsThePartitionsThatNoLongerFit() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try cluster.startController()
        try cluster.startAgent("blade-1", chassis: "chassis-1")
        try cluster.startAgent("blade-2", chassis: "chassis-2", cores: 8)
        try await cluster.eventually("2 blades ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.count == 2 && blades.allSatisfy { $0["state"] as? String == "ready" }
        }
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "16", "--max-memory", "64GiB", "--max-disk", "1TiB"]).status == 0)
        // Best fit puts all three on the fuller blade-2 until it is full, then on blade-1.
        for name in ["a", "b", "c"] {
            #expect(try await cluster.ctl("tenant/acme", ["partition", "create", name, "--cores", "4", "--memory", "2GiB"]).status == 0)
        }
        func partitions() async throws -> [String: [String: Any]] {
            let list = (try await cluster.ctl("admin/ops", ["partition", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as! String, $0) })
        }
        let before = try await partitions()
        let onOne = before.filter { $0.value["blade"] as? String == "blade-1" }.keys.sorted()
        try #require(onOne.count == 1, "placements: \(before.mapValues { $0["blade"] ?? "-" })")
        let moved = onOne[0]
        try await cluster.eventually("every partition running") {
            try await partitions().values.allSatisfy { $0["state"] as? String == "running" }
        }

        // blade-2 comes back with 6 cores: one of its two partitions (cores 0-3 and 4-7) no longer fits.
        cluster.kill(agent: "blade-2")
        try cluster.startAgent("blade-2", chassis: "chassis-2", cores: 6)
        try await cluster.eventually("blade-2 registered with 6 cores and a partition evicted") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            let two = blades.first { $0["id"] as? String == "blade-2" }
            let states = try await partitions().values.compactMap { $0["state"] as? String }
            return two?["cores"] as? Int == 6 && states.contains { $0.hasPrefix("evicted: blade blade-2 came back with 6 cores") }
        }
        let after = try await partitions()
        let evicted = after.filter { ($0.value["state"] as? String)?.hasPrefix("evicted:") == true }.keys.sorted()
        #expect(evicted.count == 1)
        let blades = (try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
        for blade in blades {
            let cores = blade["cores"] as? Int ?? 0, free = blade["freeCores"] as? Int ?? -1
            #expect(free >= 0 && free <= cores, "\(blade)")
        }
        #expect(blades.first { $0["id"] as? String == "blade-2" }?["freeCores"] as? Int == 2)
        let events = (try await cluster.ctl("admin/ops", ["events", "-o", "json"]).json as? [[String: Any]]) ?? []
        #expect(events.contains { $0["kind"] as? String == "partition.evicted" && $0["subject"] as? String == evicted.first })
        // The partition that still fits runs on; the evicted one starts again elsewhere.
        try await cluster.eventually("the survivor runs on blade-2") {
            try await partitions().values.contains { $0["blade"] as? String == "blade-2" && $0["state"] as? String == "running" }
        }
        let name = try #require(evicted.first)
        let started = try await cluster.ctl("tenant/acme", ["partition", "start", name])
        #expect(started.status == 0, "\(started.stderr)")
        try await cluster.eventually("\(name) running on blade-1") {
            let info = try await partitions()[name]
            return info?["blade"] as? String == "blade-1" && info?["state"] as? String == "running"
        }
        #expect(try await partitions()[moved]?["state"] as? String == "running")
    }
} }
