import Foundation
import NIOCore
import Protos
import Testing
import Wire
import WireCodec

/// Extreme integers in every integer field of every request type, sent to a real controller
/// over mutual TLS: each is answered (a response, or an ERROR that is not an internal error),
/// sizes and core counts beyond any blade are refused as invalid, and the controller keeps
/// running with no claim beyond a blade's capacity and no tenant beyond its quota.
extension EndToEnd { @Suite struct HostileRequestTests {
    static let extremes: [UInt64] = [0, 1, 1 << 31, 1 << 32, 1 << 63, .max]

    /// Fields that hold a size or a count of cores: above this, the request must be refused
    /// with invalidArgument (before the fix, 2^64-1 here overflowed a quota sum and the
    /// Swift runtime killed the controller).
    static let refusedAbove: [String: UInt64] = [
        "CreatePartitionRequest.spec.cores": 4096,
        "CreatePartitionRequest.spec.memoryBytes": 1 << 52,
        "CreatePartitionRequest.spec.diskBytes": 1 << 52,
        "CreateVMRequest.vcpus": 4096,
        "CreateVMRequest.memoryBytes": 1 << 52,
        "RegisterBladeRequest.cores": 4096,
        "RegisterBladeRequest.memoryBytes": 1 << 52,
        "RegisterBladeRequest.diskBytes": 1 << 52,
    ]

    /// A valid request of each type, with a name unique to attempt `n` where a name must be
    /// new, so that each attempt reaches the checks of its numbers.
    static func base(_ name: String, _ n: Int) -> (any WireMessage)? {
        let labels = Labels(chassis: "chassis-9", rack: "rack-9", powerDomain: "power-9")
        let counters = LPARCounters(l2Exits: 1, reflected: 1, trappedVMX: 1, servedByShadow: 1, l0Nanoseconds: 1)
        let lpar = LPARDefinition(name: "x", dedicatedCores: [1], sharedCPUs: 1, serviceRatio: 50, memoryBase: 1 << 30,
                                  memoryBytes: 1 << 30, vmm: false, vmcsShadowing: false, diskBytes: 0, poolCores: [2])
        switch name {
        case "CreateTenantRequest":
            return CreateTenantRequest(name: "t\(n)", quota: TenantQuota(maxCores: 8, maxMemoryBytes: 16 << 30, maxDiskBytes: 1 << 40, maxPartitions: 4))
        case "CreatePartitionRequest":
            return CreatePartitionRequest(spec: PartitionSpec(
                name: "p\(n)", tenant: "acme", cores: 1, memoryBytes: 256 << 20, diskBytes: 1 << 20, cpuMode: .shared, serviceRatio: 50,
                vmm: false, shadowVMCS: false, antiAffinity: AntiAffinity(group: "g\(n)", level: .blade, hard: true, maxPerDomain: 1),
                isolation: .sharedBlade))
        case "ListTenantsRequest": return ListTenantsRequest(pageSize: 10)
        case "ListPartitionsRequest": return ListPartitionsRequest(pageSize: 10)
        case "ListVMsRequest": return ListVMsRequest(partition: "vmm1", pageSize: 10)
        case "ListBladesRequest": return ListBladesRequest(pageSize: 10)
        case "PartitionActionRequest": return PartitionActionRequest(name: "vmm1", action: .start)
        case "CreateVMRequest": return CreateVMRequest(name: "v\(n)", partition: "vmm1", vcpus: 1, memoryBytes: 64 << 20, workload: .idle)
        case "BladeActionRequest": return BladeActionRequest(blade: "blade-1", action: .uncordon)
        case "WatchEventsRequest": return WatchEventsRequest(sinceSequence: 1)
        case "ListEventsRequest": return ListEventsRequest(sinceSequence: 1, limit: 10, pageSize: 10)
        case "RegisterBladeRequest":
            return RegisterBladeRequest(bladeID: "blade-9", cores: 8, memoryBytes: 16 << 30, disks: [DiskInventory(id: "d0", lunCount: 4, shared: false)],
                                        nestedCapable: true, labels: labels, agentVersion: "test", backend: "sim", diskBytes: 1 << 30)
        case "HeartbeatRequest":
            return HeartbeatRequest(bladeID: "blade-9", sequence: UInt64(n), lpars: [LPARStatus(
                name: "vmm1", counters: counters, vms: [VMStatus(name: "v", operations: 1, state: .running)], state: .running,
                migration: LPARMigration(migrationID: "m1", role: .source, stage: .copying, round: 1, sentBytes: 1, remainingBytes: 1,
                                         dirtyBytesPerSecond: 1, linkBytesPerSecond: 1, downtimeMillis: 1))])
        case "AgentCommandRequest":
            return AgentCommandRequest(commandID: "c\(n)", kind: .defineLPAR, lpar: lpar,
                                       vm: VMInfo(name: "v", partition: "x", vcpus: 1, memoryBytes: 64 << 20, workload: .idle, state: "running"),
                                       generation: 1, migration: MigrationOrder(migrationID: "m1", peerBlade: "blade-2", maxDowntimeMillis: 50))
        case "MigrationBeginRequest":
            return MigrationBeginRequest(migrationID: "m\(n)", partition: "vmm1", sourceBlade: "blade-9", lpar: lpar, pageSize: 4096)
        case "MemoryRoundRequest": return MemoryRoundRequest(migrationID: "m", round: 1, pageCount: 1, final: false)
        case "VCPUStateRequest": return VCPUStateRequest(migrationID: "m", vcpu: 0, registers: [0])
        case "MigrationCommitRequest": return MigrationCommitRequest(migrationID: "m", checksum: 1)
        case "BulkUploadRequest": return BulkUploadRequest(totalBytes: 1)
        case "MigratePartitionRequest": return MigratePartitionRequest(partition: "vmm1", maxDowntimeMillis: 50)
        default: return nil
        }
    }

