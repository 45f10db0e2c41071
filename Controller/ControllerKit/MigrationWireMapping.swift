import ClusterCore
import Protos

/// Translations of migrations between the protocol's messages and the cluster core's values.
extension WireMapping {
    static func phase(_ phase: ClusterCore.MigrationPhase) -> Protos.MigrationPhase {
        switch phase {
        case .pending: return .pending
        case .targetPrepared: return .targetPrepared
        case .preCopy: return .preCopy
        case .switchover: return .switchover
        case .resumedOnTarget: return .resumedOnTarget
        case .sourceReleased: return .sourceReleased
        case .succeeded: return .succeeded
        case .rollingBack: return .rollingBack
        case .failed: return .failed
        }
    }

    static func migrationInfo(_ migration: Migration, memoryBytes: UInt64) -> MigrationInfo {
        let progress = migration.progress
        return MigrationInfo(
            id: migration.id, partition: migration.partition, tenant: migration.tenant, source: migration.source,
            target: migration.target?.blade, phase: phase(migration.phase), maxDowntimeMillis: migration.maxDowntimeMillis,
            requestedBy: migration.requestedBy, createdMillis: migration.createdMillis, updatedMillis: migration.updatedMillis,
            failure: migration.failure, round: UInt32(clamping: progress.round), sentBytes: progress.sentBytes,
            remainingBytes: progress.remainingBytes, dirtyBytesPerSecond: progress.dirtyBytesPerSecond,
            linkBytesPerSecond: progress.linkBytesPerSecond, downtimeMillis: progress.downtimeMillis, memoryBytes: memoryBytes,
            requestedTarget: migration.requestedTarget)
    }

    static func migrationReport(_ wire: LPARMigration) -> LPARMigrationReport {
        let role: LPARMigrationReport.Role = wire.role == .source ? .source : .target
        let stage: LPARMigrationReport.Stage
        switch wire.stage {
        case .copying: stage = .copying
        case .switchover: stage = .switchover
        case .handedOver: stage = .handedOver
        case .incoming: stage = .incoming
        case .receiving: stage = .receiving
        case .ready: stage = .ready
        case .failed: stage = .failed
        }
        return LPARMigrationReport(
            id: wire.migrationID, role: role, stage: stage, failureReason: wire.failureReason,
            progress: MigrationProgress(round: Int(wire.round), sentBytes: wire.sentBytes, remainingBytes: wire.remainingBytes,
                                        dirtyBytesPerSecond: wire.dirtyBytesPerSecond, linkBytesPerSecond: wire.linkBytesPerSecond,
                                        downtimeMillis: wire.downtimeMillis))
    }
}
