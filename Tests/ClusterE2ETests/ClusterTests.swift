import Foundation
import Protos
import Testing
import Wire
import WireCodec

/// The end-to-end suites run one at a time: they wait for real processes, and two at once
/// would hold both threads of a 2-core machine's cooperative pool from the rest of the tests.
@Suite(.serialized) enum EndToEnd {}

/// The cluster end to end: a real controller, real agents and clusterctl as processes,
/// over mutual TLS on loopback.
extension EndToEnd { @Suite struct ClusterTests {
    func partitions(_ cluster: ClusterHarness, as identity: String = "admin/ops") async throws -> [[String: Any]] {
        try await cluster.ctl(identity, ["partition", "list", "-o", "json"]).json as? [[String: Any]] ?? []
    }

    @Test func registrationPlacementQuotaAndTenantIsolation() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try await cluster.startFourBlades()
        // Registration: inventory and failure-domain labels as the agents reported them.
        let blades = try #require(try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]])
        #expect(blades.map { $0["chassis"] as? String } == ["chassis-1", "chassis-1", "chassis-2", "chassis-2"])
        #expect(blades.allSatisfy { $0["cores"] as? Int == 16 && $0["memoryBytes"] as? Int == 63 << 30 })
        #expect(blades.allSatisfy { ($0["nics"] as? [String]) == ["eth0"] && ($0["disks"] as? [[String: Any]])?.first?["luns"] as? Int == 64 })

        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "20", "--max-memory", "64GiB", "--max-disk", "1TiB"]).status == 0)
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "globex", "--max-cores", "8", "--max-memory", "16GiB", "--max-disk", "100GiB"]).status == 0)

        // Hard chassis anti-affinity: two members land in different chassis; a third is refused, with the reason.
        for name in ["web-1", "web-2"] {
            let created = try await cluster.ctl("tenant/acme", ["partition", "create", name, "--cores", "4", "--memory", "8GiB", "--vmm",
                                                          "--group", "web", "--spread", "chassis", "--hard"])
            #expect(created.status == 0, "\(created.stderr)")
        }
        let placed = try await partitions(cluster)
        let chassisOf = Dictionary(uniqueKeysWithValues: blades.map { ($0["id"] as! String, $0["chassis"] as! String) })
        #expect(Set(placed.compactMap { chassisOf[$0["blade"] as? String ?? ""] }).count == 2)
        let third = try await cluster.ctl("tenant/acme", ["partition", "create", "web-3", "--cores", "4", "--memory", "8GiB", "--vmm",
                                                    "--group", "web", "--spread", "chassis", "--hard"])
        #expect(third.status == 1)
        #expect(third.stderr == "clusterctl: no blade fits: 4 blades; 4 chassis anti-affinity (group web)\n")

        // Quota: acme has 8 of 20 cores; 16 more is refused and changes nothing.
        let overQuota = try await cluster.ctl("tenant/acme", ["partition", "create", "big", "--cores", "16", "--memory", "8GiB"])
        #expect(overQuota.status == 1)
        #expect(overQuota.stderr == "clusterctl: quota exceeded: tenant acme would use 24 cores of its 20\n")
        #expect(try await partitions(cluster).count == 2)

        // Tenant isolation: globex sees none of acme's partitions and cannot touch them.
        #expect(try await partitions(cluster, as: "tenant/globex").isEmpty)
        let peek = try await cluster.ctl("tenant/globex", ["partition", "show", "web-1"])
        #expect(peek.status == 1 && peek.stderr == "clusterctl: partition web-1 does not exist\n")
        let meddle = try await cluster.ctl("tenant/globex", ["partition", "delete", "web-1"])
        #expect(meddle.status == 1)
        let forge = try await cluster.ctl("tenant/globex", ["partition", "create", "x", "--tenant", "acme", "--cores", "1", "--memory", "1GiB"])
        #expect(forge.status == 1 && forge.stderr.contains("cannot create partitions for tenant acme"))
        let tenantsSeen = try await cluster.ctl("tenant/globex", ["tenant", "list", "-o", "json"]).json as? [[String: Any]]
        #expect(tenantsSeen?.map { $0["name"] as? String } == ["globex"])
        let globexBlades = try await cluster.ctl("tenant/globex", ["blade", "list"])
        #expect(globexBlades.status == 1 && globexBlades.stderr == "clusterctl: role tenant may not send ListBladesRequest; allowed: admin\n")

        // L2 VMs inside a VMM partition reach running on the agent.
        #expect(try await cluster.ctl("tenant/acme", ["vm", "create", "db", "--partition", "web-1", "--vcpus", "2", "--memory", "4GiB",
                                                "--workload", "sysbench-oltp"]).status == 0)
        try await cluster.eventually("VM running and partition counters moving") {
            let vms = try await cluster.ctl("tenant/acme", ["vm", "list", "--partition", "web-1", "-o", "json"]).json as? [[String: Any]]
            let shown = try await cluster.ctl("tenant/acme", ["partition", "show", "web-1", "-o", "json"]).json as? [String: Any]
            return vms?.first?["state"] as? String == "running" && (shown?["l2Operations"] as? Int ?? 0) > 0
        }

        // Bad input: a clear message, a non-zero exit, no change.
        let before = try await partitions(cluster)
        let decimal = try await cluster.ctl("tenant/acme", ["partition", "create", "p", "--cores", "1", "--memory", "10GB"])
        #expect(decimal.status == 2 && decimal.stderr == "clusterctl: --memory '10GB' is ambiguous: write 10GiB (sizes use binary units: KiB, MiB, GiB, TiB)\n")
        let negative = try await cluster.ctl("tenant/acme", ["partition", "create", "p", "--cores", "1", "--memory", "-1"])
        #expect(negative.status == 2 && negative.stderr.contains("negative"))
        // A bad name is an input error (exit 2) wherever it is found; it is echoed escaped and cut short.
        let escaped = try await cluster.ctl("tenant/acme", ["partition", "create", "bad\u{1B}[31mname\n", "--cores", "1", "--memory", "1GiB"])
        #expect(escaped.status == 2 && escaped.stderr == "clusterctl: partition name 'bad\\u{1B}[31mname\\n' must be 1-63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit\n", "\(escaped.stderr)")
        let long = try await cluster.ctl("tenant/acme", ["partition", "create", String(repeating: "x", count: 10_000), "--cores", "1", "--memory", "1GiB"])
        #expect(long.status == 2 && long.stderr.count < 200 && long.stderr.contains("(9980 more characters)"), "\(long.stderr.prefix(300))")
        let empty = try await cluster.ctl("tenant/acme", ["partition", "create", "", "--cores", "1", "--memory", "1GiB"])
        #expect(empty.status == 2 && empty.stderr == "clusterctl: partition name is empty\n", "\(empty.stderr)")
        let duplicate = try await cluster.ctl("tenant/acme", ["partition", "create", "web-1", "--cores", "1", "--memory", "1GiB"])
        #expect(duplicate.status == 1 && duplicate.stderr == "clusterctl: partition name web-1 is taken; choose another\n")
        // Another tenant gets the same answer: nothing tells it whose the name is.
        let theirs = try await cluster.ctl("tenant/globex", ["partition", "create", "web-1", "--cores", "1", "--memory", "1GiB"])
        #expect(theirs.status == 1 && theirs.stderr == duplicate.stderr)
        let unknown = try await cluster.ctl("admin/ops", ["partition", "create", "p", "--tenant", "nobody", "--cores", "1", "--memory", "1GiB"])
        #expect(unknown.status == 1 && unknown.stderr == "clusterctl: tenant nobody does not exist\n")
        let taken = try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "1", "--max-memory", "1GiB", "--max-disk", "1GiB"])
        #expect(taken.status == 1 && taken.stderr == "clusterctl: tenant acme already exists\n")
        let busy = try await cluster.ctl("admin/ops", ["tenant", "delete", "acme"])
        #expect(busy.status == 1 && busy.stderr.contains("still owns 2 partitions"))
        func placements(_ list: [[String: Any]]) -> [String] {
            list.map { "\($0["name"] ?? "") \($0["blade"] ?? "") \($0["bladeCores"] ?? "") \($0["generation"] ?? "")" }
        }
        #expect(placements(try await partitions(cluster)) == placements(before))
    }

    @Test func aKilledAgentsBladeTurnsUnreachable() async throws {
        let cluster = try ClusterHarness(heartbeatMs: 200)
        defer { cluster.stop() }
        try await cluster.startFourBlades()
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "20", "--max-memory", "64GiB", "--max-disk", "1TiB"]).status == 0)
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "p", "--cores", "2", "--memory", "2GiB"]).status == 0)
        let blade = try #require(try await partitions(cluster).first?["blade"] as? String)
        try await cluster.eventually("partition running") { try await self.partitions(cluster).first?["state"] as? String == "running" }
        let killed = Date()
        cluster.kill(agent: blade)
        try await cluster.eventually("blade \(blade) unreachable", timeout: 10) {
            let blades = try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]
            return blades?.first { $0["id"] as? String == blade }?["state"] as? String == "unreachable"
        }
        // Lease: 5 heartbeats (1 s), checked 4 times a second; allow for process start-up of clusterctl.
        #expect(Date().timeIntervalSince(killed) < 6)
        #expect(try await partitions(cluster).first?["state"] as? String == "unknown (blade unreachable)")
        try await cluster.eventually("suspect and unreachable recorded as events", timeout: 5) {
            let events = try await cluster.ctl("admin/ops", ["events", "-o", "json"]).json as? [[String: Any]] ?? []
            return events.contains { $0["kind"] as? String == "blade.suspect" && $0["subject"] as? String == blade }
                && events.contains { $0["kind"] as? String == "blade.unreachable" && $0["subject"] as? String == blade }
        }
        // New partitions avoid it.
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "q", "--cores", "2", "--memory", "2GiB"]).status == 0)
        #expect(try await partitions(cluster).first { $0["name"] as? String == "q" }?["blade"] as? String != blade)
    }

    @Test func controllerKilledAndRestartedLosesNothing() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try await cluster.startFourBlades()
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "40", "--max-memory", "128GiB", "--max-disk", "1TiB"]).status == 0)
        // Three in a hard blade-level group (N+1 at blade level leaves room for one blade's loss), one alone.
        for index in 1...4 {
            let group = index < 4 ? ["--group", "g", "--spread", "blade", "--hard"] : []
            let created = try await cluster.ctl("tenant/acme", ["partition", "create", "p\(index)", "--cores", "3", "--memory", "4GiB", "--vmm"] + group)
            #expect(created.status == 0, "\(created.stderr)")
        }
        #expect(try await cluster.ctl("tenant/acme", ["vm", "create", "v", "--partition", "p1", "--vcpus", "1", "--memory", "1GiB"]).status == 0)
        #expect(try await cluster.ctl("tenant/acme", ["partition", "stop", "p2"]).status == 0)
        #expect(try await cluster.ctl("admin/ops", ["blade", "cordon", "blade-4"]).status == 0)
        func snapshot() async throws -> String {
            let parts = try await partitions(cluster).map { p in
                ["name", "tenant", "cores", "memoryBytes", "blade", "bladeCores", "memoryBase", "desiredState", "vms", "generation", "placementReason"]
                    .map { "\(p[$0] ?? "-")" }.joined(separator: " ")
            }
            let tenants = try await cluster.ctl("admin/ops", ["tenant", "list"]).stdout
            let vms = try await cluster.ctl("tenant/acme", ["vm", "list", "--partition", "p1", "-o", "json"]).json as? [[String: Any]] ?? []
            let blades = (try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]] ?? [])
                .map { "\($0["id"] ?? "") \($0["cordoned"] ?? "") \($0["freeCores"] ?? "")" }
            return (parts + [tenants] + vms.map { "\($0["name"] ?? "") \($0["vcpus"] ?? "")" } + blades).joined(separator: "\n")
        }
        let before = try await snapshot()
        let eventsBefore = try await cluster.ctl("admin/ops", ["events", "--limit", "1000", "-o", "json"]).json as? [[String: Any]] ?? []
        cluster.killController()
        try cluster.startController()
        #expect(try await snapshot() == before)
        let eventsAfter = try await cluster.ctl("admin/ops", ["events", "--limit", "1000", "-o", "json"]).json as? [[String: Any]] ?? []
        #expect(eventsAfter.count >= eventsBefore.count)
        #expect(eventsAfter.prefix(eventsBefore.count).map { $0["sequence"] as? Int } == eventsBefore.map { $0["sequence"] as? Int })
        // The agents dial again and the partitions are still where they were, in their states.
        try await cluster.eventually("agents back and partitions converged") {
            let states = Dictionary(uniqueKeysWithValues: try await self.partitions(cluster).map { ($0["name"] as! String, $0["state"] as! String) })
            return states == ["p1": "running", "p2": "stopped", "p3": "running", "p4": "running"]
        }
    }

    @Test func fiftyConcurrentCreatesInOneGroupNeverBreakARule() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try await cluster.startFourBlades()
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "1000", "--max-memory", "4TiB", "--max-disk", "1TiB"]).status == 0)
        // 50 requests at once, one connection each: 5 cores, 8 GiB, hard chassis spread of at
        // most 5 per chassis. A blade holds 3 such partitions by cores, a chassis 6: the group
        // rule binds first (10 accepted), and nothing may ever exceed a blade.
        let tls = try cluster.tls(PeerIdentity(role: .tenant, name: "acme"))
        let port = cluster.port
        let outcomes = try await withThrowingTaskGroup(of: (String, String?).self) { group in
            for index in 0..<50 {
                group.addTask {
                    let connection = try await WireClient.connect(host: "127.0.0.1", port: port, tls: tls, server: .role(.controller))
                    defer { Task { await connection.close() } }
                    let spec = Protos.PartitionSpec(
                        name: "db-\(index)", tenant: "acme", cores: 5, memoryBytes: 8 << 30, diskBytes: 0, cpuMode: .dedicated, vmm: false,
                        shadowVMCS: false, antiAffinity: Protos.AntiAffinity(group: "db", level: .chassis, hard: true, maxPerDomain: 5),
                        isolation: .sharedBlade)
                    do {
                        _ = try await connection.call(CreatePartitionRequest(spec: spec), expecting: PartitionResponse.self, timeout: .seconds(30))
                        return ("db-\(index)", nil)
                    } catch let failure as WireFailure {
                        return ("db-\(index)", failure.message)
                    }
                }
            }
            return try await group.reduce(into: [(String, String?)]()) { $0.append($1) }
        }
        let refused = outcomes.compactMap(\.1)
        #expect(outcomes.count == 50)
        #expect(refused.count == 40)
        #expect(refused.allSatisfy { $0.hasPrefix("no blade fits: 4 blades;") && $0.contains("chassis anti-affinity (group db)") })

        // An independent check from what the controller reports.
        let placed = try await partitions(cluster)
        let blades = try #require(try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]])
        let chassisOf = Dictionary(uniqueKeysWithValues: blades.map { ($0["id"] as! String, $0["chassis"] as! String) })
        #expect(placed.count == 10)
        var perChassis: [String: Int] = [:]
        var coresPerBlade: [String: Set<Int>] = [:]
        var memoryPerBlade: [String: Int] = [:]
        for partition in placed {
            let blade = partition["blade"] as! String
            perChassis[chassisOf[blade]!, default: 0] += 1
            let range = (partition["bladeCores"] as! String).split(separator: "-").map { Int($0)! }
            let cores = Set(range.count == 2 ? Array(range[0]...range[1]) : range)
            #expect(coresPerBlade[blade, default: []].isDisjoint(with: cores), "core given twice on \(blade)")
            coresPerBlade[blade, default: []].formUnion(cores)
            memoryPerBlade[blade, default: 0] += partition["memoryBytes"] as! Int
        }
        #expect(perChassis.values.allSatisfy { $0 <= 5 })
        for blade in blades {
            let id = blade["id"] as! String
            #expect((coresPerBlade[id]?.count ?? 0) <= blade["cores"] as! Int)
            #expect(coresPerBlade[id]?.allSatisfy { $0 < 16 } ?? true)
            #expect(memoryPerBlade[id, default: 0] <= blade["memoryBytes"] as! Int)
            #expect(blade["freeCores"] as! Int == 16 - (coresPerBlade[id]?.count ?? 0))
        }
    }

    @Test func configFilesAreCheckedStrictly() throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        let config = cluster.directory + "/controller.yaml"
        try "listen: 127.0.0.1:0\nhartbeat-interval-ms: 500\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (status, message) = try ClusterHarness.runToEnd("cluster-controller", ["run", "--config", config])
        #expect(status == 2)
        #expect(message == "cluster-controller: config file \(config): unknown key 'hartbeat-interval-ms'; did you mean 'heartbeat-interval-ms'?\n")
        #expect(!FileManager.default.fileExists(atPath: cluster.directory + "/data"))
    }
} }

