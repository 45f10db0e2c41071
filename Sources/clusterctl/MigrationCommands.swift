import ArgumentParser
import Foundation
import Protos
import Sizes
import Wire

extension PartitionCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Live-migrate a running partition to another blade.",
            discussion: """
                The partition's guest (with every L2 VM inside it) runs on while its memory is copied \
                to the target in rounds; it is paused only for the last pages and its state. Without \
                --to, placement chooses the target with every hard rule and N+1; a named target that \
                breaks a rule is refused with the reason. At most 2 migrations per blade and 5 in \
                the cluster run at once; more wait as pending.
                """)
        @Argument(help: "Partition name.") var name: String
        @Option(help: "Target blade (admins only; default: placement chooses).") var to: String?
        @Option(help: "Longest pause of the guest at switchover, e.g. 50ms or 1s (default 50ms).") var maxDowntime: String?
        @Flag(help: "Wait until the migration ends, with a progress line on a terminal.") var wait = false
        @Option(help: "With --wait: give up waiting after this long, e.g. 10m (the migration goes on).") var timeout: String = "30m"
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            let downtime = try maxDowntime.map { try parseDuration($0, flag: "max-downtime") }
            let limit = try parseDuration(timeout, flag: "timeout")
            let answer = try await withController(resolved) {
                try await $0.call(MigratePartitionRequest(partition: name, targetBlade: to, maxDowntimeMillis: downtime),
                                  expecting: MigrationResponse.self)
            }
            let migration = answer.migration
            if !wait {
                Output.emit(resolved.json ? Output.json(Render.migration(migration))
                            : "migration \(migration.id): \(name) from \(migration.source) to \(migration.target ?? "a blade to be chosen when a slot is free") (\(Render.phase(migration.phase)))\n")
                return
            }
            let last = try await follow(migration.id, resolved, limitMillis: limit)
            if resolved.json { Output.emit(Output.json(Render.migration(last))) }
            if last.phase != .succeeded { throw RemoteError(message: "migration \(last.id) \(Render.phase(last.phase)): \(last.failure ?? "no reason given")") }
        }
    }
}

