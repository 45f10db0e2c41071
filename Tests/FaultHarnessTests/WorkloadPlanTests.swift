import FaultHarness
import FaultScenario
import Foundation
import Testing

/// The workload plan: drawn from the seed alone, bounded by the duration and the count, at
/// the scenario's rate, and made of operations a client could send.
struct WorkloadPlanTests {
    static func scenario(_ edit: (String) -> String = { $0 }) throws -> Scenario {
        try ScenarioFile.parse(edit("""
        name: plan
        duration: 20s
        cluster:
          blades: 4
          cores: 8
          memory: 8GiB
          chassis: 4
        tenants:
          - name: acme
            cores: 16
            memory: 16GiB
            partitions: 16
          - name: globex
            cores: 8
            memory: 8GiB
            partitions: 8
        workload:
          clients: 3
          rate: 20
          max-operations: 1000
          mix:
            create-partition: 5
            delete-partition: 3
            create-vm: 1
            delete-vm: 1
            cordon: 0.5
            uncordon: 0.5
          partition:
            cores: 2
            memory: 1GiB
            vmm: true
          groups:
            - name: web
              tenant: acme
              level: chassis
              mode: hard
              replicas: 3
              share: 0.5
        """), file: "plan.yaml")
    }

    @Test func theSameSeedGivesTheSamePlanAndAnotherSeedAnother() throws {
        let scenario = try Self.scenario()
        let first = WorkloadPlanner.plan(scenario, seed: 7)
        #expect(first == WorkloadPlanner.plan(scenario, seed: 7))
        #expect(first != WorkloadPlanner.plan(scenario, seed: 8))
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func thePlanKeepsTheRateTheDurationAndTheClients(seed: UInt64) throws {
        let scenario = try Self.scenario()
        let plan = WorkloadPlanner.plan(scenario, seed: seed)
        // 20/s for 20 s: 400 expected; a Poisson count stays well within +-25 %.
        #expect((300...500).contains(plan.count), "\(plan.count) operations")
        #expect(plan.allSatisfy { $0.atMillis < scenario.durationMillis })
        #expect(zip(plan, plan.dropFirst()).allSatisfy { $0.atMillis <= $1.atMillis })
        #expect(Set(plan.map(\.client)) == [0, 1, 2])
    }

    @Test func theCountBoundsThePlan() throws {
        let scenario = try Self.scenario { $0.replacingOccurrences(of: "max-operations: 1000", with: "max-operations: 25") }
        #expect(WorkloadPlanner.plan(scenario, seed: 1).count == 25)
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func deletesAndVMsReferToEarlierCreatesOfTheSameTenant(seed: UInt64) throws {
        let plan = WorkloadPlanner.plan(try Self.scenario(), seed: seed)
        var created: [String: String] = [:]   // partition -> tenant
        var grouped = 0, creates = 0
        for operation in plan {
            switch operation.action {
            case .createPartition(let tenant, let name, let group):
                #expect(created[name] == nil, "\(name) is created once")
                created[name] = tenant
                creates += 1
                if group != nil {
                    #expect(tenant == "acme" && group == "web")
                    grouped += 1
                }
            case .deletePartition(let tenant, let name), .createVM(let tenant, let name, _), .deleteVM(let tenant, let name, _):
                #expect(created[name] == tenant, "\(operation.action) names a partition \(tenant) created before")
            case .cordon(let blade), .uncordon(let blade):
                #expect(["blade-1", "blade-2", "blade-3", "blade-4"].contains(blade))
            }
        }
        #expect(grouped > 0 && grouped < creates)
    }

    @Test func aMixWithVMsNeedsVMMPartitions() throws {
        #expect(throws: ScenarioError.self) {
            try Self.scenario { $0.replacingOccurrences(of: "    vmm: true\n", with: "") }
        }
        #expect(throws: ScenarioError.self) {
            try Self.scenario { $0.replacingOccurrences(of: "    cores: 2\n    memory: 1GiB", with: "    cores: 1\n    memory: 1GiB") }
        }
    }
}
