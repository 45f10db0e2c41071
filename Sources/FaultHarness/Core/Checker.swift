/// One broken invariant, described so that a person can find it again.
public struct Violation: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case activeTwice = "active-twice"
        case coreShared = "core-shared"
        case memoryOverlap = "memory-overlap"
        case overCommitted = "over-committed"
        case antiAffinity = "anti-affinity"
        case tenantIsolation = "tenant-isolation"
        case lostAcknowledged = "lost-acknowledged"
        case refusedChangedState = "refused-changed-state"
        /// An LPAR failed that no fault was injected into: a fault spread beyond its target.
        case faultSpread = "fault-spread"
        /// The cluster did not reach its desired state in time after every fault healed.
        case notSettled = "not-settled"
    }

    public var kind: Kind
    public var timeMillis: UInt64
    public var detail: String

    public init(_ kind: Kind, at timeMillis: UInt64, _ detail: String) {
        self.kind = kind
        self.timeMillis = timeMillis
        self.detail = detail
    }

    public var description: String { "\(kind.rawValue) at \(timeMillis) ms: \(detail)" }
}

/// The invariants of DESIGN.md recomputed from what was observed, independently of the code
/// under test: from the agents' actual LPARs, the store's partitions and the clients' history.
public enum InvariantChecker {
    /// The invariants that must hold at every instant (1, 2, 3, 5): checked on every sample.
    /// `crashed` names the partitions whose LPAR the harness itself made fail; any other
    /// failed LPAR is a fault that spread (invariant 5).
    public static func check(_ observation: Observation, crashed: Set<String> = []) -> [Violation] {
        let time = observation.timeMillis
        var violations: [Violation] = []

        // 1. A partition is active on at most one blade.
        var activeOn: [String: [String]] = [:]
        for blade in observation.blades {
            for lpar in blade.lpars where isActive(lpar) {
                if let partition = lpar.partition { activeOn[partition, default: []].append(blade.id) }
            }
        }
        for (partition, blades) in activeOn.sorted(by: { $0.key < $1.key }) where blades.count > 1 {
            violations.append(Violation(.activeTwice, at: time, "partition \(partition) is active on \(blades.sorted().joined(separator: " and "))"))
        }

        // 2. No core in two LPARs, no memory in two, nothing beyond the blade.
        for blade in observation.blades {
            let holding = blade.lpars.filter(\.holdsResources).sorted { $0.name < $1.name }
            var owner: [Int: String] = [:]
            for lpar in holding {
                for core in lpar.cores {
                    if core < 0 || core >= blade.cores {
                        violations.append(Violation(.overCommitted, at: time, "LPAR \(lpar.name) on \(blade.id) holds core \(core) of \(blade.cores)"))
                    } else if let other = owner[core] {
                        violations.append(Violation(.coreShared, at: time, "core \(core) of \(blade.id) is in LPARs \(other) and \(lpar.name)"))
                    } else {
                        owner[core] = lpar.name
                    }
                }
            }
            let byStart = holding.sorted { ($0.memoryStart, $0.name) < ($1.memoryStart, $1.name) }
            for (index, lpar) in byStart.enumerated() {
                let (end, overflow) = lpar.memoryStart.addingReportingOverflow(lpar.memoryBytes)
                if overflow || end > blade.memoryBytes {
                    violations.append(Violation(.overCommitted, at: time,
                                                "LPAR \(lpar.name) on \(blade.id) ends past the blade's \(blade.memoryBytes) bytes of memory"))
                }
                for later in byStart[(index + 1)...] where later.memoryStart < end && later.memoryBytes > 0 && lpar.memoryBytes > 0 {
                    violations.append(Violation(.memoryOverlap, at: time, "LPARs \(lpar.name) and \(later.name) on \(blade.id) share memory at \(later.memoryStart)"))
                }
            }
            let cores = holding.reduce(0) { $0 + $1.cores.count }
            let memory = holding.reduce(UInt64(0)) { $0.addingReportingOverflow($1.memoryBytes).partialValue }
            if cores > blade.cores || memory > blade.memoryBytes {
                violations.append(Violation(.overCommitted, at: time,
                                            "\(blade.id) holds \(cores) of \(blade.cores) cores and \(memory) of \(blade.memoryBytes) bytes"))
            }
        }

        // 3. Hard anti-affinity and tenant isolation on the actual placements.
        let stored = Dictionary(observation.partitions.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var perDomain: [String: [String: Set<String>]] = [:]  // group -> domain -> partitions
        for blade in observation.blades {
            for lpar in blade.lpars where isActive(lpar) {
                guard let name = lpar.partition, let spread = stored[name]?.spread, spread.hard,
                      let domain = blade.domain(at: spread.level) else { continue }
                perDomain[spread.group, default: [:]][domain, default: []].insert(name)
            }
        }
        for (group, domains) in perDomain.sorted(by: { $0.key < $1.key }) {
            for (domain, names) in domains.sorted(by: { $0.key < $1.key }) {
                guard let first = names.min(), let spread = stored[first]?.spread, names.count > spread.maxPerDomain else { continue }
                violations.append(Violation(.antiAffinity, at: time,
                                            "hard group \(group) has \(names.count) partitions in \(spread.level) \(domain) (at most \(spread.maxPerDomain)): \(names.sorted().joined(separator: ", "))"))
            }
        }
        for blade in observation.blades {
            let holding = blade.lpars.filter(\.holdsResources)
            for lpar in holding {
                guard let name = lpar.partition, let partition = stored[name], partition.exclusiveBlade else { continue }
                let others = holding.compactMap { other in other.tenant.flatMap { $0 != partition.tenant ? "\(other.name) of \($0)" : nil } }
                if !others.isEmpty {
                    violations.append(Violation(.tenantIsolation, at: time,
                                                "\(blade.id) is exclusive to \(partition.tenant) (partition \(name)) but holds \(others.sorted().joined(separator: ", "))"))
                }
            }
        }

        violations += checkClaims(observation)

        // 5. A fault harms nothing outside its target.
        for blade in observation.blades {
            for lpar in blade.lpars where lpar.state == .failed && !crashed.contains(lpar.partition ?? lpar.name) {
                violations.append(Violation(.faultSpread, at: time,
                                            "LPAR \(lpar.name) on \(blade.id) failed, and no fault was injected into it"))
            }
        }
        return violations
    }

    /// Invariants 2 and 3 on the store's decisions, before any agent acts on them: no core
    /// or memory of a blade in two claims, no core beyond the blade, and no hard group with
    /// more members in a domain than its rule allows.
    static func checkClaims(_ observation: Observation) -> [Violation] {
        let time = observation.timeMillis
        var violations: [Violation] = []
        let blades = Dictionary(observation.blades.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let claimed = observation.partitions.filter { $0.claim != nil }.sorted { $0.name < $1.name }
        for (bladeID, partitions) in Dictionary(grouping: claimed, by: { $0.claim!.blade }).sorted(by: { $0.key < $1.key }) {
            var owner: [Int: String] = [:]
            for partition in partitions {
                for core in partition.claim!.cores {
                    if let blade = blades[bladeID], core < 0 || core >= blade.cores {
                        violations.append(Violation(.overCommitted, at: time, "the store's claim of \(partition.name) on \(bladeID) holds core \(core) of \(blade.cores)"))
                    } else if let other = owner[core] {
                        violations.append(Violation(.coreShared, at: time, "core \(core) of \(bladeID) is in the store's claims of \(other) and \(partition.name)"))
                    } else {
                        owner[core] = partition.name
                    }
                }
            }
            let byBase = partitions.sorted { ($0.claim!.memoryBase, $0.name) < ($1.claim!.memoryBase, $1.name) }
            for (index, partition) in byBase.enumerated() {
                let claim = partition.claim!
                let end = claim.memoryBase.addingReportingOverflow(claim.memoryBytes).partialValue
                for later in byBase[(index + 1)...] where later.claim!.memoryBase < end && later.claim!.memoryBytes > 0 && claim.memoryBytes > 0 {
                    violations.append(Violation(.memoryOverlap, at: time,
                                                "the store's claims of \(partition.name) and \(later.name) on \(bladeID) share memory at \(later.claim!.memoryBase)"))
                }
            }
        }
        var perDomain: [String: [String: Set<String>]] = [:]  // group -> domain -> partitions
        for partition in claimed {
            guard let spread = partition.spread, spread.hard, let domain = blades[partition.claim!.blade]?.domain(at: spread.level) else { continue }
            perDomain[spread.group, default: [:]][domain, default: []].insert(partition.name)
        }
        let byName = Dictionary(claimed.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for (group, domains) in perDomain.sorted(by: { $0.key < $1.key }) {
            for (domain, names) in domains.sorted(by: { $0.key < $1.key }) {
                guard let first = names.min(), let spread = byName[first]?.spread, names.count > spread.maxPerDomain else { continue }
                violations.append(Violation(.antiAffinity, at: time,
                                            "the store's claims put \(names.count) partitions of hard group \(group) in \(spread.level) \(domain) (at most \(spread.maxPerDomain)): \(names.sorted().joined(separator: ", "))"))
            }
        }
        return violations
    }

    /// What must hold once every fault has healed, besides everything `check` finds: every
    /// acknowledged create is there and runs on one blade (or, when the harness crashed its
    /// LPAR, is there failed on one blade), every acknowledged delete is gone, and a name that
    /// only ever got refusals does not exist. Operations on one name that overlap in time, or
    /// whose outcome is unknown, leave either result allowed.
    public static func checkFinal(_ observation: Observation, history: [HistoryEntry], crashed: Set<String> = []) -> [Violation] {
        let time = observation.timeMillis
        let stored = Set(observation.partitions.map(\.name))
        var running: [String: Int] = [:]
        var failed: [String: Int] = [:]
        for blade in observation.blades {
            for lpar in blade.lpars {
                guard let partition = lpar.partition else { continue }
                if isActive(lpar) { running[partition, default: 0] += 1 }
                if lpar.state == .failed && crashed.contains(partition) { failed[partition, default: 0] += 1 }
            }
        }
        var violations = check(observation, crashed: crashed)
        let byName = Dictionary(grouping: history.filter { $0.partition != nil }, by: { $0.partition! })
        for (name, entries) in byName.sorted(by: { $0.key < $1.key }) {
            let present = stored.contains(name) || running[name, default: 0] > 0
            switch expectedFinalState(entries) {
            case .present?:
                if !stored.contains(name) {
                    violations.append(Violation(.lostAcknowledged, at: time, "partition \(name) was acknowledged as created and is not in the store"))
                } else if running[name, default: 0] == 0 && failed[name, default: 0] == 1 {
                    break   // the harness crashed its LPAR: it is there, failed, as the fault left it
                } else if running[name, default: 0] != 1 {
                    violations.append(Violation(.lostAcknowledged, at: time,
                                                "partition \(name) was acknowledged as created and is active on \(running[name, default: 0]) blades"))
                }
            case .absent?:
                guard present else { break }
                if entries.contains(where: { $0.outcome == .ok }) {
                    violations.append(Violation(.lostAcknowledged, at: time, "partition \(name) was acknowledged as deleted and is still there"))
                } else {
                    violations.append(Violation(.refusedChangedState, at: time, "partition \(name) exists though every request for it was refused or failed"))
                }
            case nil:
                break
            }
        }
        return violations
    }

    enum FinalState: Hashable { case present, absent }

    /// The one final state a name's history allows, or nil when more than one is possible.
    static func expectedFinalState(_ entries: [HistoryEntry]) -> FinalState? {
        let ordered = entries.sorted { ($0.invokedMillis, $0.completedMillis) < ($1.invokedMillis, $1.completedMillis) }
        var possible: Set<FinalState> = [.absent]
        var latestCompletion: UInt64 = 0
        for (index, entry) in ordered.enumerated() {
            let overlaps = index > 0 && entry.invokedMillis <= latestCompletion
            latestCompletion = max(latestCompletion, entry.completedMillis)
            let effect: FinalState
            switch entry.action {
            case .createPartition: effect = .present
            case .deletePartition: effect = .absent
            case .createVM, .deleteVM, .cordon, .uncordon: continue
            }
            switch entry.outcome {
            case .ok: possible = overlaps ? possible.union([effect]) : [effect]
            case .unknown: possible.insert(effect)
            case .refused, .failed: break
            }
        }
        return possible.count == 1 ? possible.first : nil
    }

    /// Running, starting, or a migration's source that has not handed over: the partition's
    /// guest may execute there. A target's shell runs nothing until it is activated, and a
    /// source that handed over stays paused until it is removed.
    static func isActive(_ lpar: ObservedLPAR) -> Bool {
        switch lpar.state {
        case .running, .activating: return true
        case .migrating: return !(lpar.migration?.target ?? false) && !(lpar.migration?.handedOver ?? false)
        default: return false
        }
    }
}
