import FaultHarness
import FaultScenario
import Foundation
import Protos
import Wire
import WireCodec

/// The workload's clients: each takes its planned operations in order, sends each at its time
/// (or as soon as the previous one is done), as the tenant it acts for (cordons as the admin),
/// and records what it learned in the history.
struct WorkloadClients {
    let scenario: Scenario
    let plan: [PlannedOperation]
    let pkiDirectory: String
    let routes: ControllerRoutes
    let clock: RunClock
    /// How long a client waits for an answer before the outcome is unknown.
    var timeout: Duration = .seconds(5)

    /// Runs every client to the end of its plan; the history of all of them.
    func run() async throws -> [HistoryEntry] {
        let byClient = Dictionary(grouping: plan, by: \.client)
        var credentials: [String: TLSIdentity] = ["admin": try PeerLink.credentials(LocalCluster.admin, pkiDirectory: pkiDirectory)]
        for tenant in scenario.tenants {
            credentials[tenant.name] = try PeerLink.credentials(PeerIdentity(role: .tenant, name: tenant.name), pkiDirectory: pkiDirectory)
        }
        let loaded = credentials
        return await withTaskGroup(of: [HistoryEntry].self) { group in
            for (client, operations) in byClient {
                group.addTask { await self.runClient(client, operations, credentials: loaded) }
            }
            var history: [HistoryEntry] = []
            for await entries in group { history += entries }
            return history.sorted { ($0.invokedMillis, $0.client) < ($1.invokedMillis, $1.client) }
        }
    }

    private func runClient(_ client: Int, _ operations: [PlannedOperation], credentials: [String: TLSIdentity]) async -> [HistoryEntry] {
        var history: [HistoryEntry] = []
        var links = ClientLinks(credentials: credentials)
        for operation in operations {
            await clock.sleep(until: operation.atMillis)
            let invoked = clock.now
            let outcome = await perform(operation.action, links: &links, port: routes.port(forClient: client))
            history.append(HistoryEntry(client: "client-\(client + 1)", action: operation.historyAction, invokedMillis: invoked,
                                        completedMillis: clock.now, outcome: outcome))
        }
        await links.dropAll()
        return history
    }

    private func perform(_ action: PlannedOperation.Action, links: inout ClientLinks, port: Int) async -> HistoryEntry.Outcome {
        let workload = scenario.workload
        switch action {
        case .createPartition(let tenant, let name, let groupName):
            var rule: Protos.AntiAffinity?
            if let groupName, let group = workload.groups.first(where: { $0.name == groupName && $0.tenant == tenant }) {
                rule = Protos.AntiAffinity(group: group.name, level: group.level.wire, hard: group.hard, maxPerDomain: 1)
            }
            let spec = Protos.PartitionSpec(name: name, tenant: tenant, cores: UInt32(workload.partitionCores),
                                            memoryBytes: workload.partitionMemory, diskBytes: 0, cpuMode: .dedicated,
                                            vmm: workload.partitionVMM, shadowVMCS: true, antiAffinity: rule, isolation: .sharedBlade)
            return await links.link(tenant, port).call(CreatePartitionRequest(spec: spec), expecting: PartitionResponse.self, timeout: timeout).historyOutcome
        case .deletePartition(let tenant, let name):
            return await links.link(tenant, port).call(PartitionActionRequest(name: name, action: .delete), expecting: PartitionResponse.self,
                                                       timeout: timeout).historyOutcome
        case .createVM(let tenant, let partition, let name):
            let request = CreateVMRequest(name: name, partition: partition, vcpus: 1, memoryBytes: 64 << 20, workload: .idle)
            return await links.link(tenant, port).call(request, expecting: VMResponse.self, timeout: timeout).historyOutcome
        case .deleteVM(let tenant, let partition, let name):
            return await links.link(tenant, port).call(DeleteVMRequest(name: name, partition: partition), expecting: Ack.self, timeout: timeout).historyOutcome
        case .cordon(let blade), .uncordon(let blade):
            let kind: BladeAction = if case .cordon = action { .cordon } else { .uncordon }
            return await links.link(nil, port).call(BladeActionRequest(blade: blade, action: kind), expecting: BladeResponse.self, timeout: timeout).historyOutcome
        }
    }
}

extension DomainLevel {
    var wire: Protos.SpreadLevel {
        switch self {
        case .blade: .blade
        case .chassis: .chassis
        case .rack: .rack
        case .power: .power
        }
    }
}

/// Milliseconds since the run began (monotonic), and sleeping until a time of the run.
struct RunClock: Sendable {
    let start = ContinuousClock.now

    var now: UInt64 {
        let elapsed = ContinuousClock.now - start
        return UInt64(max(0, elapsed.milliseconds))
    }

    func sleep(until millis: UInt64) async {
        let target = start + .milliseconds(Int64(millis))
        if target > ContinuousClock.now { try? await Task.sleep(until: target, clock: .continuous) }
    }
}

/// One client's connections: one per identity (a tenant, or the admin for cordons) and
/// controller port, opened when first used.
struct ClientLinks {
    /// Each identity's credentials, by tenant name ("admin" for the admin), loaded before the
    /// clients start.
    let credentials: [String: TLSIdentity]
    private var links: [String: PeerLink] = [:]

    init(credentials: [String: TLSIdentity]) { self.credentials = credentials }

    /// The link as `tenant` (the admin when nil) to the controller on `port`.
    mutating func link(_ tenant: String?, _ port: Int) -> PeerLink {
        let name = tenant ?? "admin"
        let key = "\(name)@\(port)"
        if let link = links[key] { return link }
        let identity = tenant.map { PeerIdentity(role: .tenant, name: $0) } ?? LocalCluster.admin
        let link = PeerLink(identity: identity, tls: credentials[name]!, port: port, expected: .role(.controller))
        links[key] = link
        return link
    }

    func dropAll() async {
        for link in links.values { await link.drop() }
    }
}
