import ClusterCore
import Testing

/// The migration's phases: forward only, a rollback only before the decision, a cancel only
/// before the source is paused, and what a restarted controller does in each phase.
@Suite struct MigrationPhaseTests {
    @Test func theHappyPathGoesForwardOnly() throws {
        var phase = MigrationPhase.pending
        let path: [(MigrationEvent, MigrationPhase)] = [
            (.targetPrepared, .targetPrepared), (.copyStarted, .preCopy), (.roundDone, .preCopy), (.roundDone, .preCopy),
            (.switchoverStarted, .switchover), (.decided, .resumedOnTarget), (.sourceReleased, .sourceReleased), (.completed, .succeeded),
        ]
        for (event, expected) in path {
            phase = try MigrationPhases.next(phase, on: event).get()
            #expect(phase == expected, "\(event)")
        }
        #expect(phase.isFinal && phase.targetOwns)
    }

    @Test(arguments: [MigrationPhase.pending, .targetPrepared, .preCopy, .switchover])
    func aFailureBeforeTheDecisionRollsBack(phase: MigrationPhase) throws {
        #expect(try MigrationPhases.next(phase, on: .failure("link cut")).get() == .rollingBack)
        #expect(try MigrationPhases.next(.rollingBack, on: .rolledBack).get() == .failed)
        #expect(phase.afterRestart == .rollBack)
        #expect(!phase.targetOwns)
    }

    @Test(arguments: [MigrationPhase.resumedOnTarget, .sourceReleased])
    func aFailureAfterTheDecisionStaysAndRollsForward(phase: MigrationPhase) throws {
        #expect(try MigrationPhases.next(phase, on: .failure("source agent gone")).get() == phase)
        #expect(phase.afterRestart == .rollForward)
        #expect(phase.targetOwns)
    }

    @Test func aCancelIsTakenOnlyBeforeTheSourceIsPaused() throws {
        for phase in [MigrationPhase.pending, .targetPrepared, .preCopy] {
            #expect(try MigrationPhases.next(phase, on: .cancel).get() == .rollingBack)
        }
        for phase in [MigrationPhase.switchover, .resumedOnTarget, .sourceReleased] {
            guard case .failure(let error) = MigrationPhases.next(phase, on: .cancel) else { Issue.record("\(phase) took a cancel"); continue }
            #expect(error.description.contains("can no longer be cancelled"))
        }
        guard case .failure(let error) = MigrationPhases.next(.succeeded, on: .cancel) else { Issue.record("took a cancel"); return }
        #expect(error.description == "the migration is succeeded: there is nothing left to cancel")
    }

    @Test func everyOtherPairIsRefusedAndFinalPhasesTakeNothing() {
        let events: [MigrationEvent] = [.targetPrepared, .copyStarted, .roundDone, .switchoverStarted, .decided, .sourceReleased,
                                        .rolledBack, .completed, .failure("x"), .cancel]
        var accepted = 0
        for phase in MigrationPhase.allCases {
            for event in events {
                guard case .success(let next) = MigrationPhases.next(phase, on: event) else { continue }
                accepted += 1
                #expect(!phase.isFinal, "\(phase) took \(event)")
                // Forward only: the next phase is later in the order, the same, or the rollback.
                let order = MigrationPhase.allCases
                #expect(order.firstIndex(of: next)! >= order.firstIndex(of: phase)! || next == .rollingBack, "\(phase) -> \(next)")
            }
        }
        // 8 forward steps, 4 rollbacks on failure, 2 failures kept after the decision, one
        // failure while rolling back, 3 cancels.
        #expect(accepted == 18)
        #expect(MigrationPhase.succeeded.afterRestart == .nothing && MigrationPhase.failed.afterRestart == .nothing)
        #expect(MigrationPhase.rollingBack.afterRestart == .rollBack)
    }
}
