import AgentCore
import Partitioner
import SeededRandom
import Testing

/// What an LPAR's state should be, computed in the plainest terms, apart from the core.
struct ReferenceModel {
    enum State: Equatable { case defined, activating, running, deactivating, stopped, failed }
    var states: [String: State] = [:]
    var removeWhenStopped: Set<String> = []
    var releasing: Set<String> = []

    mutating func apply(_ input: AgentInput) {
        switch input {
        case .command(_, let command):
            let name = command.lpar
            switch command {
            case .define:
                if states[name] == nil && !releasing.contains(name) { states[name] = .defined }
            case .activate:
                if states[name] == .defined || states[name] == .stopped { states[name] = .activating }
            case .deactivate:
                if states[name] == .running { states[name] = .deactivating }
            case .remove:
                switch states[name] {
                case .defined?, .stopped?, .failed?: gone(name)
                case .running?: states[name] = .deactivating; removeWhenStopped.insert(name)
                case .deactivating?: removeWhenStopped.insert(name)
                default: break
                }
            case .createVM, .deleteVM: break
            case .prepareIncoming, .migrateOut, .cancelMigration: break   // not generated here
            }
        case .driver(let name, let report):
            switch report {
            case .started: if states[name] == .activating { states[name] = .running }
            case .startFailed, .failed:
                let was = states[name]
                if was == .activating || was == .running || was == .deactivating { states[name] = .failed }
                if was == .deactivating && removeWhenStopped.contains(name) { gone(name) }
            case .stopped:
                if states[name] == .deactivating {
                    if removeWhenStopped.contains(name) { gone(name) } else { states[name] = .stopped }
                }
            case .diskReleased, .diskReleaseFailed: releasing.remove(name)
            case .vm, .migration: break
            }
        case .tick, .link: break
        }
    }

    mutating func gone(_ name: String) {
        states[name] = nil
        removeWhenStopped.remove(name)
        releasing.insert(name)
    }
}

@Suite struct AgentCoreRandomizedTests {
    /// A driver in the test: the operations the core asked for, answered in a random order.
    struct PendingOperation { var lpar: String; var kind: Kind; enum Kind { case start, stop, release } }

    @Test(arguments: 1...20 as ClosedRange<UInt64>)
    func randomCommandsAndReportsMatchTheReferenceModel(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var core = try newCore()
        var model = ReferenceModel()
        let names = ["a", "b", "c"]
        var pending: [PendingOperation] = []
        var asked: Set<String> = []
        var answered: [String: Int] = [:]
        var nextID = 0

        func feed(_ input: AgentInput) {
            model.apply(input)
            for directive in core.handle(input) {
                switch directive {
                case .start(let launch): pending.append(.init(lpar: launch.spec.name, kind: .start))
                case .stop(let lpar): pending.append(.init(lpar: lpar, kind: .stop))
                case .releaseDisk(let lpar, _): pending.append(.init(lpar: lpar, kind: .release))
                case .reply(let id, _, _): answered[id, default: 0] += 1
                default: break
                }
            }
        }

        for _ in 0..<400 {
            let roll = Int.random(in: 0..<10, using: &random)
            if roll < 4 || pending.isEmpty {
                let index = Int.random(in: 0..<names.count, using: &random)
                let name = names[index]
                nextID += 1
                let id = "c\(nextID)"
                asked.insert(id)
                let command: BladeCommand
                switch Int.random(in: 0..<4, using: &random) {
                case 0: command = .define(definition(name, index: index))
                case 1: command = .activate(lpar: name)
                case 2: command = .deactivate(lpar: name)
                default: command = .remove(lpar: name)
                }
                feed(.command(id: id, command))
            } else if roll < 9 {
                let operation = pending.remove(at: Int.random(in: 0..<pending.count, using: &random))
                switch operation.kind {
                case .start:
                    feed(.driver(lpar: operation.lpar, Bool.random(using: &random) ? .started : .startFailed(reason: "boot failed")))
                case .stop: feed(.driver(lpar: operation.lpar, .stopped))
                case .release: feed(.driver(lpar: operation.lpar, .diskReleased))
                }
            } else {
                // An LPAR's process dies on its own, whatever it was doing.
                feed(.driver(lpar: names[Int.random(in: 0..<names.count, using: &random)], .failed(reason: "died of signal 9 (SIGKILL)")))
            }
            for name in names {
                let expected = model.states[name].map { "\($0)" }
                #expect(core.state(of: name).map(\.rawValue) == expected, "seed \(seed): \(name)")
            }
        }
        // Once the driver has answered everything, every command has had exactly one answer.
        while !pending.isEmpty {
            let operation = pending.removeFirst()
            switch operation.kind {
            case .start: feed(.driver(lpar: operation.lpar, .started))
            case .stop: feed(.driver(lpar: operation.lpar, .stopped))
            case .release: feed(.driver(lpar: operation.lpar, .diskReleased))
            }
        }
        #expect(Set(answered.keys) == asked, "seed \(seed): unanswered \(asked.subtracting(answered.keys).sorted())")
        #expect(answered.values.allSatisfy { $0 == 1 }, "seed \(seed)")
    }
}