/// An agent's certificate opens agent messages only, and only for its own blade.
extension EndToEnd { @Suite struct AgentAuthorizationTests {
    @Test func agentsAreConfinedToAgentMessagesForTheirOwnBlade() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try cluster.startController()
        try cluster.issue("agent/blade-7")
        let connection = try await WireClient.connect(host: "127.0.0.1", port: cluster.port,
                                                      tls: try cluster.tls(PeerIdentity(role: .agent, name: "blade-7")), server: .role(.controller))
        defer { Task { await connection.close() } }
        let listing = await #expect(throws: WireFailure.self) {
            try await connection.call(ListPartitionsRequest(), expecting: PartitionListResponse.self)
        }
        #expect(listing?.code == .permissionDenied)
        let forged = RegisterBladeRequest(bladeID: "blade-8", cores: 4, memoryBytes: 4 << 30, nestedCapable: true,
                                          labels: Labels(chassis: "c", rack: "r", powerDomain: "p"), agentVersion: "test", backend: "sim")
        let impersonation = await #expect(throws: WireFailure.self) {
            try await connection.call(forged, expecting: RegisterBladeResponse.self)
        }
        #expect(impersonation?.code == .permissionDenied)
        #expect(impersonation?.message == "agent blade-7 cannot register blade blade-8; an agent registers only its own blade")
        // The attempt leaves a trace with the peer's identity.
        try await cluster.eventually("the impersonation in the controller's log") {
            cluster.controllerLog.contains("peer.identity=nestor://agent/blade-7")
                && cluster.controllerLog.contains("agent blade-7 cannot register blade blade-8")
        }
        let heartbeat = await #expect(throws: WireFailure.self) {
            try await connection.call(HeartbeatRequest(bladeID: "blade-7", sequence: 1), expecting: HeartbeatResponse.self)
        }
        #expect(heartbeat?.code == .failedPrecondition)
    }
} }

