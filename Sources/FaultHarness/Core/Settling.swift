extension InvariantChecker {
    /// What keeps the cluster from the state the store wants, in a few words each (empty when
    /// it has settled): an LPAR on a blade where its partition holds no claim, and a claimed
    /// partition that should run and does not run on its blade (one the harness crashed may
    /// lie failed there). Both modes wait for this to be empty once every fault has healed.
    public static func unsettled(_ observation: Observation, crashed: Set<String>) -> [String] {
        var waiting: [String] = []
        var claimed: [String: String] = [:]
        for partition in observation.partitions {
            if let blade = partition.claim?.blade { claimed[partition.name] = blade }
        }
        for blade in observation.blades {
            for lpar in blade.lpars {
                let partition = lpar.partition ?? lpar.name
                if claimed[partition] != blade.id {
                    waiting.append("\(blade.id) still holds \(partition) (\(lpar.state.rawValue)), claimed \(claimed[partition].map { "on \($0)" } ?? "nowhere")")
                }
            }
        }
        for partition in observation.partitions where partition.shouldRun {
            guard let bladeID = partition.claim?.blade else { continue }
            let lpar = observation.blades.first { $0.id == bladeID }?.lpars.first { ($0.partition ?? $0.name) == partition.name }
            switch lpar?.state {
            case .running?: break
            case .failed? where crashed.contains(partition.name): break
            default: waiting.append("\(partition.name) is \(lpar?.state.rawValue ?? "absent") on \(bladeID), should run")
            }
        }
        return waiting
    }
}
