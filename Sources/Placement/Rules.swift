/// What the placement rules read about the blades: the cluster as it is, or as a loss plan
/// would leave it (a domain lost, its partitions moved onto the others). One set of rules
/// reads either, so that a decision, the N+1 check and (later) recovery obey the same rules.
protocol Occupancy {
    var blades: [BladeSnapshot] { get }
    var policy: PlacementPolicy { get }
    /// The blade's condition; a blade of a lost domain is `unreachable`.
    func condition(_ position: Int) -> BladeCondition
    func freeCores(_ position: Int) -> Int
    func freeMemory(_ position: Int) -> UInt64
    func freeDisk(_ position: Int) -> UInt64
    /// The tenant that holds the blade exclusively, if any.
    func exclusiveHolder(_ position: Int) -> String?
    /// Whether a partition of a tenant other than `tenant` is on the blade.
    func hasTenant(otherThan tenant: String, _ position: Int) -> Bool
    /// Members of hard or soft group `group` in `domain` at `level`.
    func members(_ group: String, _ level: DomainLevel, _ domain: String) -> Int
}

/// The placement rules (Kubernetes-style filters), each a reason a blade cannot take a
/// request; the first that applies is the one counted.
enum PlacementRules {
    static func rejection<O: Occupancy>(_ request: PlacementRequest, at position: Int, in occupancy: O) -> RejectionReason? {
        let blade = occupancy.blades[position]
        let condition = occupancy.condition(position)
        if condition != .ready { return .condition(condition) }
        if request.vmm && !blade.nestedCapable { return .notNestedCapable }
        // Shared partitions' logical CPUs time-share the pool, never more of them than cores.
        if occupancy.freeCores(position) < occupancy.policy.coreDemand(request) { return .tooFewCores }
        if case .shared = request.cpuMode, request.cores > blade.cores { return .tooFewCores }
        if occupancy.freeMemory(position) < occupancy.policy.memoryDemand(request) { return .tooLittleMemory }
        if occupancy.freeDisk(position) < request.diskBytes { return .tooLittleDisk }
        if let holder = occupancy.exclusiveHolder(position), holder != request.tenant { return .isolation }
        if request.isolation == .exclusiveBlade, occupancy.hasTenant(otherThan: request.tenant, position) { return .isolation }
        if let rule = request.antiAffinity, rule.hard, !occupancy.policy.testSkipsHardAntiAffinity,
           occupancy.members(rule.group, rule.level, blade.domain(rule.level)) >= rule.maxPerDomain {
            return .antiAffinity(level: rule.level, group: rule.group)
        }
        return nil
    }
}
