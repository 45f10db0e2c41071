import ClusterCore
import Protos
import Wire

/// The migration requests of the controller's API.
extension Controller {
    func migratePartition(_ request: MigratePartitionRequest, by caller: Caller) throws(WireFailure) -> MigrationResponse {
        let now = wallClock
        let health = self.health
        let migration = try perform { model throws(ClusterError) in
            let decision = try commands.migrate(request.partition, to: request.targetBlade, maxDowntimeMillis: request.maxDowntimeMillis,
                                                by: caller, in: model, health: health, now: now)
            return (decision.ops, decision.migration)
        }
        return response(model.migrations[migration.id] ?? migration)
    }

    func listMigrations(_ request: ListMigrationsRequest, by caller: Caller) throws(WireFailure) -> MigrationListResponse {
        do {
            let migrations = try commands.visibleMigrations(to: caller, in: model, partition: request.partition,
                                                            activeOnly: request.activeOnly ?? false)
            return MigrationListResponse(migrations: migrations.prefix(1000).map(info))
        } catch {
            throw WireMapping.failure(error)
        }
    }

    func showMigration(_ request: ShowMigrationRequest, by caller: Caller) throws(WireFailure) -> MigrationResponse {
        do { return response(try commands.visibleMigration(request.migrationID, to: caller, in: model)) }
        catch { throw WireMapping.failure(error) }
    }

    func cancelMigration(_ request: CancelMigrationRequest, by caller: Caller) throws(WireFailure) -> MigrationResponse {
        let now = wallClock
        try perform { model throws(ClusterError) in
            (try commands.cancelMigration(request.migrationID, by: caller, in: model, now: now), ())
        }
        guard let migration = model.migrations[request.migrationID] else {
            throw WireFailure(.notFound, "migration \(request.migrationID) does not exist")
        }
        return response(migration)
    }

    private func info(_ migration: Migration) -> MigrationInfo {
        WireMapping.migrationInfo(migration, memoryBytes: model.partitions[migration.partition]?.spec.memoryBytes ?? migration.target?.memoryBytes ?? 0)
    }

    private func response(_ migration: Migration) -> MigrationResponse {
        MigrationResponse(migrationID: migration.id, migration: info(migration))
    }
}