/// Follows a migration until it ends: a progress line rewritten in place on a terminal,
/// one line per phase otherwise. Returns the migration as it ended.
func follow(_ id: String, _ resolved: ClientOptions.Resolved, limitMillis: UInt64) async throws -> MigrationInfo {
    let terminal = isatty(STDOUT_FILENO) == 1 && !resolved.json
    let started = ContinuousClock.now
    var lastLine = ""
    return try await withController(resolved) { connection in
        while true {
            let info = try await connection.call(ShowMigrationRequest(migrationID: id), expecting: MigrationResponse.self).migration
            let line = Render.progressLine(info)
            if !resolved.json, line != lastLine {
                Output.emit(terminal ? "\r\u{1B}[K" + line + (Render.isOver(info.phase) ? "\n" : "") : line + "\n")
                lastLine = line
            }
            if Render.isOver(info.phase) { return info }
            if ContinuousClock.now - started > .milliseconds(Int64(limitMillis)) {
                throw RemoteError(message: "migration \(id) is still \(Render.phase(info.phase)) after \(limitMillis / 1000) s; it goes on (clusterctl migration show \(id))")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}

struct MigrationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migration", abstract: "Live migrations of partitions: list, show, cancel.",
        subcommands: [List.self, Show.self, Cancel.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List migrations, newest first (a tenant sees its own).")
        @Option(help: "Only this partition's.") var partition: String?
        @Flag(help: "Only those not over.") var active = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            let answer = try await withController(resolved) {
                try await $0.call(ListMigrationsRequest(partition: partition, activeOnly: active), expecting: MigrationListResponse.self)
            }
            if resolved.json { Output.emit(Output.json(answer.migrations.map(Render.migration))); return }
            Output.emit(Output.table(["ID", "PARTITION", "SOURCE", "TARGET", "PHASE", "ROUND", "SENT", "DOWNTIME"], answer.migrations.map { m in
                [m.id, m.partition, m.source, m.target ?? "-", Render.phase(m.phase), "\(m.round)", ByteSize.approximate(m.sentBytes),
                 m.downtimeMillis.map { "\($0) ms" } ?? "-"]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one migration: its phase, progress and figures.")
        @Argument(help: "Migration id.") var id: String
        @Flag(help: "Follow it until it ends.") var wait = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            if wait {
                let last = try await follow(id, resolved, limitMillis: 30 * 60_000)
                if resolved.json { Output.emit(Output.json(Render.migration(last))) }
                return
            }
            let m = try await withController(resolved) {
                try await $0.call(ShowMigrationRequest(migrationID: id), expecting: MigrationResponse.self)
            }.migration
            if resolved.json { Output.emit(Output.json(Render.migration(m))); return }
            Output.emit(Output.details([
                ("id", m.id), ("partition", m.partition), ("tenant", m.tenant), ("phase", Render.phase(m.phase)),
                ("source", m.source), ("target", m.target ?? "-"), ("requested target", m.requestedTarget ?? "-"),
                ("requested by", m.requestedBy), ("max downtime", "\(m.maxDowntimeMillis) ms"),
                ("memory", ByteSize.format(m.memoryBytes)), ("round", "\(m.round)"), ("sent", ByteSize.approximate(m.sentBytes)),
                ("remaining", ByteSize.approximate(m.remainingBytes)), ("dirty rate", "\(ByteSize.approximate(m.dirtyBytesPerSecond))/s"),
                ("link rate", "\(ByteSize.approximate(m.linkBytesPerSecond))/s"),
                ("downtime", m.downtimeMillis.map { "\($0) ms (source paused until the target had everything)" } ?? "-"),
                ("failure", m.failure ?? "-"),
            ]))
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a migration before its switchover: the target's shell goes, the partition runs on its source.")
        @Argument(help: "Migration id.") var id: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let resolved = try client.resolved()
            let m = try await withController(resolved) {
                try await $0.call(CancelMigrationRequest(migrationID: id), expecting: MigrationResponse.self)
            }.migration
            Output.emit(resolved.json ? Output.json(Render.migration(m)) : "migration \(m.id) cancelled (\(Render.phase(m.phase)))\n")
        }
    }
}

/// "50ms", "2s", "10m" (a bare number is milliseconds) as milliseconds.
func parseDuration(_ text: String, flag: String) throws -> UInt64 {
    let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        let number = text.dropLast(suffix.count)
        if let value = UInt64(number), value <= UInt64.max / scale { return value * scale }
        break
    }
    if let value = UInt64(text) { return value }
    throw InputError(message: "--\(flag) '\(text)' is not a duration like 50ms, 2s or 10m")
}

extension Render {
    static func phase(_ phase: Protos.MigrationPhase) -> String {
        switch phase {
        case .pending: return "pending"
        case .targetPrepared: return "target-prepared"
        case .preCopy: return "pre-copy"
        case .switchover: return "switchover"
        case .resumedOnTarget: return "resumed-on-target"
        case .sourceReleased: return "source-released"
        case .succeeded: return "succeeded"
        case .rollingBack: return "rolling-back"
        case .failed: return "failed"
        }
    }

    static func isOver(_ phase: Protos.MigrationPhase) -> Bool { phase == .succeeded || phase == .failed }

    /// "pre-copy  round 3  remaining 12.0MiB  dirty 4.0MiB/s  link 900.0MiB/s  ETA 1 s"
    static func progressLine(_ m: MigrationInfo) -> String {
        var parts = ["migration \(m.id) \(m.partition) \(m.source) -> \(m.target ?? "?")", phase(m.phase)]
        if m.round > 0 {
            parts.append("round \(m.round)")
            parts.append("remaining \(ByteSize.approximate(m.remainingBytes))")
            parts.append("dirty \(ByteSize.approximate(m.dirtyBytesPerSecond))/s")
            parts.append("link \(ByteSize.approximate(m.linkBytesPerSecond))/s")
            if m.linkBytesPerSecond > 0, !isOver(m.phase) {
                parts.append("ETA \(max(1, m.remainingBytes / m.linkBytesPerSecond)) s")
            }
        }
        if let downtime = m.downtimeMillis { parts.append("downtime \(downtime) ms") }
        if let failure = m.failure { parts.append(failure) }
        return parts.joined(separator: "  ")
    }

    static func migration(_ m: MigrationInfo) -> [String: Any] {
        var object: [String: Any] = [
            "id": m.id, "partition": m.partition, "tenant": m.tenant, "source": m.source, "phase": phase(m.phase),
            "maxDowntimeMillis": m.maxDowntimeMillis, "requestedBy": m.requestedBy, "createdMillis": m.createdMillis,
            "updatedMillis": m.updatedMillis, "round": m.round, "sentBytes": m.sentBytes, "remainingBytes": m.remainingBytes,
            "dirtyBytesPerSecond": m.dirtyBytesPerSecond, "linkBytesPerSecond": m.linkBytesPerSecond, "memoryBytes": m.memoryBytes,
        ]
        if let target = m.target { object["target"] = target }
        if let requested = m.requestedTarget { object["requestedTarget"] = requested }
        if let failure = m.failure { object["failure"] = failure }
        if let downtime = m.downtimeMillis { object["downtimeMillis"] = downtime }
        return object
    }
}
