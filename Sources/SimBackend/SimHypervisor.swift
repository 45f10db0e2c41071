public import Partitioner

/// The simulated backend: every LPAR it creates runs a guest hypervisor model with one L2
/// VM and workload, in deterministic virtual time.
public struct SimHypervisor: Hypervisor {
    public let costs: PlatformCostModel
    public let workload: any WorkloadModel
    public let seed: UInt64

    public init(costs: PlatformCostModel, workload: any WorkloadModel, seed: UInt64) {
        self.costs = costs
        self.workload = workload
        self.seed = seed
    }

    public var capabilities: HypervisorCapabilities {
        HypervisorCapabilities(kind: .sim, nestedVMX: true, vmcsShadowing: true, maxVCPUsPerLPAR: 64,
                               summary: "simulated \(costs.name): \(costs.summary)")
    }

    public func createVM(_ spec: LPARSpec) throws(BackendError) -> any VirtualMachine {
        try SimLPAR(spec: spec, costs: costs, workload: workload, seed: seed)
    }
}
