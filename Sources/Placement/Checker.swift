/// Finds broken hard rules in a set of placements, independently of the engine's own counts:
/// over-committed blades, hard anti-affinity beyond its maximum, shared exclusive blades, and
/// N+1 at the policy's level (each domain's cores and memory, in aggregate, on the ready
/// blades outside it).
public enum PlacementChecker {
    public static func violations(blades: [BladeSnapshot], placements: [Placement], policy: PlacementPolicy) -> [String] {
        var found: [String] = []
        let byID = Dictionary(uniqueKeysWithValues: blades.map { ($0.id, $0) })
        var cores: [String: Int] = [:]
        var memory: [String: UInt64] = [:]
        var tenantsOn: [String: Set<String>] = [:]
        var groups: [String: Int] = [:]
        for placement in placements {
            guard let blade = byID[placement.blade] else {
                found.append("\(placement.request.name) is on unknown blade \(placement.blade)")
                continue
            }
            cores[blade.id, default: 0] += policy.coreDemand(placement.request)
            memory[blade.id] = (memory[blade.id] ?? 0).clampedPlus(policy.memoryDemand(placement.request))
            tenantsOn[blade.id, default: []].insert(placement.request.tenant)
            if let rule = placement.request.antiAffinity, rule.hard {
                let key = "\(rule.group)|\(rule.level.rawValue)|\(blade.domain(rule.level))"
                groups[key, default: 0] += 1
                if groups[key]! == rule.maxPerDomain + 1 {
                    found.append("group \(rule.group): more than \(rule.maxPerDomain) in \(rule.level.rawValue) \(blade.domain(rule.level))")
                }
            }
        }
        for blade in blades {
            if (cores[blade.id] ?? 0) > blade.cores { found.append("\(blade.id): \(cores[blade.id]!) cores placed on \(blade.cores)") }
            if (memory[blade.id] ?? 0) > blade.memoryBytes { found.append("\(blade.id): memory over-committed") }
        }
        for placement in placements where placement.request.isolation == .exclusiveBlade {
            if (tenantsOn[placement.blade]?.count ?? 0) > 1 { found.append("\(placement.blade): shared despite exclusive \(placement.request.name)") }
        }
        if let level = policy.admissionLevel {
            var demandCores: [String: Int] = [:]
            var demandMemory: [String: UInt64] = [:]
            var freeCores: [String: Int] = [:]
            var freeMemory: [String: UInt64] = [:]
            for blade in blades {
                let domain = blade.domain(level)
                demandCores[domain, default: 0] += cores[blade.id] ?? 0
                demandMemory[domain, default: 0] = (demandMemory[domain] ?? 0).clampedPlus(memory[blade.id] ?? 0)
                if blade.condition == .ready {
                    freeCores[domain, default: 0] += blade.cores - (cores[blade.id] ?? 0)
                    freeMemory[domain] = (freeMemory[domain] ?? 0).clampedPlus(blade.memoryBytes.clampedMinus(memory[blade.id] ?? 0))
                }
            }
            let totalCores = freeCores.values.reduce(0, +)
            let totalMemory = freeMemory.values.reduce(UInt64(0)) { $0.clampedPlus($1) }
            for (domain, demand) in demandCores.sorted(by: { $0.key < $1.key }) {
                if demand > totalCores - (freeCores[domain] ?? 0) || demandMemory[domain]! > totalMemory - (freeMemory[domain] ?? 0) {
                    found.append("N+1 at \(level.rawValue) level: \(domain) does not fit on the others")
                }
            }
        }
        return found
    }
}