/// The example configuration files in deploy/configs are valid for the executables.
extension EndToEnd { @Suite struct ExampleConfigTests {
    static var repository: String {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.path
    }

    @Test func theExampleControllerAndAgentConfigsRun() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        let configs = Self.repository + "/deploy/configs"
        // The example files, with the paths and addresses of this test put over them by flags.
        let controller = Process()
        controller.executableURL = URL(fileURLWithPath: ClusterHarness.executable("cluster-controller"))
        controller.arguments = ["run", "--config", configs + "/controller.yaml", "--listen", "127.0.0.1:0",
                                "--data-dir", cluster.directory + "/example-data", "--pki-dir", cluster.pki.path]
        let out = Pipe()
        controller.standardOutput = out
        controller.standardError = FileHandle.nullDevice
        try controller.run()
        defer { controller.terminate(); controller.waitUntilExit() }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        try cluster.issue("agent/blade-01")
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: ClusterHarness.executable("blade-agent"))
        agent.arguments = ["run", "--config", configs + "/agent.yaml", "--controller", "127.0.0.1:\(port)", "--pki-dir", cluster.pki.path]
        agent.standardError = FileHandle.nullDevice
        try agent.run()
        defer { agent.terminate(); agent.waitUntilExit() }
        var listed = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !listed.contains("chassis-01") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ClusterHarness.executable("clusterctl"))
            process.arguments = ["blade", "list", "--config", configs + "/clusterctl.yaml", "--endpoint", "127.0.0.1:\(port)",
                                 "--pki-dir", cluster.pki.path]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            listed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            if !listed.contains("chassis-01") { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(listed.contains("blade-01  ready  chassis-01  rack-01  power-a  0/16"))
    }
} }

