import Sizes

/// What a drain did with each partition of its blade.
public struct DrainOutcome: Sendable {
    /// Partitions whose live migration started or waits for a slot, with its id.
    public var migrating: [(partition: String, migration: String)] = []
    /// Stopped partitions whose claim moved to another blade (nothing runs to migrate).
    public var moved: [(partition: String, blade: String)] = []
    /// Partitions that were already migrating.
    public var alreadyMigrating: [String] = []
    /// Partitions that stay, with why.
    public var staying: [(partition: String, reason: String)] = []

    public init() {}

    /// "3 migrating (a m4, b m5, c m6); 1 stays: d (no blade fits: ...)".
    public var summary: String {
        var parts: [String] = []
        if !migrating.isEmpty {
            parts.append("\(migrating.count) migrating (\(migrating.map { "\($0.partition) \($0.migration)" }.joined(separator: ", ")))")
        }
        if !moved.isEmpty { parts.append("\(moved.count) stopped, moved (\(moved.map { "\($0.partition) to \($0.blade)" }.joined(separator: ", ")))") }
        if !alreadyMigrating.isEmpty { parts.append("\(alreadyMigrating.count) already migrating (\(alreadyMigrating.joined(separator: ", ")))") }
        if !staying.isEmpty {
            parts.append("\(staying.count) stay\(staying.count == 1 ? "s" : ""): " + staying.map { "\($0.partition) (\($0.reason))" }.joined(separator: "; "))
        }
        return parts.isEmpty ? "nothing to move" : parts.joined(separator: "; ")
    }
}

extension ClusterCommands {
    /// Who a drain's migrations are requested by; uncordoning the blade cancels theirs.
    static func drainRequester(_ blade: String) -> String { "drain of blade \(blade)" }

    /// Cordons the blade, then moves every partition away: a running one by live migration
    /// (within the limits; beyond them it waits as pending), a stopped one by moving its claim.
    /// A partition that cannot be placed stays, and the outcome says why. Draining a blade
    /// whose partitions all migrate already changes nothing.
    public func drain(_ id: String, by caller: Caller, in model: ClusterModel, health: [String: BladeHealth],
                      now: UInt64) throws(ClusterError) -> (ops: [StoreOp], outcome: DrainOutcome) {
        guard caller.isAdmin else { throw .denied("only an admin drains blades") }
        try Self.checkName(id, "blade", field: "blade")
        guard var blade = model.blades[id] else { throw .notFound("blade \(id) is not registered") }
        let running = model.activeMigrations.filter { $0.source == id && $0.requestedBy.hasPrefix(Self.drainRequester(id)) }
        if !running.isEmpty {
            throw .precondition("blade \(id) is draining already (migrations \(running.map(\.id).joined(separator: ", "))); uncordon it to stop the drain")
        }
        var ops: [StoreOp] = []
        var view = model
        if !blade.cordoned {
            blade.cordoned = true
            ops.append(.putBlade(blade))
            view.blades[id] = blade
        }
        var outcome = DrainOutcome()
        for claim in model.claims(on: id) {
            guard let partition = view.partitions[claim.partition] else { continue }
            if view.activeMigration(of: partition.name) != nil {
                outcome.alreadyMigrating.append(partition.name)
                continue
            }
            if partition.desired == .stopped {
                do {
                    var moved = try targetClaim(for: partition, from: id, requested: nil, in: view, health: health, by: caller)
                    moved.reason = "moved off blade \(id) by its drain (stopped): \(moved.reason)"
                    let change: [StoreOp] = [.putClaim(moved), .event(ClusterEvent(
                        timeMillis: now, kind: "partition.moved", subject: partition.name,
                        message: "stopped; its claim moved from \(id) to \(moved.blade) by the drain", tenant: partition.spec.tenant))]
                    view.apply(change, generation: view.generation, lastEventSequence: view.lastEventSequence)
                    ops += change
                    outcome.moved.append((partition.name, moved.blade))
                } catch {
                    outcome.staying.append((partition.name, error.message))
                }
                continue
            }
            do {
                // One transaction holds all the drain's migrations: each is numbered apart.
                let (change, migration) = try migrate(partition.name, to: nil, maxDowntimeMillis: nil, by: caller, in: view,
                                                      health: health, now: now, requestedBy: "\(Self.drainRequester(id)) by \(caller)",
                                                      id: "m\(model.generation + 1)-\(outcome.migrating.count + 1)")
                view.apply(change, generation: view.generation, lastEventSequence: view.lastEventSequence)
                ops += change
                outcome.migrating.append((partition.name, migration.id))
            } catch {
                outcome.staying.append((partition.name, error.message))
            }
        }
        if ops.isEmpty { return ([], outcome) }
        ops.append(.event(ClusterEvent(timeMillis: now, kind: "blade.draining", subject: id, message: "cordoned; \(outcome.summary)")))
        return (ops, outcome)
    }
}
