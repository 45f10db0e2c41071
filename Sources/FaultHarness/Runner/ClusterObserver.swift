import FaultHarness
import FaultScenario
import Foundation
import GRDB
import Protos
import Wire
import WireCodec
#if canImport(Glibc)
import Glibc
#endif

/// Watches the cluster under test from outside, several times a second: every agent's actual
/// LPARs (from the agent's own listener, not through the controller), the partitions and
/// claims in the store's file (read directly, read-only), and the blades' health as the
/// controller reports it. Each sample is an `Observation` the checker judges.
actor ClusterObserver {
    /// A partition as the store's file holds it, with what convergence needs besides the
    /// checker's view: where it is claimed and whether it should run.
    struct StoreRow: Sendable, Equatable {
        var partition: StoredPartition
        var blade: String?
        var desiredRunning: Bool
    }

    let scenario: Scenario
    let cluster: LocalCluster
    let clock: RunClock
    let backend: String
    private let pkiDirectory: String
    private var agentLinks: [String: PeerLink] = [:]
    private let controllerLink: PeerLink
    private var database: DatabaseQueue?
    private var lastLPARs: [String: [ActualLPAR]] = [:]
    private(set) var lastRows: [StoreRow] = []
    /// Partitions whose LPAR the harness crashed on purpose.
    private(set) var crashed: Set<String> = []
    /// Each blade's health as the controller reported it, when it changed.
    private(set) var health: [String: [(millis: UInt64, state: String)]] = [:]
    private var seen: Set<String> = []
    private(set) var violations: [Violation] = []
    private(set) var samples = 0
    static let maxViolations = 1_000

    init(scenario: Scenario, cluster: LocalCluster, pkiDirectory: String, controllerPort: Int, clock: RunClock, backend: String) throws {
        self.scenario = scenario
        self.cluster = cluster
        self.clock = clock
        self.backend = backend
        self.pkiDirectory = pkiDirectory
        controllerLink = try PeerLink(identity: LocalCluster.admin, pkiDirectory: pkiDirectory, port: controllerPort, expected: .role(.controller))
    }

    func noteCrashed(_ partition: String) { crashed.insert(partition) }

    /// The last LPARs an agent reported, for the nemesis to pick an `lpar-host` from.
    func lpars(of blade: String) -> [ActualLPAR] { lastLPARs[blade] ?? [] }

    /// Samples until cancelled, every `interval`; each sample's violations are kept (each
    /// distinct one once, at the first time it was seen).
    func watch(every interval: Duration) async {
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let (observation, _) = await sample()
            samples += 1
            record(InvariantChecker.check(observation, crashed: crashed))
            let next = started + interval
            if next > ContinuousClock.now { try? await Task.sleep(until: next, clock: .continuous) }
        }
    }

    func record(_ found: [Violation]) {
        for violation in found where violations.count < Self.maxViolations {
            if seen.insert("\(violation.kind.rawValue) \(violation.detail)").inserted { violations.append(violation) }
        }
    }

    /// One observation; `complete` when every agent answered and the store could be read.
    func sample() async -> (Observation, complete: Bool) {
        let ports = await cluster.agentPorts()
        var links: [String: PeerLink] = [:]
        for (blade, port) in ports {
            if agentLinks[blade] == nil {
                agentLinks[blade] = try? PeerLink(identity: LocalCluster.admin, pkiDirectory: pkiDirectory, port: port,
                                                  expected: .identity(PeerIdentity(role: .agent, name: blade)))
            }
            links[blade] = agentLinks[blade]
        }
        // Every agent at once: a paused one costs its timeout once, not once per blade after it.
        let answers = await withTaskGroup(of: (String, InspectBladeResponse?).self) { group in
            for (blade, link) in links {
                let port = ports[blade]!
                group.addTask {
                    await link.retarget(port)
                    return (blade, await link.call(InspectBladeRequest(blade: blade), expecting: InspectBladeResponse.self, timeout: .seconds(1)).answer)
                }
            }
            var answers: [String: InspectBladeResponse] = [:]
            for await (blade, answer) in group { answers[blade] = answer }
            return answers
        }
        var complete = true
        var blades: [ObservedBlade] = []
        for (index, blade) in scenario.cluster.bladeIDs.enumerated() {
            var lpars: [ActualLPAR]
            var cores = scenario.cluster.coresPerBlade
            var memory = scenario.cluster.memoryPerBlade
            if let answer = answers[blade] {
                lpars = answer.lpars
                cores = Int(answer.cores)
                memory = answer.memoryBytes
                lastLPARs[blade] = lpars
            } else {
                complete = false
                lpars = await unobserved(blade)
            }
            blades.append(ObservedBlade(id: blade, cores: cores, memoryBytes: memory, domains: scenario.cluster.domains(ofBlade: index),
                                        lpars: lpars.map(Self.observed)))
        }
        if let rows = readStore() { lastRows = rows } else { complete = false }
        await sampleHealth()
        return (Observation(timeMillis: clock.now, blades: blades, partitions: lastRows.map(\.partition)), complete)
    }

    /// What a blade whose agent does not answer holds: nothing when the agent has ended and
    /// its LPARs ran inside it (sim) or their processes have ended too (kvm); else what it
    /// last reported (a paused agent's LPARs are still there).
    private func unobserved(_ blade: String) async -> [ActualLPAR] {
        let last = lastLPARs[blade] ?? []
        guard let process = await cluster.agentProcess(blade), !process.isRunning else { return last }
        guard backend == "kvm" else { return [] }
        return last.filter { lpar in lpar.processID.map { Self.alive(Int32(bitPattern: $0)) } ?? false }
    }

    static func alive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        // A zombie is not running; /proc says so in its state field.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    private func sampleHealth() async {
        guard let answer = await controllerLink.call(ListBladesRequest(), expecting: BladeListResponse.self, timeout: .seconds(1)).answer else {
            return
        }
        let now = clock.now
        for blade in answer.blades where health[blade.id]?.last?.state != blade.state {
            health[blade.id, default: []].append((now, blade.state))
        }
    }

    /// The first time after `after` the controller reported `blade` unreachable, if it did.
    func firstUnreachable(_ blade: String, after: UInt64) -> UInt64? {
        health[blade]?.first { $0.millis >= after && $0.state == "unreachable" }?.millis
    }

    /// Whether every blade is ready in the controller's eyes now.
    func allReady() async -> Bool {
        guard let answer = await controllerLink.call(ListBladesRequest(), expecting: BladeListResponse.self, timeout: .seconds(2)).answer else {
            return false
        }
        return answer.blades.count == scenario.cluster.blades && answer.blades.allSatisfy { $0.state == "ready" }
    }

    func close() async {
        for link in agentLinks.values { await link.drop() }
        await controllerLink.drop()
        try? database?.close()
        database = nil
    }

    // MARK: The store's file

    private func readStore() -> [StoreRow]? {
        let path = (cluster.dataDirectory as NSString).appendingPathComponent("cluster.sqlite")
        if database == nil {
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(1)
            database = try? DatabaseQueue(path: path, configuration: configuration)
        }
        guard let database else { return nil }
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT p.name, p.tenant, p.group_name, p.spread_level, p.spread_hard, p.max_per_domain, p.exclusive_blade,
                           p.desired, c.blade, c.cores AS claim_cores, c.memory_base, c.memory AS claim_memory
                    FROM partitions p LEFT JOIN claims c ON c.partition = p.name ORDER BY p.name
                    """).map { row in
                    let name: String = row["name"]
                    let tenant: String = row["tenant"]
                    var spread: StoredPartition.Spread?
                    if let group: String = row["group_name"] {
                        let level: String = row["spread_level"] ?? "blade"
                        let hard: Bool = row["spread_hard"] ?? true
                        let most: Int = row["max_per_domain"] ?? 1
                        spread = StoredPartition.Spread(group: "\(tenant)/\(group)", level: level, hard: hard, maxPerDomain: most)
                    }
                    let exclusive: Bool = row["exclusive_blade"] ?? false
                    let desired: String? = row["desired"]
                    let blade: String? = row["blade"]
                    var claim: StoredPartition.Claim?
                    if let blade {
                        let cores: String = row["claim_cores"] ?? ""
                        let base: Int64 = row["memory_base"] ?? 0
                        let size: Int64 = row["claim_memory"] ?? 0
                        claim = StoredPartition.Claim(blade: blade, cores: cores.split(separator: ",").compactMap { Int($0) },
                                                      memoryBase: UInt64(bitPattern: base), memoryBytes: UInt64(bitPattern: size))
                    }
                    return StoreRow(partition: StoredPartition(name: name, tenant: tenant, spread: spread, exclusiveBlade: exclusive, claim: claim),
                                    blade: blade, desiredRunning: desired == "running")
                }
            }
        } catch {
            return nil
        }
    }

    static func observed(_ lpar: ActualLPAR) -> ObservedLPAR {
        let state: ObservedLPAR.State = switch lpar.state {
        case .defined: .defined
        case .activating: .activating
        case .running: .running
        case .deactivating: .deactivating
        case .stopped: .stopped
        case .failed: .failed
        case .migrating: .migrating
        }
        return ObservedLPAR(name: lpar.name, partition: lpar.name, tenant: lpar.tenant, state: state, cores: lpar.dedicatedCores.map(Int.init),
                            memoryStart: lpar.memoryStart, memoryBytes: lpar.memoryBytes)
    }
}

/// Whether the cluster has settled after the faults healed: every claimed partition that
/// should run runs on its blade (or lies failed there, crashed by the harness), nothing runs
/// without a claim or on another blade than its claim's, and every agent answered.
enum Convergence {
    static func settled(_ observation: Observation, rows: [ClusterObserver.StoreRow], crashed: Set<String>) -> [String] {
        var waiting: [String] = []
        let claimed = Dictionary(rows.compactMap { row in row.blade.map { (row.partition.name, $0) } }, uniquingKeysWith: { first, _ in first })
        for blade in observation.blades {
            for lpar in blade.lpars {
                let partition = lpar.partition ?? lpar.name
                if claimed[partition] != blade.id {
                    waiting.append("\(blade.id) still holds \(partition) (\(lpar.state.rawValue)), claimed \(claimed[partition].map { "on \($0)" } ?? "nowhere")")
                }
            }
        }
        for row in rows where row.desiredRunning {
            guard let bladeID = row.blade else { continue }
            let lpar = observation.blades.first { $0.id == bladeID }?.lpars.first { ($0.partition ?? $0.name) == row.partition.name }
            switch lpar?.state {
            case .running?: break
            case .failed? where crashed.contains(row.partition.name): break
            default: waiting.append("\(row.partition.name) is \(lpar?.state.rawValue ?? "absent") on \(bladeID), should run")
            }
        }
        return waiting
    }
}
