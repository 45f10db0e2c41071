public import ClusterCore
import Foundation
import GRDB

/// Why the store failed: what was being done, and the cause.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another writer committed since the model was read (compare-and-swap failed).
    case conflict(expected: UInt64, found: UInt64)
    case open(path: String, reason: String)
    case database(operation: String, reason: String)
    case corrupt(String)
    /// Another process holds the data directory.
    case locked(directory: String, holder: String)

    public var description: String {
        switch self {
        case .conflict(let expected, let found):
            return "the cluster state changed underneath (generation \(found), expected \(expected)); retry"
        case .open(let path, let reason): return "cannot open the store \(path): \(reason)"
        case .database(let operation, let reason): return "store \(operation) failed: \(reason)"
        case .corrupt(let what): return "the store holds a bad record: \(what)"
        case .locked(let directory, let holder):
            return "the data directory \(directory) is in use by another controller (pid \(holder)); one data directory serves one controller"
        }
    }
}

/// The controller's durable state in one SQLite file (WAL mode) under a data directory.
///
/// Every change is a list of `StoreOp`s written in one transaction, accepted only if the
/// store's generation still equals the one the change was computed from; the generation is
/// then bumped. So two writers can never both commit a decision made on the same state.
public final class ClusterStore: Sendable {
    public let path: String
    private let pool: DatabasePool
    /// Whether a commit compares the generation it was computed from (always, except under
    /// the test switch `no-store-cas`).
    private let comparesGeneration: Bool

