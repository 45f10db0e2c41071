public import FaultHarness
import SeededRandom

/// One thing the nemesis does at one time: inject a fault or heal it.
public struct NemesisStep: Sendable, Equatable, CustomStringConvertible {
    public enum Action: Sendable, Equatable {
        case kill(ProcessTarget)
        case restart(ProcessTarget)
        case pause(ProcessTarget)
        case resume(ProcessTarget)
        case link(LinkTarget, LinkFaults)
        case healLink(LinkTarget)
        case fillDisk
        case freeDisk
        case readOnly
        case readWrite
        /// SIGKILL the `lpar-host` of one running LPAR; `pick` chooses which (modulo the
        /// number running), so that the seed decides and a replay picks the same one.
        case crashLPAR(pick: UInt64)
        case startSecondController
        case killSecondController
    }

    public var atMillis: UInt64
    public var action: Action

    public init(atMillis: UInt64, action: Action) {
        self.atMillis = atMillis
        self.action = action
    }

    /// Whether the step injects a fault (as opposed to healing one).
    public var injects: Bool {
        switch action {
        case .kill, .pause, .link, .fillDisk, .readOnly, .crashLPAR, .startSecondController: true
        case .restart, .resume, .healLink, .freeDisk, .readWrite, .killSecondController: false
        }
    }

    public var description: String {
        let at = FaultEvent.seconds(atMillis)
        switch action {
        case .kill(let target): return "\(at): kill -9 \(target)"
        case .restart(let target): return "\(at): restart \(target)"
        case .pause(let target): return "\(at): SIGSTOP \(target)"
        case .resume(let target): return "\(at): SIGCONT \(target)"
        case .link(let target, let faults): return "\(at): \(target) \(faults)"
        case .healLink(let target): return "\(at): \(target) healed"
        case .fillDisk: return "\(at): the store's disk filled"
        case .freeDisk: return "\(at): the store's disk freed"
        case .readOnly: return "\(at): the store's disk read-only"
        case .readWrite: return "\(at): the store's disk writable again"
        case .crashLPAR(let pick): return "\(at): kill -9 an lpar-host (pick \(pick))"
        case .startSecondController: return "\(at): a second controller started on the same store"
        case .killSecondController: return "\(at): kill -9 the second controller"
        }
    }
}

/// The scenario's faults as timed steps: each fault injected at its time and healed after its
/// duration, or at the end of the run at the latest, so that everything has healed when the
/// run ends. A crash loop kills an `lpar-host` every period until the end. Which LPAR a step
/// hits is drawn from the seed.
public enum NemesisPlanner {
    public static func plan(_ scenario: Scenario, seed: UInt64) -> [NemesisStep] {
        var random = SplitMix64(seed: seed).fork(0x6e65_6d65)  // "neme"
        let end = scenario.durationMillis
        var steps: [NemesisStep] = []
        for fault in scenario.faults.sorted(by: { $0.atMillis < $1.atMillis }) {
            let start = fault.atMillis
            let stop = min(start + fault.durationMillis, end)
            switch fault.kind {
            case .kill(.lparHost):
                steps.append(NemesisStep(atMillis: start, action: .crashLPAR(pick: random.next())))
            case .kill(let target):
                steps += [NemesisStep(atMillis: start, action: .kill(target)), NemesisStep(atMillis: stop, action: .restart(target))]
            case .pause(let target):
                steps += [NemesisStep(atMillis: start, action: .pause(target)), NemesisStep(atMillis: stop, action: .resume(target))]
            case .link(let target, let faults):
                steps += [NemesisStep(atMillis: start, action: .link(target, faults)), NemesisStep(atMillis: stop, action: .healLink(target))]
            case .diskFull:
                steps += [NemesisStep(atMillis: start, action: .fillDisk), NemesisStep(atMillis: stop, action: .freeDisk)]
            case .diskReadOnly:
                steps += [NemesisStep(atMillis: start, action: .readOnly), NemesisStep(atMillis: stop, action: .readWrite)]
            case .secondController:
                steps += [NemesisStep(atMillis: start, action: .startSecondController), NemesisStep(atMillis: stop, action: .killSecondController)]
            case .crashLoop:
                var time = start
                while time < end {
                    steps.append(NemesisStep(atMillis: time, action: .crashLPAR(pick: random.next())))
                    time += max(fault.durationMillis, 1)
                }
            }
        }
        // Stable by time; a heal and an injection at the same instant keep the file's order.
        return steps.enumerated().sorted { ($0.element.atMillis, $0.offset) < ($1.element.atMillis, $1.offset) }.map(\.element)
    }
}