/// A blade on the kvm backend: a partition is a real KVM LPAR in its own process.
extension EndToEnd { @Suite(.enabled(if: FileManager.default.isReadableFile(atPath: "/dev/kvm"), "needs /dev/kvm"))
struct KVMBladeTests {
    @Test func aPartitionOnAKVMBladeBootsARealLPARAndItsCrashIsReported() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try await startKVMBlade(cluster)
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "erp", "--cores", "2", "--memory", "256MiB", "--disk", "16MiB"]).status == 0)
        try await cluster.eventually("erp running") {
            (try await cluster.ctl("tenant/acme", ["partition", "show", "erp", "-o", "json"]).json as? [String: Any])?["state"] as? String == "running"
        }
        // Its LPAR is a process of its own, with a disk image of its size.
        let pids = try lparHostProcesses()
        #expect(pids.count == 1)
        let disk = cluster.directory + "/disks/kvm-1-erp.img"
        #expect((try FileManager.default.attributesOfItem(atPath: disk)[.size] as? Int) == 16 << 20)
        // The LPAR's process dies: the partition is failed with the reason, and an event says so.
        kill(pids[0], SIGKILL)
        try await cluster.eventually("erp failed") {
            (try await cluster.ctl("tenant/acme", ["partition", "show", "erp", "-o", "json"]).json as? [String: Any])?["state"] as? String
                == "failed: the LPAR's process died of signal 9 (SIGKILL)"
        }
        try await cluster.eventually("partition.failed event") {
            let events = try await cluster.ctl("tenant/acme", ["events", "-o", "json"]).json as? [[String: Any]] ?? []
            return events.contains { $0["kind"] as? String == "partition.failed" && $0["subject"] as? String == "erp" }
        }
        // Deleting it removes the LPAR and its disk image.
        #expect(try await cluster.ctl("tenant/acme", ["partition", "delete", "erp"]).status == 0)
        try await cluster.eventually("disk image removed") { !FileManager.default.fileExists(atPath: disk) }
    }

    @Test func aSharedPartitionRunsOnTheSharedPoolAndPartitionsShareOneDiskImageByLUNRange() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        // One 8 MiB image behind the blade's shared disk: 8 LUNs of 1 MiB.
        let image = cluster.directory + "/fc0.img"
        #expect(FileManager.default.createFile(atPath: image, contents: Data(repeating: 0x5a, count: 8 << 20)))
        try await startKVMBlade(cluster, extra: ["--disks", "fc0:8:shared", "--shared-disk", image], maxCores: 8)
        // 3 vCPUs at 50 %: the claim holds 2 cores, which become the blade's shared pool.
        let created = try await cluster.ctl("tenant/acme", ["partition", "create", "web", "--cores", "3", "--cpu-mode", "shared",
                                                            "--service-ratio", "50", "--memory", "256MiB", "--disk", "2MiB"])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "db", "--cores", "1", "--memory", "256MiB", "--disk", "3MiB"]).status == 0)
        // The image holds 8 MiB, so the blade offers 8 MiB of disk: 4 MiB more do not fit.
        let big = try await cluster.ctl("tenant/acme", ["partition", "create", "big", "--cores", "1", "--memory", "256MiB", "--disk", "4MiB"])
        #expect(big.status == 1 && big.stderr.contains("too little free disk"), "\(big.stderr)")
        for name in ["web", "db"] {
            try await cluster.eventually("\(name) running") {
                (try await cluster.ctl("tenant/acme", ["partition", "show", name, "-o", "json"]).json as? [String: Any])?["state"] as? String == "running"
            }
        }
        let web = try #require(try lparConfiguration("web"))
        let share = try #require(web["share"] as? [String: Any])
        #expect(share["vcpus"] as? Int == 3 && share["serviceRatio"] as? Int == 50 && share["capped"] as? Bool == true)
        let webCores = try #require(web["hostCores"] as? [Int])
        #expect(webCores.count == 2)
        let db = try #require(try lparConfiguration("db"))
        #expect(db["share"] == nil)
        #expect(Set(db["hostCores"] as? [Int] ?? []).isDisjoint(with: webCores))
        // Each has its own LUN range of the one image, and no image of its own.
        let webDisk = try #require(web["disk"] as? [String: Any])
        let dbDisk = try #require(db["disk"] as? [String: Any])
        #expect(webDisk["path"] as? String == image && dbDisk["path"] as? String == image)
        let webOffset = webDisk["offset"] as? Int ?? -1, dbOffset = dbDisk["offset"] as? Int ?? -1
        #expect(webDisk["length"] as? Int == 2 << 20 && dbDisk["length"] as? Int == 3 << 20)
        let webRange = webOffset..<(webOffset + (2 << 20)), dbRange = dbOffset..<(dbOffset + (3 << 20))
        #expect(webOffset >= 0 && dbOffset >= 0 && !webRange.overlaps(dbRange) && max(webRange.upperBound, dbRange.upperBound) <= 8 << 20)
        #expect(!FileManager.default.fileExists(atPath: cluster.directory + "/disks/kvm-1-web.img"))
        // Deleting a partition zeroes its range; the other's data stays.
        #expect(try await cluster.ctl("tenant/acme", ["partition", "delete", "web"]).status == 0)
        try await cluster.eventually("web's range zeroed") {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
            return bytes[webRange].allSatisfy { $0 == 0 }
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        #expect(bytes[dbRange].allSatisfy { $0 == 0x5a })
    }

    /// Injected: the delete of a partition whose LUN range is 1 GiB of the shared disk, which
    /// the agent zeroes and syncs before the range is free again. Checked: the controller kept
    /// receiving heartbeats throughout (counted by the controller itself), no gap between two
    /// was longer than the suspect lease, and the blade never turned `suspect`.
    @Test func theControllerKeepsHearingTheBladeWhileALargeLUNRangeIsZeroed() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        let image = cluster.directory + "/fc0.img"
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        #expect(truncate(image, 1 << 30) == 0)
        let marked = try #require(FileHandle(forUpdatingAtPath: image))
        for offset: UInt64 in [0, (1 << 30) - 4096] {
            try marked.seek(toOffset: offset)
            try marked.write(contentsOf: Data(repeating: 0x5a, count: 4096))
        }
        try marked.close()
        try await startKVMBlade(cluster, extra: ["--disks", "fc0:4:shared", "--shared-disk", image])
        #expect(try await cluster.ctl("tenant/acme", ["partition", "create", "big", "--cores", "1", "--memory", "256MiB",
                                                      "--disk", "1GiB"]).status == 0)
        try await cluster.eventually("big running") {
            (try await cluster.ctl("tenant/acme", ["partition", "show", "big", "-o", "json"]).json as? [String: Any])?["state"] as? String == "running"
        }
        let lunFile = cluster.directory + "/disks/luns.json"
        func bladeSample() async throws -> (heartbeats: Int, age: Int, state: String) {
            let blade = try #require((try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]])?.first)
            return (blade["heartbeats"] as? Int ?? -1, blade["heartbeatAgeMillis"] as? Int ?? -1, blade["state"] as? String ?? "")
        }
        func rangeKept() -> Bool {
            guard let data = FileManager.default.contents(atPath: lunFile),
                  let ranges = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
            return ranges["big"] != nil
        }
        #expect(rangeKept(), "the agent keeps big's LUN range in \(lunFile)")
        let before = try await bladeSample()
        let began = Date()
        #expect(try await cluster.ctl("tenant/acme", ["partition", "delete", "big"]).status == 0)
        var samples: [(heartbeats: Int, age: Int, state: String)] = []
        while rangeKept() {
            samples.append(try await bladeSample())
            #expect(Date().timeIntervalSince(began) < 60, "the LUN range was not released within 60 s")
            if Date().timeIntervalSince(began) >= 60 { break }
        }
        let zeroing = Date().timeIntervalSince(began)
        let after = try await bladeSample()
        let received = after.heartbeats - before.heartbeats
        // One heartbeat every 200 ms; the suspect lease is 600 ms.
        let expected = Int(zeroing / 0.2)
        let oldest = samples.map(\.age).max() ?? 0
        print("deleting a 1 GiB LUN range took \(String(format: "%.2f", zeroing)) s; the controller received \(received) heartbeats "
              + "(\(expected) intervals), the oldest last heartbeat seen was \(oldest) ms, \(samples.count) samples")
        #expect(zeroing >= 0.6, "the zeroing took \(zeroing) s: too short to show anything")
        #expect(received >= expected - 1, "\(received) heartbeats in \(zeroing) s")
        #expect(samples.allSatisfy { $0.state == "ready" }, "\(samples.map(\.state))")
        #expect(oldest < 600, "a heartbeat was \(oldest) ms old")
        // The range is zero on the image, to its first and last byte.
        let handle = try #require(FileHandle(forReadingAtPath: image))
        defer { try? handle.close() }
        for offset: UInt64 in [0, (1 << 30) - 4096] {
            try handle.seek(toOffset: offset)
            #expect(try handle.read(upToCount: 4096)?.allSatisfy { $0 == 0 } == true, "at \(offset)")
        }
    }

    @Test(arguments: [
        (["--backend", "sim", "--shared-disk", "IMAGE"], "shared-disk is for the kvm backend (backend: kvm)"),
        (["--shared-disk", "/nonexistent/fc0.img"], "shared-disk /nonexistent/fc0.img does not exist or cannot be read"),
        (["--shared-disk", "IMAGE", "--disks", "sas0:1"], "shared-disk needs a shared disk in disks (ID:LUNS:shared)"),
        (["--shared-disk", "IMAGE", "--disks", "fc0:4096:shared"], "shared-disk IMAGE (1048576 bytes) is too small for 4096 LUNs of at least 512 bytes"),
        (["--shared-disk", "IMAGE", "--disk", "2MiB"], "disk 2MiB is more than the shared-disk image holds (1MiB)"),
    ])
    func aBadSharedDiskIsRefusedBeforeTheAgentDials(extra: [String], message: String) throws {
        let directory = NSTemporaryDirectory() + "nestor-shared-disk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let image = directory + "/fc0.img"
        #expect(FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20)))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ClusterHarness.executable("blade-agent"))
        process.arguments = ["run", "--controller", "127.0.0.1:1", "--blade-id", "b1", "--backend", "kvm", "--cores", "2", "--memory", "4GiB",
                             "--data-dir", directory + "/data"] + extra.map { $0 == "IMAGE" ? image : $0 }
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 2)
        #expect(output == "blade-agent: \(message.replacingOccurrences(of: "IMAGE", with: image))\n")
    }

    /// A controller and one kvm blade (4 cores, 8 GiB, disk images under DIR/disks), ready,
    /// and tenant acme with `maxCores` cores, 4 GiB and 1 GiB of disk.
    func startKVMBlade(_ cluster: ClusterHarness, extra: [String] = [], maxCores: Int = 4) async throws {
        try cluster.startController()
        try cluster.startAgent("kvm-1", chassis: "c1", cores: 4, memory: "8GiB",
                               extra: ["--backend", "kvm", "--data-dir", cluster.directory + "/disks"] + extra)
        try await cluster.eventually("kvm blade ready") {
            let blades = try await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]
            return blades?.first?["state"] as? String == "ready" && blades?.first?["backend"] as? String == "kvm"
        }
        #expect(try await cluster.ctl("admin/ops", ["tenant", "create", "acme", "--max-cores", "\(maxCores)", "--max-memory", "4GiB",
                                                    "--max-disk", "1GiB"]).status == 0)
    }

    /// The configuration the agent gave the LPAR's process (its --config argument).
    func lparConfiguration(_ name: String) throws -> [String: Any]? {
        for pid in try lparHostProcesses(name) {
            guard let command = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { continue }
            let arguments = command.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let index = arguments.firstIndex(of: "--config"), index + 1 < arguments.count else { continue }
            return try JSONSerialization.jsonObject(with: Data(arguments[index + 1].utf8)) as? [String: Any]
        }
        return nil
    }

    @Test func aVMMPartitionOnAKVMBladeRunsAGuestHypervisorWhoseVMsAreRealL2VMs() async throws {
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try await startKVMBlade(cluster)
        let created = try await cluster.ctl("tenant/acme", ["partition", "create", "vmm", "--cores", "2", "--memory", "1GiB",
                                                            "--disk", "16MiB", "--vmm"])
        #expect(created.status == 0, "\(created.stderr)")
        try await cluster.eventually("vmm running") {
            (try await cluster.ctl("tenant/acme", ["partition", "show", "vmm", "-o", "json"]).json as? [String: Any])?["state"] as? String == "running"
        }
        // Its LPAR runs the guest hypervisor, with the VMX microcode page and shadowing on.
        let configuration = try #require(try lparConfiguration("vmm"))
        #expect((configuration["image"] as? String)?.hasSuffix("l1-vmm.bin") == true)
        let vmx = try #require(configuration["vmx"] as? [String: Any])
        #expect(vmx["shadowing"] as? Bool == true)
        for name in ["io-1", "io-2"] {
            let vm = try await cluster.ctl("tenant/acme", ["vm", "create", name, "--partition", "vmm", "--vcpus", "1", "--memory", "64MiB",
                                                           "--workload", "iometer"])
            #expect(vm.status == 0, "\(vm.stderr)")
        }
        // Both are real L2 VMs: their reads go through L1's virtual disk, and L0 sees the exits.
        try await cluster.eventually("both VMs running") {
            let vms = try await cluster.ctl("tenant/acme", ["vm", "list", "--partition", "vmm", "-o", "json"]).json as? [[String: Any]] ?? []
            return vms.count == 2 && vms.allSatisfy { $0["state"] as? String == "running" }
        }
        try await cluster.eventually("L2 reads counted, and the nested exits L0 saw") {
            let shown = try await cluster.ctl("tenant/acme", ["partition", "show", "vmm", "-o", "json"]).json as? [String: Any]
            return (shown?["l2Operations"] as? Int ?? 0) > 200 && (shown?["l2Exits"] as? Int ?? 0) > 200
                && (shown?["servedByShadow"] as? Int ?? 0) > 0
        }
        #expect(try await cluster.ctl("tenant/acme", ["vm", "delete", "io-1", "--partition", "vmm"]).status == 0)
        try await cluster.eventually("io-1 gone") {
            let vms = try await cluster.ctl("tenant/acme", ["vm", "list", "--partition", "vmm", "-o", "json"]).json as? [[String: Any]] ?? []
            return vms.map { $0["name"] as? String } == ["io-2"]
        }
    }

    func lparHostProcesses(_ name: String = "erp") throws -> [Int32] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                  let command = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return nil }
            return command.contains("lpar-host") && command.contains("\"name\":\"\(name)\"") ? pid : nil
        }
    }
} }