    @Test func extremeIntegersInEveryRequestFieldAreAnsweredAndTheControllerKeepsRunning() async throws {
        let schema = try SchemaCatalogue.load()
        // One blade: N+1 admission would refuse everything, and this test is about the numbers.
        let cluster = try ClusterHarness(admission: "none")
        defer { cluster.stop() }
        try cluster.startController()
        try cluster.startAgent("blade-1", chassis: "chassis-1")
        try cluster.issue("agent/blade-9")
        try await cluster.eventually("blade-1 ready") {
            let blades = (try? await cluster.ctl("admin/ops", ["blade", "list", "-o", "json"]).json as? [[String: Any]]) ?? []
            return blades.first?["state"] as? String == "ready"
        }
        let admin = try await WireClient.connect(host: "127.0.0.1", port: cluster.port, tls: try cluster.tls(PeerIdentity(role: .admin, name: "ops")), server: .role(.controller))
        let tenant = try await WireClient.connect(host: "127.0.0.1", port: cluster.port, tls: try cluster.tls(PeerIdentity(role: .tenant, name: "acme")), server: .role(.controller))
        let agent = try await WireClient.connect(host: "127.0.0.1", port: cluster.port, tls: try cluster.tls(PeerIdentity(role: .agent, name: "blade-9")), server: .role(.controller))
        defer { Task { await admin.close(); await tenant.close(); await agent.close() } }
        // A quota no size below the bound can exceed, so that each refusal is the request's own.
        _ = try await admin.call(CreateTenantRequest(name: "acme", quota: TenantQuota(maxCores: 1_000_000, maxMemoryBytes: 1 << 62, maxDiskBytes: 1 << 62)),
                                 expecting: TenantResponse.self)
        _ = try await tenant.call(CreatePartitionRequest(spec: PartitionSpec(
            name: "vmm1", tenant: "acme", cores: 4, memoryBytes: 4 << 30, diskBytes: 0, cpuMode: .dedicated, vmm: true, shadowVMCS: true,
            isolation: .sharedBlade)), expecting: PartitionResponse.self)
        _ = try await agent.call(Self.base("RegisterBladeRequest", 0) as! RegisterBladeRequest, expecting: RegisterBladeResponse.self)
        // blade-9 is this test's connection, not an agent that runs LPARs: keep placement off it.
        _ = try await admin.call(BladeActionRequest(blade: "blade-9", action: .cordon), expecting: BladeResponse.self)

        var attempt = 0
        var answered = (responses: 0, refusals: 0)
        var unanswered: [String] = []
        for message in schema.messages where message.kind == "request" {
            let paths = schema.integerPaths(message.fields)
            if paths.isEmpty { continue }
            let connection = message.roles.contains("tenant") ? tenant : message.roles.contains("admin") ? admin
                : message.roles.contains("agent") ? agent : admin
            for path in paths {
                for value in Self.extremes {
                    attempt += 1
                    guard let base = Self.base(message.name, attempt) else {
                        Issue.record("request \(message.name) has integer fields and no base message in this test: add one")
                        break
                    }
                    let payload = try RawFields.setting(Array(base.encoded().readableBytesView), path: path.numbers[...], to: value, type: path.type)
                    let what = "\(message.name).\(path) = \(value)"
                    do {
                        _ = try await connection.callRaw(type: message.number, payload: ByteBuffer(bytes: payload), timeout: .seconds(10))
                        answered.responses += 1
                        if let bound = Self.refusedAbove["\(message.name).\(path)"], value > bound {
                            Issue.record("\(what) was accepted; a value above \(bound) must be refused")
                        }
                    } catch let failure as WireFailure {
                        answered.refusals += 1
                        #expect(failure.code != .internalError, "\(what): \(failure)")
                        if let bound = Self.refusedAbove["\(message.name).\(path)"], value > bound {
                            #expect(failure.code == .invalidArgument || failure.code == .malformed, "\(what): \(failure)")
                        }
                    } catch {
                        unanswered.append("\(what): \(error)")
                    }
                }
            }
            // Still serving after each request type.
            _ = try await admin.call(ListTenantsRequest(), expecting: TenantListResponse.self)
        }
        #expect(unanswered.isEmpty, "no answer (the controller died or closed the connection): \(unanswered.prefix(5))")
        #expect(answered.responses + answered.refusals == attempt)
        #expect(cluster.controllerIsRunning, "the controller exited; log tail: \(cluster.controllerLog.suffix(2000))")

        // Nothing accepted broke a blade's capacity or a tenant's quota.
        let blades = try await admin.call(ListBladesRequest(), expecting: BladeListResponse.self).blades
        for blade in blades {
            #expect(blade.freeMemoryBytes <= blade.memoryBytes && blade.freeCores <= blade.cores, "\(blade.id)")
            let claimed = try await admin.call(ListPartitionsRequest(), expecting: PartitionListResponse.self).partitions
                .filter { $0.blade == blade.id }
            #expect(claimed.reduce(UInt64(0)) { $0 + $1.spec.memoryBytes } <= blade.memoryBytes, "\(blade.id) over-committed")
        }
        for info in try await admin.call(ListTenantsRequest(), expecting: TenantListResponse.self).tenants {
            #expect(info.usedMemoryBytes <= info.quota.maxMemoryBytes && info.usedCores <= info.quota.maxCores, "\(info.name) beyond its quota")
        }
        print("extreme integers: \(attempt) requests over \(schema.messages.filter { $0.kind == "request" }.count) request types, "
              + "\(answered.responses) accepted, \(answered.refusals) refused, controller running")
    }
} }
