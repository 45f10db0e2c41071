public import FaultHarness
import Foundation
import SeededRandom

/// One operation the workload will issue: when, by which client, and what.
public struct PlannedOperation: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Creates `name` for `tenant`, in `group` when it names one of the scenario's groups.
        case createPartition(tenant: String, name: String, group: String?)
        case deletePartition(tenant: String, name: String)
        case createVM(tenant: String, partition: String, name: String)
        case deleteVM(tenant: String, partition: String, name: String)
        case cordon(blade: String)
        case uncordon(blade: String)
    }

    /// Milliseconds after the workload starts.
    public var atMillis: UInt64
    /// The client (0-based) that issues it; a client issues its operations one at a time, in order.
    public var client: Int
    public var action: Action

    public init(atMillis: UInt64, client: Int, action: Action) {
        self.atMillis = atMillis
        self.client = client
        self.action = action
    }

    /// The operation as the history records it.
    public var historyAction: HistoryEntry.Action {
        switch action {
        case .createPartition(_, let name, _): .createPartition(name)
        case .deletePartition(_, let name): .deletePartition(name)
        case .createVM(_, let partition, let name): .createVM(partition: partition, name: name)
        case .deleteVM(_, let partition, let name): .deleteVM(partition: partition, name: name)
        case .cordon(let blade): .cordon(blade)
        case .uncordon(let blade): .uncordon(blade)
        }
    }
}

/// The workload of a scenario as a list of operations, drawn from one seed: the same seed and
/// scenario give the same plan, so a run's requests can be told again exactly.
///
/// Operations arrive as a Poisson process at the scenario's total rate (exponential gaps),
/// each drawn by the mix's weights, until the duration ends or `maxOperations` is reached.
/// Creates pick a tenant and, by the groups' shares, a group; deletes and VM operations pick
/// an earlier create of the same tenant (which may have been refused: the request is issued
/// anyway, as a client that does not know would). Clients take operations in turn.
public enum WorkloadPlanner {
    public static func plan(_ scenario: Scenario, seed: UInt64) -> [PlannedOperation] {
        let workload = scenario.workload
        var random = SplitMix64(seed: seed).fork(0x776f_726b)  // "work"
        let weighted = Workload.Operation.allCases.compactMap { operation in
            workload.mix[operation].flatMap { $0 > 0 ? (operation, $0) : nil }
        }
        let totalWeight = weighted.reduce(0) { $0 + $1.1 }
        guard !weighted.isEmpty, workload.ratePerSecond > 0, !scenario.tenants.isEmpty else { return [] }

        var operations: [PlannedOperation] = []
        var created: [String: [String]] = [:]        // tenant -> partitions planned, in order
        var deleted: Set<String> = []
        var vms: [String: [String]] = [:]            // partition -> VMs planned
        var counters: [String: Int] = [:]
        var time = 0.0
        let bladeIDs = scenario.cluster.bladeIDs
        while operations.count < workload.maxOperations {
            // An exponential gap at the total rate: -ln(1 - u) / rate seconds.
            let u = random.unit()
            time += -log1p(-u) / workload.ratePerSecond * 1_000
            guard time < Double(scenario.durationMillis) else { break }
            var pick = random.unit() * totalWeight
            var operation = weighted[weighted.count - 1].0
            for (candidate, weight) in weighted {
                if pick < weight { operation = candidate; break }
                pick -= weight
            }
            let tenant = scenario.tenants[random.below(scenario.tenants.count)].name
            let live = (created[tenant] ?? []).filter { !deleted.contains($0) }
            let action: PlannedOperation.Action
            switch operation {
            case .createPartition:
                counters[tenant, default: 0] += 1
                let name = "\(tenant)-p\(counters[tenant]!)"
                created[tenant, default: []].append(name)
                var share = random.unit()
                var group: String?
                for candidate in workload.groups where candidate.tenant == tenant {
                    if share < candidate.share { group = candidate.name; break }
                    share -= candidate.share
                }
                action = .createPartition(tenant: tenant, name: name, group: group)
            case .deletePartition:
                guard !live.isEmpty else { continue }
                let name = live[random.below(live.count)]
                deleted.insert(name)
                action = .deletePartition(tenant: tenant, name: name)
            case .createVM:
                guard !live.isEmpty else { continue }
                let partition = live[random.below(live.count)]
                let name = "vm\((vms[partition]?.count ?? 0) + 1)"
                vms[partition, default: []].append(name)
                action = .createVM(tenant: tenant, partition: partition, name: name)
            case .deleteVM:
                let withVMs = live.filter { !(vms[$0] ?? []).isEmpty }
                guard !withVMs.isEmpty else { continue }
                let partition = withVMs[random.below(withVMs.count)]
                let names = vms[partition]!
                let name = names[random.below(names.count)]
                vms[partition] = names.filter { $0 != name }
                action = .deleteVM(tenant: tenant, partition: partition, name: name)
            case .cordon:
                action = .cordon(blade: bladeIDs[random.below(bladeIDs.count)])
            case .uncordon:
                action = .uncordon(blade: bladeIDs[random.below(bladeIDs.count)])
            }
            operations.append(PlannedOperation(atMillis: UInt64(time), client: operations.count % workload.clients, action: action))
        }
        return operations
    }
}
