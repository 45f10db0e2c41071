import ClusterCore

/// The controller's durable store in the simulation: the model as committed, a generation,
/// and the compare-and-swap every commit makes (unless the test switch `no-store-cas` removes
/// it: then a commit computed from an older read is written over whatever is there, as the
/// SQLite store does under that switch). It outlives the controllers that use it.
struct SimStore {
    private(set) var model = ClusterModel()
    let comparesGeneration: Bool

    init(comparesGeneration: Bool) { self.comparesGeneration = comparesGeneration }

    enum CommitResult: Equatable {
        case written(generation: UInt64, lastEventSequence: UInt64)
        case conflict(found: UInt64)
    }

    mutating func commit(_ ops: [StoreOp], expectedGeneration: UInt64) -> CommitResult {
        if comparesGeneration && model.generation != expectedGeneration { return .conflict(found: model.generation) }
        let events = ops.reduce(UInt64(0)) { count, op in if case .event = op { count + 1 } else { count } }
        let generation = model.generation + 1
        let sequence = model.lastEventSequence + events
        model.apply(ops, generation: generation, lastEventSequence: sequence)
        return .written(generation: generation, lastEventSequence: sequence)
    }
}