    /// The schema versions, in order; a new version is appended, never edited.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: tenants, blades, partitions, claims, VMs, events") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                INSERT INTO meta (key, value) VALUES ('generation', 0);
                CREATE TABLE tenants (
                    name TEXT PRIMARY KEY NOT NULL,
                    max_cores INTEGER NOT NULL, max_memory INTEGER NOT NULL, max_disk INTEGER NOT NULL,
                    max_partitions INTEGER, created_ms INTEGER NOT NULL);
                CREATE TABLE blades (
                    id TEXT PRIMARY KEY NOT NULL,
                    cores INTEGER NOT NULL, memory INTEGER NOT NULL, disk INTEGER NOT NULL,
                    nested INTEGER NOT NULL, chassis TEXT NOT NULL, rack TEXT NOT NULL, power_domain TEXT NOT NULL,
                    cordoned INTEGER NOT NULL, agent_version TEXT NOT NULL, backend TEXT NOT NULL,
                    registered_ms INTEGER NOT NULL);
                CREATE TABLE partitions (
                    name TEXT PRIMARY KEY NOT NULL,
                    tenant TEXT NOT NULL REFERENCES tenants(name),
                    cores INTEGER NOT NULL, memory INTEGER NOT NULL, disk INTEGER NOT NULL,
                    cpu_mode TEXT NOT NULL, service_ratio INTEGER,
                    vmm INTEGER NOT NULL, shadow_vmcs INTEGER NOT NULL,
                    group_name TEXT, spread_level TEXT, spread_hard INTEGER, max_per_domain INTEGER,
                    exclusive_blade INTEGER NOT NULL,
                    desired TEXT NOT NULL, generation INTEGER NOT NULL, created_ms INTEGER NOT NULL);
                CREATE INDEX partitions_tenant ON partitions(tenant);
                CREATE TABLE claims (
                    partition TEXT PRIMARY KEY NOT NULL REFERENCES partitions(name),
                    blade TEXT NOT NULL REFERENCES blades(id),
                    cores TEXT NOT NULL, memory_base INTEGER NOT NULL, memory INTEGER NOT NULL, disk INTEGER NOT NULL,
                    reason TEXT NOT NULL);
                CREATE INDEX claims_blade ON claims(blade);
                CREATE TABLE vms (
                    partition TEXT NOT NULL REFERENCES partitions(name), name TEXT NOT NULL,
                    vcpus INTEGER NOT NULL, memory INTEGER NOT NULL, workload TEXT NOT NULL, created_ms INTEGER NOT NULL,
                    PRIMARY KEY (partition, name));
                CREATE TABLE events (
                    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                    time_ms INTEGER NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, message TEXT NOT NULL, tenant TEXT);
                CREATE INDEX events_tenant ON events(tenant, sequence);
                """)
        }
        migrator.registerMigration("v2: blades' disks and NICs") { db in
            try db.execute(sql: """
                ALTER TABLE blades ADD COLUMN disks TEXT NOT NULL DEFAULT '[]';
                ALTER TABLE blades ADD COLUMN nics TEXT NOT NULL DEFAULT '[]';
                """)
        }
        migrator.registerMigration("v3: why a partition lost its claim") { db in
            try db.execute(sql: "ALTER TABLE partitions ADD COLUMN evicted_because TEXT")
        }
        migrator.registerMigration("v4: live migrations") { db in
            try db.execute(sql: """
                CREATE TABLE migrations (
                    id TEXT PRIMARY KEY NOT NULL, partition TEXT NOT NULL, phase TEXT NOT NULL, record TEXT NOT NULL);
                CREATE INDEX migrations_partition ON migrations(partition);
                ALTER TABLE blades ADD COLUMN migration_address TEXT;
                """)
        }
        return migrator
    }

    /// Opens the store at `directory` with the schema only up to `migration` (for tests of
    /// upgrades from older versions).
    static func open(directory: String, upTo migration: String) throws -> DatabasePool {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pool = try DatabasePool(path: (directory as NSString).appendingPathComponent("cluster.sqlite"))
        try migrator.migrate(pool, upTo: migration)
        return pool
    }

    /// Opens (creating when needed) `DIR/cluster.sqlite` and brings its schema up to date.
    /// `comparesGeneration: false` is the test switch `no-store-cas`.
    public init(directory: String, comparesGeneration: Bool = true) throws(StoreError) {
        let path = (directory as NSString).appendingPathComponent("cluster.sqlite")
        self.path = path
        self.comparesGeneration = comparesGeneration
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            var configuration = Configuration()
            configuration.foreignKeysEnabled = true
            configuration.busyMode = .timeout(10)
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw .open(path: path, reason: "\(error)")
        }
    }

    /// The versions of the schema applied to this file.
    public func appliedMigrations() throws(StoreError) -> [String] {
        do { return try pool.read { db in try Self.migrator.appliedIdentifiers(db).sorted() } }
        catch { throw .database(operation: "read migrations", reason: "\(error)") }
    }

    /// Reads the whole durable state.
    /// The generation of the last commit, by any writer.
    public func generation() throws(StoreError) -> UInt64 {
        do {
            return try pool.read { db in UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'generation'") ?? 0) }
        } catch {
            throw .database(operation: "read the generation", reason: "\(error)")
        }
    }

    public func load() throws(StoreError) -> ClusterModel {
        do {
            return try pool.read { db in try Self.readModel(db) }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .database(operation: "load", reason: "\(error)")
        }
    }

    /// Writes `ops` in one transaction if the store is still at `expectedGeneration`; returns
    /// the new generation, the last event sequence and the events as written.
    @discardableResult
    public func commit(_ ops: [StoreOp], expectedGeneration: UInt64) throws(StoreError) -> (generation: UInt64, lastEventSequence: UInt64, events: [ClusterEvent]) {
        do {
            return try pool.write { db in
                let found = UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'generation'") ?? 0)
                guard found == expectedGeneration || !comparesGeneration else {
                    throw StoreError.conflict(expected: expectedGeneration, found: found)
                }
                var events: [ClusterEvent] = []
                for op in ops { if let event = try Self.write(op, db) { events.append(event) } }
                let generation = found + 1
                try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'generation'", arguments: [Self.u(generation)])
                let last = UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) FROM events") ?? 0)
                return (generation, last, events)
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .database(operation: "commit", reason: "\(error)")
        }
    }

    /// Events after `sequence`, oldest first, at most `limit`; only `tenant`'s when given.
    public func events(after sequence: UInt64, limit: Int, tenant: String?) throws(StoreError) -> [ClusterEvent] {
        do {
            return try pool.read { db in
                let rows: [Row]
                if let tenant {
                    rows = try Row.fetchAll(db, sql: "SELECT * FROM events WHERE sequence > ? AND tenant = ? ORDER BY sequence LIMIT ?",
                                            arguments: [Int64(clamping: sequence), tenant, limit])
                } else {
                    rows = try Row.fetchAll(db, sql: "SELECT * FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?",
                                            arguments: [Int64(clamping: sequence), limit])
                }
                return rows.map(Self.event)
            }
        } catch {
            throw .database(operation: "read events", reason: "\(error)")
        }
    }

    /// Deletes every event but the last `count`, and every one written before `cutoff`
    /// (milliseconds since 1970); returns how many went. Sequence numbers are never reused.
    @discardableResult
    public func compactEvents(keepingLast count: Int, olderThanMillis cutoff: UInt64) throws(StoreError) -> Int {
        do {
            return try pool.write { db in
                let last = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) FROM events") ?? 0
                try db.execute(sql: "DELETE FROM events WHERE sequence <= ? OR time_ms < ?",
                               arguments: [last - Int64(count), Int64(clamping: cutoff)])
                return db.changesCount
            }
        } catch {
            throw .database(operation: "compact events", reason: "\(error)")
        }
    }

    /// The most recent `limit` events (only `tenant`'s when given), oldest first.
    public func recentEvents(limit: Int, tenant: String?) throws(StoreError) -> [ClusterEvent] {
        do {
            return try pool.read { db in
                let rows: [Row]
                if let tenant {
                    rows = try Row.fetchAll(db, sql: "SELECT * FROM events WHERE tenant = ? ORDER BY sequence DESC LIMIT ?", arguments: [tenant, limit])
                } else {
                    rows = try Row.fetchAll(db, sql: "SELECT * FROM events ORDER BY sequence DESC LIMIT ?", arguments: [limit])
                }
                return rows.map(Self.event).reversed()
            }
        } catch {
            throw .database(operation: "read events", reason: "\(error)")
        }
    }

    // MARK: Rows

    private static func u(_ value: UInt64) -> Int64 { Int64(bitPattern: value) }
    private static func u(_ row: Row, _ column: String) -> UInt64 { UInt64(bitPattern: row[column] as Int64) }

    private static func write(_ op: StoreOp, _ db: Database) throws -> ClusterEvent? {
        switch op {
        case .putTenant(let t):
            try db.execute(sql: """
                INSERT OR REPLACE INTO tenants (name, max_cores, max_memory, max_disk, max_partitions, created_ms)
                VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [t.name, t.maxCores, u(t.maxMemoryBytes), u(t.maxDiskBytes), t.maxPartitions, u(t.createdMillis)])
        case .deleteTenant(let name):
            try db.execute(sql: "DELETE FROM tenants WHERE name = ?", arguments: [name])
        case .putBlade(let b):
            try db.execute(sql: """
                INSERT OR REPLACE INTO blades (id, cores, memory, disk, nested, chassis, rack, power_domain, cordoned,
                    agent_version, backend, registered_ms, disks, nics, migration_address)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [b.id, b.cores, u(b.memoryBytes), u(b.diskBytes), b.nestedCapable, b.chassis, b.rack,
                                 b.powerDomain, b.cordoned, b.agentVersion, b.backend, u(b.registeredMillis),
                                 try json(b.disks), try json(b.nics), b.migrationAddress])
        case .putPartition(let p):
            let s = p.spec
            var mode = "dedicated"
            var ratio: Int?
            if case .shared(let value) = s.cpu { mode = "shared"; ratio = value }
            try db.execute(sql: """
                INSERT OR REPLACE INTO partitions (name, tenant, cores, memory, disk, cpu_mode, service_ratio, vmm, shadow_vmcs,
                    group_name, spread_level, spread_hard, max_per_domain, exclusive_blade, desired, generation, created_ms,
                    evicted_because)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [s.name, s.tenant, s.cores, u(s.memoryBytes), u(s.diskBytes), mode, ratio, s.vmm, s.shadowVMCS,
                                 s.antiAffinity?.group, s.antiAffinity?.level.rawValue, s.antiAffinity?.hard,
                                 s.antiAffinity?.maxPerDomain, s.exclusiveBlade, p.desired.rawValue, u(p.generation),
                                 u(p.createdMillis), p.evictedBecause])
        case .deletePartition(let name):
            try db.execute(sql: "DELETE FROM partitions WHERE name = ?", arguments: [name])
        case .putClaim(let c):
            try db.execute(sql: """
                INSERT OR REPLACE INTO claims (partition, blade, cores, memory_base, memory, disk, reason)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [c.partition, c.blade, c.cores.map(String.init).joined(separator: ","), u(c.memoryBase),
                                 u(c.memoryBytes), u(c.diskBytes), c.reason])
        case .deleteClaim(let name):
            try db.execute(sql: "DELETE FROM claims WHERE partition = ?", arguments: [name])
        case .putVM(let v):
            try db.execute(sql: """
                INSERT OR REPLACE INTO vms (partition, name, vcpus, memory, workload, created_ms) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [v.partition, v.name, v.vcpus, u(v.memoryBytes), v.workload.rawValue, u(v.createdMillis)])
        case .deleteVM(let key):
            try db.execute(sql: "DELETE FROM vms WHERE partition = ? AND name = ?", arguments: [key.partition, key.name])
        case .putMigration(let m):
            try db.execute(sql: "INSERT OR REPLACE INTO migrations (id, partition, phase, record) VALUES (?, ?, ?, ?)",
                           arguments: [m.id, m.partition, m.phase.rawValue, try json(m)])
        case .event(let e):
            try db.execute(sql: "INSERT INTO events (time_ms, kind, subject, message, tenant) VALUES (?, ?, ?, ?, ?)",
                           arguments: [u(e.timeMillis), e.kind, e.subject, e.message, e.tenant])
            var written = e
            written.sequence = UInt64(db.lastInsertedRowID)
            return written
        }
        return nil
    }

    private static func json<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    private static func decoded<T: Decodable>(_ type: T.Type, _ text: String, what: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(text.utf8)) }
        catch { throw StoreError.corrupt("\(what): \(error)") }
    }

    private static func event(_ row: Row) -> ClusterEvent {
        ClusterEvent(sequence: u(row, "sequence"), timeMillis: u(row, "time_ms"), kind: row["kind"], subject: row["subject"],
                     message: row["message"], tenant: row["tenant"])
    }

    private static func readModel(_ db: Database) throws -> ClusterModel {
        var model = ClusterModel()
        model.generation = UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'generation'") ?? 0)
        model.lastEventSequence = UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) FROM events") ?? 0)
        for row in try Row.fetchAll(db, sql: "SELECT * FROM tenants") {
            let tenant = Tenant(name: row["name"], maxCores: row["max_cores"], maxMemoryBytes: u(row, "max_memory"),
                                maxDiskBytes: u(row, "max_disk"), maxPartitions: row["max_partitions"], createdMillis: u(row, "created_ms"))
            model.tenants[tenant.name] = tenant
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM blades") {
            let blade = Blade(id: row["id"], cores: row["cores"], memoryBytes: u(row, "memory"), diskBytes: u(row, "disk"),
                              nestedCapable: row["nested"], chassis: row["chassis"], rack: row["rack"],
                              powerDomain: row["power_domain"], cordoned: row["cordoned"], agentVersion: row["agent_version"],
                              backend: row["backend"], registeredMillis: u(row, "registered_ms"),
                              disks: try decoded([BladeDiskInfo].self, row["disks"], what: "the disks of blade \(row["id"] as String)"),
                              nics: try decoded([String].self, row["nics"], what: "the NICs of blade \(row["id"] as String)"),
                              migrationAddress: row["migration_address"])
            model.blades[blade.id] = blade
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM partitions") {
            let name: String = row["name"]
            let cpu: PartitionSpec.CPU
            switch row["cpu_mode"] as String {
            case "dedicated": cpu = .dedicated
            case "shared": cpu = .shared(serviceRatio: row["service_ratio"] ?? 100)
            case let other: throw StoreError.corrupt("partition \(name) has CPU mode '\(other)'")
            }
            var rule: AntiAffinityRule?
            if let group: String = row["group_name"] {
                guard let level = SpreadLevel(rawValue: row["spread_level"] ?? "") else {
                    throw StoreError.corrupt("partition \(name) has a group without a valid level")
                }
                rule = AntiAffinityRule(group: group, level: level, hard: row["spread_hard"] ?? true, maxPerDomain: row["max_per_domain"] ?? 1)
            }
            guard let desired = DesiredState(rawValue: row["desired"]) else {
                throw StoreError.corrupt("partition \(name) has desired state '\(row["desired"] as String)'")
            }
            let spec = PartitionSpec(name: name, tenant: row["tenant"], cores: row["cores"], memoryBytes: u(row, "memory"),
                                     diskBytes: u(row, "disk"), cpu: cpu, vmm: row["vmm"], shadowVMCS: row["shadow_vmcs"],
                                     antiAffinity: rule, exclusiveBlade: row["exclusive_blade"])
            model.partitions[name] = Partition(spec: spec, desired: desired, generation: u(row, "generation"),
                                               createdMillis: u(row, "created_ms"), evictedBecause: row["evicted_because"])
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM claims") {
            let name: String = row["partition"]
            let text: String = row["cores"]
            let cores = text.isEmpty ? [] : try text.split(separator: ",").map { piece -> Int in
                guard let core = Int(piece) else { throw StoreError.corrupt("claim of \(name) lists core '\(piece)'") }
                return core
            }
            model.claims[name] = Claim(partition: name, blade: row["blade"], cores: cores, memoryBase: u(row, "memory_base"),
                                       memoryBytes: u(row, "memory"), diskBytes: u(row, "disk"), reason: row["reason"])
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM vms") {
            let name: String = row["name"]
            guard let workload = VMWorkload(rawValue: row["workload"]) else {
                throw StoreError.corrupt("VM \(name) has workload '\(row["workload"] as String)'")
            }
            let vm = VM(name: name, partition: row["partition"], vcpus: row["vcpus"], memoryBytes: u(row, "memory"),
                        workload: workload, createdMillis: u(row, "created_ms"))
            model.vms[vm.key] = vm
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM migrations") {
            let migration = try decoded(Migration.self, row["record"], what: "migration \(row["id"] as String)")
            model.migrations[migration.id] = migration
        }
        return model
    }
}
